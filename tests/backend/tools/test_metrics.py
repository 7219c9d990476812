import numpy as np

from emotalk3d_addon.backend.tools.metrics import landmark_distance, lip_vertex_error, lip_vertices, project
from tests.backend.fixtures_data import grid_topology


def test_lip_vertex_error_is_mean_of_per_frame_max_in_mm():
    truth = np.zeros((3, 5, 3), np.float32)
    pred = truth.copy()
    pred[0, 1, 0] = 0.002     # frame 0: worst lip vertex 2 mm off
    pred[1, 2, 2] = 0.004     # frame 1: 4 mm; frame 2: exact
    pred[1, 3, 2] = 0.001
    pred[2, 4, 1] = 0.010     # not a lip vertex: ignored
    assert abs(lip_vertex_error(pred, truth, np.array([1, 2, 3])) - 2.0) < 1e-6


def test_lip_region_covers_the_lip_landmarks_and_not_the_brow():
    topo = grid_topology(12)
    landmarks = dict(zip(topo["landmark_names"], topo["landmark_indices"]))
    lips = lip_vertices(topo["template"], landmarks)
    for name in ("upper_lip", "lower_lip", "mouth_left", "mouth_right"):
        assert landmarks[name] in lips
    top_row = np.flatnonzero(topo["template"][:, 2] == topo["template"][:, 2].max())
    assert not set(top_row) & set(lips)


def test_projection_and_landmark_distance():
    K = np.array([[100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]])
    w2c = np.eye(4)
    px = project(np.array([[0.0, 0.0, 2.0], [0.2, -0.1, 1.0]]), K, w2c)
    np.testing.assert_allclose(px, [[32, 24], [52, 14]])
    assert landmark_distance(px, px + [3.0, 4.0]) == 5.0
