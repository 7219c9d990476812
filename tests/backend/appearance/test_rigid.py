"""Rigid parts: the Kabsch fit, quaternions, surface sampling, moving Gaussians, the bundle's checks,
and the fused frame and storage with rigid Gaussians."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from emotalk3d_addon.backend.appearance.dynamic import AnimatedHead
from emotalk3d_addon.backend.appearance.g2anet import G2AConfig
from emotalk3d_addon.backend.appearance.g2anet import quat_multiply
from emotalk3d_addon.backend.appearance.placement import rotmat_to_quat
from emotalk3d_addon.backend.appearance.rigid import RigidBinding, RigidPart, kabsch, load_rigid_parts, sample_surface
from emotalk3d_addon.backend.appearance.completion import CompletionConfig

from .meshes import face_grid


def random_rotation(seed: int) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    return q if torch.linalg.det(q) > 0 else -q


@pytest.mark.parametrize("seed", range(4))
def test_kabsch_recovers_a_rigid_motion(seed):
    g = torch.Generator().manual_seed(seed)
    rest = torch.randn(30, 3, generator=g, dtype=torch.float64) * 0.02
    rot, shift = random_rotation(seed), torch.randn(3, generator=g, dtype=torch.float64) * 0.01
    r, t = kabsch(rest, rest @ rot.T + shift)
    assert torch.allclose(r, rot, atol=1e-10) and torch.allclose(t, shift, atol=1e-12)
    assert math.isclose(float(torch.linalg.det(r)), 1.0, abs_tol=1e-12)


def test_kabsch_of_a_mirrored_set_is_still_a_rotation():
    rest = torch.randn(20, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    r, _ = kabsch(rest, rest * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
    assert math.isclose(float(torch.linalg.det(r)), 1.0, abs_tol=1e-9)
    assert torch.allclose(r @ r.T, torch.eye(3, dtype=torch.float64), atol=1e-9)


def two_triangles() -> RigidPart:
    """Two triangles in the z = 0 plane, 0.5 cm^2 and 3 cm^2."""
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 0, 0], [5, 0, 0], [2, 2, 0]], np.float32) * 0.01
    return RigidPart("plate", v, np.array([[0, 1, 2], [3, 4, 5]]), np.zeros(0, np.int64))


def test_surface_samples_lie_on_the_triangles_in_proportion_to_area():
    part = two_triangles()
    pts = sample_surface(part, 8000, torch.Generator().manual_seed(0)).numpy()
    assert np.abs(pts[:, 2]).max() == 0.0
    first = (pts[:, 0] + pts[:, 1] <= 0.01 + 1e-7) & (pts[:, 0] <= 0.01 + 1e-7)
    second = (pts[:, 0] >= 0.02 - 1e-7) & (pts[:, 1] >= -1e-9) & (pts[:, 1] <= (0.05 - pts[:, 0]) * 2 / 3 + 1e-7)
    assert (first | second).all()
    assert abs(first.mean() - 0.5 / 3.5) < 0.015     # its share of the area (4 sigma of 8000 draws)
    assert math.isclose(part.area(), 0.5e-4 + 3e-4, rel_tol=1e-6)


def test_a_part_is_refused_by_what_is_wrong():
    v, t = np.zeros((3, 3), np.float32), np.array([[0, 1, 2]])
    with pytest.raises(ValueError, match="no surface area"):
        RigidPart("eye", v, t, np.zeros(0, np.int64))          # three points in one place
    v = np.eye(3, dtype=np.float32) * 0.01
    with pytest.raises(ValueError, match="name"):
        RigidPart("Eye L", v, t, np.zeros(0, np.int64))
    with pytest.raises(ValueError, match="outside"):
        RigidPart("eye", v, np.array([[0, 1, 3]]), np.zeros(0, np.int64))
    with pytest.raises(ValueError, match="at least 3"):
        RigidPart("eye", v, t, np.array([1, 2]))
    with pytest.raises(ValueError, match="NaN"):
        RigidPart("eye", v + np.nan, t, np.zeros(0, np.int64))


def binding_on_grid() -> tuple[RigidBinding, np.ndarray]:
    template = face_grid(9)[0]
    anchor = np.arange(10, 40)
    return RigidBinding.build(["skull", "jaw"], torch.tensor([0, 0, 1, 1, 1]), [np.zeros(0, np.int64), anchor],
                              template), template


def test_parts_move_with_their_anchor_and_the_skull_stays():
    binding, template = binding_on_grid()
    rot, shift = random_rotation(3).float(), torch.tensor([0.001, -0.004, 0.002])
    frame = torch.from_numpy(template.copy())
    frame[10:40] = frame[10:40] @ rot.T + shift            # the anchor moves rigidly, the rest stays
    means = torch.randn(5, 3, generator=torch.Generator().manual_seed(0)) * 0.01
    quats = torch.nn.functional.normalize(torch.randn(5, 4, generator=torch.Generator().manual_seed(1)), dim=-1)
    moved, turned = binding.move(means, quats, frame)
    assert torch.equal(moved[:2], means[:2]) and torch.allclose(turned[:2], quats[:2])
    assert torch.allclose(moved[2:], means[2:] @ rot.T + shift, atol=1e-6)
    q = rotmat_to_quat(rot[None])[0].float()
    assert torch.allclose(turned[2:], quat_multiply(q, quats[2:]), atol=1e-6)


def test_bundle_state_round_trips_and_defects_are_named():
    binding, template = binding_on_grid()
    state = binding.state_dict()
    defects, back = RigidBinding.from_state(["skull", "jaw"], 5, dict(state), template, "a.safetensors")
    assert defects == [] and torch.equal(back.part, binding.part)
    assert [a.tolist() for a in back.anchors] == [a.tolist() for a in binding.anchors]

    def problems(names, num, **changes):
        s = dict(state) | changes
        return RigidBinding.from_state(names, num, s, template, "a.safetensors")[0]

    assert "rigid.part must be (6,) int64" in problems(["skull", "jaw"], 6)[0]
    assert "outside the 2" in problems(["skull", "jaw"], 5, **{"rigid.part": torch.tensor([0, 0, 2, 1, 1])})[0]
    assert "needs none" in problems(["skull", "jaw"], 5, **{"rigid.anchor.jaw": torch.tensor([1, 2])})[0]
    assert "outside [0, 81)" in problems(["skull", "jaw"], 5, **{"rigid.anchor.jaw": torch.tensor([1, 2, 99])})[0]
    assert "rigid.anchor.skull" in problems(["skull", "jaw"], 5, **{"rigid.anchor.skull": torch.zeros(2, 2).long()})[0]
    assert "twice" in problems(["jaw", "jaw"], 5)[0]
    assert "name" in problems(["Jaw!", "skull"], 5)[0]
    assert RigidBinding.from_state([], 0, {}, template, "a")[1].num == 0


def test_dataset_parts_are_checked_against_the_template():
    part = two_triangles()
    arrays = {"names": np.array(["plate"]), "plate.vertices": part.vertices, "plate.triangles": part.triangles,
              "plate.anchor": np.array([0, 1, 200])}
    with pytest.raises(Exception, match="anchor indices outside"):
        load_rigid_parts(arrays, 100)
    del arrays["plate.triangles"]
    with pytest.raises(Exception, match="missing plate.triangles"):
        load_rigid_parts(arrays, 300)


def head_with_parts() -> tuple[AnimatedHead, np.ndarray]:
    template, tri, uvs, mask = face_grid(9)
    lo, hi = template.min(0), template.max(0)
    # a plate behind the middle of the face, anchored to its lower half (a "jaw")
    plate = np.array([[lo[0], lo[1] + 0.01, lo[2]], [hi[0], lo[1] + 0.01, lo[2]], [lo[0], lo[1] + 0.01, hi[2]]],
                     np.float32)
    lower = np.flatnonzero(template[:, 2] < 0.5 * (lo[2] + hi[2]))
    parts = [RigidPart("jaw_plate", plate, np.array([[0, 1, 2]]), lower.astype(np.int64)),
             RigidPart("skull_plate", plate + np.float32(0.002), np.array([[0, 1, 2]]), np.zeros(0, np.int64))]
    head = AnimatedHead.initial(template, tri, uvs, mask, g2a=G2AConfig(sh_degree=1, hidden=16),
                                completion=CompletionConfig(num_points=200), rigid_parts=parts, rigid_per_cm2=2.0)
    return head, template


def test_a_frame_draws_each_rigid_gaussian_once_moved_by_its_part():
    head, template = head_with_parts()
    nf, no, nr = head.binding.num, head.otf.num, head.rigid.num
    assert nr > 10 and head.canonical.num == nf + no + nr
    frame_mesh = torch.from_numpy(template.copy())
    lower = head.rigid.anchors[0]
    frame_mesh[lower] += torch.tensor([0.0, 0.0, -0.005])          # the jaw drops 5 mm
    f = head.frame(frame_mesh, torch.zeros(8))
    rows = (f.source >= nf + no)
    assert int(rows.sum()) == nr and f.dynamic[rows].all()
    src = f.source[rows] - nf - no
    rest = head.canonical.means[nf + no:][src]
    on_jaw = head.rigid.part[src] == 0
    assert torch.allclose(f.means[rows][on_jaw], rest[on_jaw] + torch.tensor([0.0, 0.0, -0.005]), atol=1e-6)
    assert torch.equal(f.means[rows][~on_jaw], rest[~on_jaw])
    assert torch.allclose(f.opacities[rows], torch.sigmoid(head.canonical.opacity_logits[nf + no:][src]))
    assert torch.equal(f.matte[rows], torch.ones(nr))
    assert head.weights.shape == (nf + no + nr,) and float(head.weights[nf + no:].abs().sum()) == 0.0
    every = head.frame(frame_mesh, torch.zeros(8), drop_hidden=False)
    assert int((every.source >= nf + no).sum()) == 2 * nr


def test_rigid_gaussians_survive_the_bundle(tmp_path):
    from emotalk3d_addon.backend.appearance.storage import appearance_section, load_appearance, write_appearance
    from emotalk3d_addon.backend.subject.geometry import Geometry

    head, template = head_with_parts()
    _, tri, uvs, mask = face_grid(9)
    geometry = Geometry(template, tri, uvs, mask.astype(np.uint8), {})
    write_appearance(head, tmp_path)
    section = appearance_section(head, {"target": [0, 0, 0], "distance": 1.0, "fov_x_deg": 30.0,
                                        "width": 64, "height": 64})
    assert section["num_rigid"] == head.rigid.num and section["rigid_parts"] == ["jaw_plate", "skull_plate"]
    defects, back = load_appearance(section, tmp_path / "canonical.ply", tmp_path / "appearance.safetensors", geometry)
    assert defects == []
    assert torch.equal(back.rigid.part, head.rigid.part) and back.rigid.names == head.rigid.names
    assert torch.allclose(back.canonical.means, head.canonical.means)
    wrong = dict(section, num_rigid=head.rigid.num - 1)
    defects, _ = load_appearance(wrong, tmp_path / "canonical.ply", tmp_path / "appearance.safetensors", geometry)
    assert any("holds" in d and "Gaussians" in d for d in defects)
