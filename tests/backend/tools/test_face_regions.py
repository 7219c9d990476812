"""Face regions from the mesh: vertex regions follow the landmarks, the z-buffered region map
equals a brute-force one, and region scores give known PSNRs."""
from __future__ import annotations

import numpy as np
import torch

from emotalk3d_addon.backend.raster import Camera, intrinsics, look_at
from emotalk3d_addon.backend.subject import load_subject, resolve_subject
from emotalk3d_addon.backend.tools.evaluate_regions import RegionScores
from emotalk3d_addon.backend.tools.face_regions import REGIONS, image_masks, region_map, vertex_regions


def test_vertex_regions_follow_the_landmarks():
    g = load_subject(resolve_subject("demo")).geometry
    labels = vertex_regions(g.template, g.landmarks, g.face_mask)
    lm = g.landmarks
    assert all(labels[lm[k]] == 1 for k in ("upper_lip", "lower_lip", "mouth_left", "mouth_right"))
    assert all(labels[lm[k]] == 2 for k in lm if k.startswith(("brow_", "eye_")))
    assert labels[lm["cheek_left"]] == 3 and labels[lm["cheek_right"]] == 3
    assert (labels[~g.face_mask] == 0).all() and set(np.unique(labels[g.face_mask])) == {1, 2, 3}
    # a captured subject with the four required landmarks only still gets an eye band above the mouth
    few = {k: lm[k] for k in ("upper_lip", "lower_lip", "mouth_left", "mouth_right")}
    fallback = vertex_regions(g.template, few, g.face_mask)
    assert fallback[lm["brow_left_mid"]] == 2 and fallback[lm["upper_lip"]] == 1


def _brute(vertices, triangles, labels, camera):
    K, w2c = camera.K.double().numpy(), camera.world_to_camera.double().numpy()
    p = vertices @ w2c[:3, :3].T + w2c[:3, 3]
    uv = (p @ K.T)[:, :2] / p[:, 2:3]
    out = np.zeros((camera.height, camera.width), np.int8)
    best = np.full(out.shape, np.inf)
    for y in range(camera.height):
        for x in range(camera.width):
            s = np.array([x + 0.5, y + 0.5])
            for tri in triangles:
                a, b, c = uv[tri]
                m = np.array([b - a, c - a]).T
                w1, w2 = np.linalg.solve(m, s - a)
                w = np.array([1 - w1 - w2, w1, w2])
                if (w < 0).any():
                    continue
                d = w @ p[tri, 2]
                if d < best[y, x]:
                    best[y, x], out[y, x] = d, labels[tri[np.argmax(w)]]
    return out


def test_the_region_map_equals_a_brute_force_raster():
    cam = Camera(intrinsics(24, 20, 50.0), look_at((0.0, -1.0, 0.0), (0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)), 24, 20)
    v = np.array([[-0.3, 0.0, -0.2], [0.3, 0.0, -0.2], [0.0, 0.0, 0.3],          # a far triangle
                  [-0.1, -0.2, -0.1], [0.25, -0.2, 0.0], [0.0, -0.2, 0.25]])      # a nearer one over it
    tris = np.array([[0, 1, 2], [3, 4, 5]])
    labels = np.array([3, 3, 3, 1, 2, 1], np.int8)
    got = region_map(v, tris, labels, cam)
    np.testing.assert_array_equal(got, _brute(v, tris, labels, cam))
    assert {1, 2, 3} <= set(np.unique(got)) and (got == 0).any()


def test_region_scores_give_the_psnr_of_the_error_in_each_region():
    rng = np.random.default_rng(0)
    target = torch.tensor(rng.uniform(0.2, 0.8, (32, 32, 3)), dtype=torch.float32)
    regions = np.zeros((32, 32), np.int8)
    regions[4:12, 4:12], regions[20:28, 4:28] = 1, 3
    masks = image_masks(regions, np.ones((32, 32)))
    render = target.clone()
    render[4:12, 4:12] += 0.1                                  # mouth error 0.1 -> 20 dB
    render[20:28, 4:28] += 0.01                                # cheeks error 0.01 -> 40 dB
    scores = RegionScores()
    scores.add("fear", "tracked_mesh", render, target, masks)
    report = scores.report()["fear"]["tracked_mesh"]
    assert abs(report["mouth"]["psnr"] - 20.0) < 1e-3 and abs(report["cheeks"]["psnr"] - 40.0) < 1e-3
    assert "eyes_brows" not in report                          # an empty region is not scored
    assert report["mouth"]["ssim"] < report["cheeks"]["ssim"] <= 1.0
    assert set(REGIONS) - {"eyes_brows"} <= set(report) and scores.images["fear"] == 1
