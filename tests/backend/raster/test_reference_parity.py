"""CPU rasteriser against the brute-force float64 reference on random scenes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from emotalk3d_addon.backend.raster import ForwardStats, rasterize

from .scenes import max_err, random_scene

CASES = [  # (seed, n, sh_degree, extra channels, width, height)
    (0, 30, None, 0, 40, 32),
    (1, 100, 0, 1, 40, 32),
    (2, 300, 1, 2, 40, 32),
    (3, 300, 2, 0, 33, 47),
    (4, 200, 3, 3, 40, 32),
    (5, 250, None, 1, 50, 17),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed,n,deg,extra,width,height", CASES)
def test_matches_reference(seed, n, deg, extra, width, height, dtype):
    scene = random_scene(seed, n, width, height, deg, extra, spread=1.2, dtype=dtype)
    ref = scene.reference()
    for grad in (False, True):  # inference path (numba projection) and training path (torch projection)
        with torch.set_grad_enabled(grad):
            args = [t.clone().requires_grad_(grad) for t in scene.args()[:5]]
            out = rasterize(*args, scene.camera, sh_degree=deg, extra=scene.extra, backend="cpu")
        assert out.rgb.shape == (height, width, 3) and out.alpha.shape == (height, width)
        assert out.depth.shape == (height, width)
        assert out.rgb.dtype == dtype
        tol = 1e-3 if dtype == torch.float32 else 1e-9
        assert max_err(out.rgb, ref["rgb"]) < tol
        assert max_err(out.alpha, ref["alpha"]) < tol
        assert max_err(out.depth, ref["depth"]) < tol * 10  # depths ~2: relative 1e-4 in float32
        if extra:
            assert out.extra.shape == (height, width, extra)
            assert max_err(out.extra, ref["extra"]) < tol
        else:
            assert out.extra is None
    # the scene really exercises culling, the image border and overlap
    assert (ref["alpha"] > 0.05).mean() > 0.2
    assert (ref["alpha"] == 0).any() or n > 100


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed,n,deg,extra,width,height", CASES[1:4])
def test_antialiased_matches_reference(seed, n, deg, extra, width, height, dtype):
    # small Gaussians, so the opacity compensation is far from 1 for many of them
    scene = random_scene(seed, n, width, height, deg, extra, spread=1.2, scale=(0.002, 0.05), dtype=dtype)
    ref, classic = scene.reference("antialiased"), scene.reference("classic")
    assert np.abs(ref["alpha"] - classic["alpha"]).max() > 0.3       # the mode really changes the image
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            args = [t.clone().requires_grad_(grad) for t in scene.args()[:5]]
            out = rasterize(*args, scene.camera, sh_degree=deg, extra=scene.extra, backend="cpu", mode="antialiased")
        tol = 1e-3 if dtype == torch.float32 else 1e-9
        assert max_err(out.rgb, ref["rgb"]) < tol
        assert max_err(out.alpha, ref["alpha"]) < tol
        assert max_err(out.depth, ref["depth"]) < tol * 10
        if extra:
            assert max_err(out.extra, ref["extra"]) < tol


def test_unknown_mode_is_refused():
    s = random_scene(1, 10)
    with pytest.raises(ValueError, match="raster mode"):
        rasterize(*s.args(), mode="mip")


def test_scene_has_culled_and_offscreen_gaussians():
    from emotalk3d_addon.backend.raster.projection import project

    s = random_scene(2, 300, spread=1.2)
    p = project(*s.args()[:5], s.camera, s.sh_degree)
    behind = p.depths < s.camera.near
    assert behind.sum() >= 20 and not p.visible[behind].any()
    m = p.means2d.detach()
    offscreen_centre = (~behind) & ((m[:, 0] < 0) | (m[:, 0] > 40) | (m[:, 1] < 0) | (m[:, 1] > 32))
    assert (offscreen_centre & p.visible).sum() >= 5  # centre off-screen, footprint on it
    assert (offscreen_centre & ~p.visible).sum() >= 5  # wholly off-screen: culled


def test_stats_count_pairs():
    s = random_scene(7, 200, sh_degree=1)
    st = ForwardStats()
    with torch.no_grad():
        rasterize(*s.args(), sh_degree=1, stats=st)
    assert 0 < st.pairs_evaluated <= st.pairs_binned * 256
    assert st.pairs_binned > 0


def test_translucent_pile_without_termination_matches_reference():
    # many faint Gaussians: long per-pixel lists, nothing terminates early
    s = random_scene(8, 300)
    s.opacities = s.opacities * 0.05 + 0.01
    ref = s.reference()
    out = rasterize(*s.args())
    assert max_err(out.rgb, ref["rgb"]) < 1e-9 and max_err(out.alpha, ref["alpha"]) < 1e-9
    assert np.all(ref["alpha"] < 1 - 1e-3)
