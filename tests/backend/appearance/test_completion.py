"""Head completion: fusion weight, OTF motion decay, nearest face point, sampling."""
from __future__ import annotations

import math

import pytest
import torch

from emotalk3d_addon.backend.appearance.completion import (CompletionConfig, OTFBinding, bind_otf, fusion_weight,
                                                           head_bounds, nearest_face_point, otf_motion,
                                                           sample_completion)
from emotalk3d_addon.backend.appearance.constants import ALPHA_PER_MM, D0_MM, DTH_MM, MM_PER_M
from emotalk3d_addon.backend.errors import InputError

MM = 1.0 / MM_PER_M  # metres per millimetre


def test_constants_are_the_papers():
    assert (MM_PER_M, ALPHA_PER_MM, D0_MM, DTH_MM) == (1000.0, 0.1, 5.0, 10.0)


def test_fusion_weight_at_known_distances():
    d = torch.tensor([0.0, 4.99, 5.0, 10.0, 15.0, 20.0], dtype=torch.float64) * MM
    w = fusion_weight(d)
    assert torch.allclose(w, torch.tensor([0, 0, 0, 0.5, 1, 1], dtype=torch.float64), atol=1e-12)
    # monotone, linear in the seam, 0 -> 1 exactly over d0 .. d0 + d_th
    d = torch.linspace(0, 30, 3001, dtype=torch.float64) * MM
    w = fusion_weight(d)
    assert (w.diff() >= 0).all()
    seam = (d > 5 * MM) & (d < 15 * MM)
    assert torch.allclose(w[seam], (d[seam] / MM - 5) / 10, atol=1e-9)
    assert (w[d <= 5 * MM] == 0).all() and (w[d >= 15 * MM + 1e-12] == 1).all()


def test_otf_motion_decay():
    delta = torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]]) * 1e-3  # (Nf=2, 3) metres
    nearest = torch.tensor([0, 1, 0, 1])
    dist = torch.tensor([0.0, 10.0, 10.0, 30.0]) * MM
    out = otf_motion(delta, nearest, dist)
    assert torch.equal(out[0], delta[0])  # d = 0: full motion
    assert torch.allclose(out[1], delta[1] * math.exp(-1.0))  # 10 mm: e^-1
    assert torch.allclose(out[2], delta[0] * math.exp(-1.0))
    assert torch.allclose(out[3], delta[1] * math.exp(-3.0))
    # batched over frames, differentiable in the face motion
    frames = torch.stack([delta, 2 * delta]).requires_grad_(True)
    outb = otf_motion(frames, nearest, dist)
    assert outb.shape == (2, 4, 3) and torch.allclose(outb[1], 2 * out)
    outb.sum().backward()
    assert frames.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_nearest_face_point_vs_brute_force(dtype):
    g = torch.Generator().manual_seed(1)
    face = (torch.rand(300, 3, generator=g) * 0.2).to(dtype)
    pts = (torch.rand(1000, 3, generator=g) * 0.3 - 0.05).to(dtype)
    # tiny blocks exercise the chunking
    idx, dist = nearest_face_point(pts, face, block_entries=300 * 37)
    full = torch.cdist(pts.double(), face.double())
    best = full.min(1)
    assert torch.allclose(dist.double(), best.values, atol=1e-6 if dtype == torch.float32 else 1e-12)
    if dtype == torch.float64:
        assert torch.equal(idx, best.indices)
    else:  # any index whose distance ties the minimum within float32 rounding
        assert torch.allclose(full.gather(1, idx[:, None])[:, 0], best.values, atol=1e-6)
    # the distance returned is that to the returned index
    assert torch.allclose(dist.double(), (pts.double() - face.double()[idx]).norm(dim=1), atol=1e-7)
    i0, d0 = nearest_face_point(face, face)
    assert torch.equal(i0, torch.arange(300)) and (d0 == 0).all()


def test_bind_otf_and_state_dict():
    face = torch.tensor([[0.0, 0, 0], [0.1, 0, 0]])
    otf = torch.tensor([[0.0, 0.012, 0], [0.1, 0, 0.005], [0.05, 0.5, 0]])
    b = bind_otf(otf, face)
    assert b.nearest.tolist()[:2] == [0, 1]
    assert torch.allclose(b.distance, torch.tensor([0.012, 0.005, math.hypot(0.05, 0.5)]))
    assert torch.allclose(b.weight, torch.tensor([0.7, 0.0, 1.0]))
    back = OTFBinding.from_state_dict(b.state_dict(), num_face=2)
    assert torch.equal(back.nearest, b.nearest) and torch.equal(back.distance, b.distance)
    bad = b.state_dict()
    bad["otf.nearest"] = torch.tensor([0, 2, 1])
    with pytest.raises(InputError, match="outside"):
        OTFBinding.from_state_dict(bad, num_face=2)
    with pytest.raises(InputError, match="missing"):
        OTFBinding.from_state_dict({}, num_face=2)


def test_sampling_count_exclusion_uniformity():
    g = torch.Generator().manual_seed(2)
    # face points clustered in the (-,-,-) octant of the unit-ish box
    face = torch.rand(200, 3, generator=g) * 0.04 + torch.tensor([-0.08, -0.08, -0.08])
    cfg = CompletionConfig(num_points=16000, exclusion_mm=10.0, bounds=((-0.1, -0.1, -0.1), (0.1, 0.1, 0.1)), seed=3)
    pts = sample_completion(face, cfg)
    assert pts.shape == (16000, 3) and pts.dtype == torch.float32
    assert (pts >= -0.1).all() and (pts <= 0.1).all()
    _, d = nearest_face_point(pts, face)
    assert d.min() >= 0.010 - 1e-7
    # uniform: the seven octants away from the face hold equal counts (chi-square, 6 dof)
    octant = ((pts > 0).long() * torch.tensor([1, 2, 4])).sum(1)
    counts = torch.bincount(octant, minlength=8)[1:].double()
    expected = counts.mean()
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 22.5  # p ~ 0.001 for 6 dof
    # the face octant holds fewer (its excluded shell), but not none
    assert 0 < torch.bincount(octant, minlength=8)[0] < expected
    # deterministic per seed
    assert torch.equal(sample_completion(face, cfg), pts)
    other = sample_completion(face, CompletionConfig(**{**cfg.__dict__, "seed": 4}))
    assert not torch.equal(other, pts)


def test_default_bounds_and_errors():
    from .meshes import face_grid
    face = torch.from_numpy(face_grid(9)[0])
    lo, hi = head_bounds(face)
    flo, fhi = face.min(0).values, face.max(0).values
    assert (lo < flo).all() and (hi > fhi).all()
    assert hi[1] - fhi[1] > 0.1  # room behind the face for the back of the head
    pts = sample_completion(face, CompletionConfig(num_points=500, seed=0))
    assert pts.shape == (500, 3)
    assert ((pts >= lo) & (pts <= hi)).all()
    assert nearest_face_point(pts, face)[1].min() >= D0_MM * MM - 1e-7
    assert sample_completion(face, CompletionConfig(num_points=0)).shape == (0, 3)
    with pytest.raises(ValueError, match="lo < hi"):
        sample_completion(face, CompletionConfig(num_points=5, bounds=((0, 0, 0), (1, 0, 1))))
    with pytest.raises(ValueError, match="could only place"):
        sample_completion(face, CompletionConfig(num_points=50, exclusion_mm=1000.0, bounds=((0, 0, 0), (0.1, 0.1, 0.1))),
                          max_rounds=2)
