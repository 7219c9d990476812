"""Projection and SH conventions: against gsplat's own PyTorch reference, and numba twin vs torch."""
from __future__ import annotations

import pytest
import torch

from emotalk3d_addon.backend.raster.cpu_projection import project_features
from emotalk3d_addon.backend.raster.projection import covariances, project
from emotalk3d_addon.backend.raster.sh import eval_sh, rgb_to_sh0, sh_bases, sh_to_rgb

from .scenes import random_scene


def _gsplat_torch_impl():
    pytest.importorskip("packaging")
    return pytest.importorskip("gsplat.cuda._torch_impl")


def test_projection_matches_gsplat_torch_reference():
    impl = _gsplat_torch_impl()
    s = random_scene(3, 300, 40, 32, spread=1.5)
    p = project(s.means, s.quats, s.scales, s.opacities, s.colors, s.camera)
    covars = covariances(s.quats, s.scales)
    radii, means2d, depths, conics, _ = impl._fully_fused_projection(
        s.means, covars, s.camera.world_to_camera[None], s.camera.K[None], s.camera.width, s.camera.height,
        eps2d=0.3, near_plane=s.camera.near, far_plane=s.camera.far)
    valid = (radii[0] > 0).all(-1)
    ours = p.depths > s.camera.near
    assert valid.sum() > 100
    assert torch.allclose(depths[0], p.depths, atol=1e-12)
    assert torch.allclose(means2d[0][ours], p.means2d[ours], atol=1e-9)
    assert torch.allclose(conics[0][ours], p.conics[ours], rtol=1e-9, atol=1e-12)
    # gsplat's reference uses the 3.33-sigma box (no opacity): everything we keep, it keeps
    assert not (p.visible & ~valid).any()


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_sh_matches_gsplat_torch_reference(degree):
    impl = _gsplat_torch_impl()
    g = torch.Generator().manual_seed(degree)
    dirs = torch.randn(500, 3, generator=g, dtype=torch.float64) * 3
    coeffs = torch.randn(500, (degree + 1) ** 2, 3, generator=g, dtype=torch.float64)
    ref = impl._spherical_harmonics(degree, dirs, coeffs)
    assert torch.allclose(eval_sh(degree, coeffs, dirs), ref, atol=1e-12)
    # lower degree with more coefficients given: the extra ones are ignored
    if degree < 3:
        coeffs16 = torch.randn(500, 16, 3, generator=g, dtype=torch.float64)
        assert torch.allclose(eval_sh(degree, coeffs16, dirs), impl._spherical_harmonics(degree, dirs, coeffs16),
                              atol=1e-12)


def test_sh_conventions():
    rgb = torch.tensor([[0.2, 0.5, 0.9], [1.3, -0.2, 0.0]], dtype=torch.float64)
    means = torch.randn(2, 3, dtype=torch.float64)
    out = sh_to_rgb(0, rgb_to_sh0(rgb), means, torch.zeros(3, dtype=torch.float64))
    assert torch.allclose(out, rgb.clamp_min(0))  # +0.5, clamped at 0 only
    d = torch.randn(50, 3, dtype=torch.float64)
    b1 = sh_bases(3, torch.nn.functional.normalize(d, dim=-1))
    b2 = sh_bases(3, torch.nn.functional.normalize(2.5 * d, dim=-1))
    assert torch.allclose(b1, b2) and b1.shape == (50, 16)
    with pytest.raises(ValueError):
        sh_bases(4, d)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("deg,extra", [(None, 0), (0, 2), (3, 1)])
def test_numba_projection_matches_torch(dtype, deg, extra):
    s = random_scene(5, 400, 40, 32, deg, extra, spread=1.5, dtype=dtype)
    p1 = project(s.means, s.quats, s.scales, s.opacities, s.colors, s.camera, deg)
    p2, feats = project_features(s.means, s.quats, s.scales, s.opacities, s.colors, s.camera, deg, s.extra)
    assert feats.shape == (400, 4 + extra) and feats.dtype == dtype
    v = p1.visible
    assert (p1.visible == p2.visible).float().mean() > 0.99 and v.sum() > 100
    v = v & p2.visible
    rtol = 1e-5 if dtype == torch.float32 else 1e-12
    for a, b in ((p1.means2d, p2.means2d), (p1.conics, p2.conics), (p1.depths, p2.depths), (p1.colors, p2.colors)):
        assert torch.allclose(a[v], b[v], rtol=rtol, atol=rtol * float(a[v].abs().max()))
    assert ((p1.radii[v] - p2.radii[v]).abs() <= 1).all()
    if extra:
        assert torch.equal(feats[:, 4:], s.extra)


def test_jacobian_clamp_outside_frustum():
    # a Gaussian far to the side: gsplat clamps x/z to 1.3 x tan(fov/2) in the Jacobian, not the mean
    s = random_scene(0, 1)
    s.means = torch.tensor([[3.0, 0.0, 1.0]], dtype=torch.float64)
    s.camera = type(s.camera)(s.camera.K, torch.eye(4, dtype=torch.float64), 40, 32)
    p = project(s.means, s.quats, s.scales, s.opacities, s.colors, s.camera)
    fx = float(s.camera.K[0, 0])
    assert abs(float(p.means2d[0, 0]) - (fx * 3.0 + 20)) < 1e-9  # unclamped mean
    s2 = random_scene(0, 1)
    s2.means = torch.tensor([[1.3 * 20 / fx + 0.1, 0.0, 1.0]], dtype=torch.float64)  # also beyond the limit
    p2 = project(s2.means, s.quats, s.scales, s.opacities, s.colors, s.camera)
    assert torch.allclose(p.conics, p2.conics)  # same clamped Jacobian
