"""The procedural head: one face topology inside the render mesh, a rig that moves the
right regions (numpy only: no espeak, no Blender)."""
import numpy as np
import pytest

from emotalk3d_addon.backend.datasets.synthetic.expressions import EXPRESSIONS, expression_track
from emotalk3d_addon.backend.datasets.synthetic.model import HeadModel
from emotalk3d_addon.backend.emotions import EMOTIONS

REQUIRED = ("upper_lip", "lower_lip", "mouth_left", "mouth_right", "nose_tip", "chin",
            "eye_left_inner", "eye_left_outer", "eye_right_inner", "eye_right_outer",
            "brow_left_inner", "brow_left_outer", "brow_right_inner", "brow_right_outer")


@pytest.fixture(scope="module")
def model():
    return HeadModel()


def _pose(model, frames=1, **params):
    return model.pose_face({k: np.full(frames, v, np.float64) for k, v in params.items()}, frames)


def _lip_gap(model, faces):
    lm = model.landmarks
    return np.linalg.norm(faces[:, lm["lower_lip"]] - faces[:, lm["upper_lip"]], axis=-1)


def _emotion_face(model, emotion, intensity):
    times = np.array([1.0])
    track = expression_track(emotion, intensity, times, np.random.default_rng(0), variation=0.0)
    return model.pose_face(track, 1)[0]


def test_face_topology_is_a_clean_subset_of_the_render_mesh(model):
    V = model.face_template.shape[0]
    assert 2000 <= V <= 4000
    tris = model.face_triangles
    assert tris.min() >= 0 and tris.max() < V
    assert np.unique(tris).size == V                       # no unused vertices
    assert np.all((model.face_uvs >= 0) & (model.face_uvs <= 1))
    assert set(np.unique(model.face_mask)) <= {0, 1} and model.face_mask.mean() > 0.9
    assert np.isfinite(model.face_template).all()
    np.testing.assert_array_equal(model.face_template, model.render_rest[model.face_to_render])
    for name in REQUIRED:
        assert name in model.landmarks
    # the whole render mesh is bigger than the face: skull, hair, neck, shoulders...
    assert model.num_render_vertices > 5 * V
    assert model.render_triangles.max() < model.num_render_vertices
    assert np.all((model.render_uvs >= 0) & (model.render_uvs <= 1))


def test_subject_space_and_outward_faces(model):
    t, lm = model.face_template, model.landmarks
    nose, chin = t[lm["nose_tip"]], t[lm["chin"]]
    assert nose[1] < -0.1 and abs(nose[0]) < 1e-6            # the face looks toward -Y
    assert chin[2] < -0.09 and abs(t[lm["eye_left_outer"]][2]) < 0.01   # eyes at z ~ 0
    assert t[lm["mouth_left"]][0] > 0 > t[lm["mouth_right"]][0]       # subject's left is +X
    a, b, c = (t[model.face_triangles[:, i]] for i in range(3))
    n = np.cross(b - a, c - a)
    centre = (a + b + c) / 3
    front = np.abs(centre[:, 0]) < 0.02
    assert (n[front, 1] < 0).mean() > 0.85                  # front faces point toward -Y


def test_lips_meet_at_rest_and_the_jaw_opens_them(model):
    rest = model.face_template[None]
    assert _lip_gap(model, rest)[0] < 3e-4
    assert _lip_gap(model, _pose(model, jaw=1.0))[0] > 0.012
    # bilabial closure seals the lips even with the jaw half open
    assert _lip_gap(model, _pose(model, jaw=0.5, close=1.0))[0] < 5e-4
    # rounding narrows the mouth, spreading widens it
    lm = model.landmarks

    def width(f):
        return np.linalg.norm(f[0, lm["mouth_left"]] - f[0, lm["mouth_right"]])

    w0 = width(rest)
    assert width(_pose(model, round=1.0)) < w0 - 0.006
    assert width(_pose(model, spread=1.0)) > w0 + 0.004


@pytest.mark.parametrize("emotion", EMOTIONS)
def test_a_bilabial_seals_the_lips_under_every_expression(model, emotion):
    """p, b and m close the lips whatever the face does: disgust's raised upper lip and
    sadness's pout give way on the lips while the bilabial lasts, and come back after it."""
    times = np.array([1.0])
    track = expression_track(emotion, 1.0, times, np.random.default_rng(0), variation=0.0)
    speech = {k: np.asarray(v, np.float64) for k, v in track.items()}
    jaw = speech.get("jaw", np.zeros(1)) + 0.09
    sealed = model.pose_face(speech | {"jaw": jaw, "close": np.ones(1)}, 1)
    assert _lip_gap(model, sealed)[0] < 5e-4, emotion
    if emotion == "disgusted":
        open_lip = model.pose_face(speech, 1)
        assert _lip_gap(model, open_lip)[0] > 2e-3        # the upper lip is raised off the seal
        # the nose and the skin above the lip keep the expression during the seal
        nose = model.landmarks["nose_tip"]
        np.testing.assert_allclose(sealed[0, nose], open_lip[0, nose], atol=1e-6)


def test_emotions_move_the_expected_regions(model):
    lm = model.landmarks
    neutral = model.face_template

    def dz(face, *names):
        return np.mean([face[lm[n], 2] - neutral[lm[n], 2] for n in names])

    brows_in = ("brow_left_inner", "brow_right_inner")
    brows = brows_in + ("brow_left_outer", "brow_right_outer")
    corners = ("mouth_left", "mouth_right")
    surprised = _emotion_face(model, "surprised", 1.0)
    assert dz(surprised, *brows) > 0.004
    assert _lip_gap(model, surprised[None])[0] > 0.005            # jaw drop
    assert dz(_emotion_face(model, "angry", 1.0), *brows_in) < -0.002
    assert dz(_emotion_face(model, "fear", 1.0), *brows_in) > 0.003
    assert dz(_emotion_face(model, "happy", 1.0), *corners) > 0.004
    assert dz(_emotion_face(model, "sad", 1.0), *corners) < -0.003
    contempt = _emotion_face(model, "contempt", 1.0)
    assert contempt[lm["mouth_left"], 2] - neutral[lm["mouth_left"], 2] > 0.003
    assert abs(contempt[lm["mouth_right"], 2] - neutral[lm["mouth_right"], 2]) < 0.001
    disgusted = _emotion_face(model, "disgusted", 1.0)
    assert disgusted[lm["upper_lip"], 2] - neutral[lm["upper_lip"], 2] > 0.002


@pytest.mark.parametrize("emotion", [e for e in EMOTIONS if e != "neutral"])
def test_intensity_scales_each_emotion(model, emotion):
    neutral = model.face_template
    strong = np.abs(_emotion_face(model, emotion, 1.0) - neutral).max(1)
    mild = np.abs(_emotion_face(model, emotion, 0.5) - neutral).max(1)
    assert strong.max() > 0.002
    ratio = mild.sum() / strong.sum()
    assert 0.35 < ratio < 0.65


def test_emotions_are_distinct(model):
    faces = {e: _emotion_face(model, e, 1.0) for e in EMOTIONS}
    names = list(faces)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.abs(faces[a] - faces[b]).max() > 0.002, (a, b)
    assert set(EXPRESSIONS) == set(EMOTIONS)


def test_render_mesh_poses_with_the_face(model):
    params = {"jaw": np.array([0.0, 0.8]), "smile_l": np.array([0.0, 1.0])}
    render = model.pose_render(params, 2)
    face = model.pose_face(params, 2)
    np.testing.assert_allclose(render[:, model.face_to_render], face, atol=1e-6)
    # the lower teeth follow the jaw, the upper teeth do not
    lower = model.part_slices["teeth_lower"]
    upper = model.part_slices["teeth_upper"]
    assert render[1, lower, 2].mean() < render[0, lower, 2].mean() - 0.005
    np.testing.assert_allclose(render[1, upper], render[0, upper])


def test_the_lower_teeth_follow_the_rigid_fit_of_the_jaw_anchor(model):
    """Eyes and upper teeth move with the skull; the Kabsch fit of the chin anchor moves
    the lower teeth where the rig puts them, under speech and every expression at once."""
    import torch

    from emotalk3d_addon.backend.appearance.rigid import kabsch
    from emotalk3d_addon.backend.datasets.synthetic.head import RIG_PARAMS

    parts = {p.name: p for p in model.rigid_parts()}
    assert sorted(parts) == ["eye_left", "eye_right", "teeth_lower", "teeth_upper"]
    assert all(parts[n].anchor.size == 0 for n in ("eye_left", "eye_right", "teeth_upper"))
    anchor = parts["teeth_lower"].anchor
    assert anchor.size >= 20 and anchor.max() < model.face_template.shape[0]
    rng = np.random.default_rng(0)
    frames = 24
    params = {k: rng.uniform(0, 1, frames) for k in RIG_PARAMS}
    face, render = model.pose_face(params, frames), model.pose_render(params, frames)
    lower = model.part_slices["teeth_lower"]
    rest = torch.from_numpy(model.face_template[anchor])
    travel, error = 0.0, 0.0
    for f in range(frames):
        r, t = kabsch(rest, torch.from_numpy(face[f][anchor]))
        placed = model.render_rest[lower] @ r.numpy().T + t.numpy()
        error = max(error, float(np.linalg.norm(placed - render[f][lower], axis=1).max()))
        travel = max(travel, float(np.linalg.norm(render[f][lower] - model.render_rest[lower], axis=1).max()))
    assert travel > 0.010          # the jaw really moved them (up to 17 mm)
    assert error < 0.0005          # 0.18 mm measured; the teeth are 11 mm tall
    # the eyeballs' front caps face the camera side (-Y) and do not move with any parameter
    eye = model.part_slices["eye"]
    assert np.array_equal(render[:, eye], np.broadcast_to(model.render_rest[eye], render[:, eye].shape))
