"""The antialiased mode (Mip-Splatting's 2D mip filter) against what it is for: a Gaussian keeps
its energy whatever its size on screen, and an image rendered coarse matches the fine one
averaged down, where the classic mode thickens what is smaller than a pixel."""
from __future__ import annotations

import math

import pytest
import torch

from emotalk3d_addon.backend.raster import Camera, intrinsics, look_at, rasterize
from emotalk3d_addon.backend.raster.projection import EPS2D

from .scenes import random_scene

D = torch.float64


def _one_gaussian(std_px: float, opacity: float, size: int = 41):
    """One isotropic Gaussian on the optical axis, 2 m away, whose image has std ``std_px`` pixels."""
    cam = Camera(intrinsics(size, size, 40.0, dtype=D), look_at([0.0, 0.0, 0.0], [0.0, 0.0, 2.0], dtype=D),
                 size, size)
    fx = float(cam.K[0, 0])
    sigma = std_px * 2.0 / fx
    return (torch.tensor([[0.0, 0.0, 2.0]], dtype=D), torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=D),
            torch.full((1, 3), sigma, dtype=D), torch.tensor([opacity], dtype=D),
            torch.ones(1, 3, dtype=D), cam)


@pytest.mark.parametrize("std_px", [0.3, 0.6, 1.5, 4.0])
def test_a_gaussian_keeps_its_energy_in_antialiased_mode(std_px):
    # The summed alpha of one faint-enough Gaussian is its integral over the image:
    # o 2 pi s^2 with the compensation, o 2 pi (s^2 + eps2d) without (the dilation adds area).
    # Cut-offs (alpha < 1/255, 3.33 sigma) lose under 2 %.
    o = 0.99
    args = _one_gaussian(std_px, o)
    s2 = std_px ** 2
    anti = float(rasterize(*args, mode="antialiased").alpha.sum())
    classic = float(rasterize(*args, mode="classic").alpha.sum())
    assert anti == pytest.approx(o * 2 * math.pi * s2, rel=0.03)
    assert classic == pytest.approx(o * 2 * math.pi * (s2 + EPS2D), rel=0.03)


def test_large_gaussians_look_the_same_in_both_modes():
    s = random_scene(11, 60, 48, 40, 1, scale=(0.15, 0.3))
    a = rasterize(*s.args(), sh_degree=1, mode="antialiased")
    c = rasterize(*s.args(), sh_degree=1, mode="classic")
    assert (c.alpha > 0.5).float().mean() > 0.5
    assert float((a.rgb - c.rgb).abs().max()) < 0.02 and float((a.alpha - c.alpha).abs().max()) < 0.02


def _downsampled(img: torch.Tensor) -> torch.Tensor:
    """2 x 2 box average of (2H, 2W, ...) -> (H, W, ...)."""
    h, w = img.shape[0] // 2, img.shape[1] // 2
    return img.reshape(h, 2, w, 2, *img.shape[2:]).mean(dim=(1, 3))


def test_rendered_coarse_the_antialiased_mode_matches_the_fine_image_averaged_down():
    # Gaussians that span about a pixel at 64 x 48 (so two at 128 x 96): rendered at the coarse
    # size, the classic mode draws each as a blob of at least eps2d and the image comes out too
    # dense; with the compensation it stays close to the fine render averaged 2 x 2.
    s = random_scene(12, 1500, 64, 48, None, spread=0.8, scale=(0.002, 0.006))
    fine_cam = Camera(s.camera.K * torch.tensor([[2.0], [2.0], [1.0]], dtype=D), s.camera.world_to_camera, 128, 96)
    errors = {}
    for mode in ("classic", "antialiased"):
        fine = rasterize(*s.args()[:5], fine_cam, mode=mode)
        coarse = rasterize(*s.args(), mode=mode)
        truth = torch.cat([_downsampled(fine.rgb), _downsampled(fine.alpha)[..., None]], -1)
        got = torch.cat([coarse.rgb, coarse.alpha[..., None]], -1)
        errors[mode] = float((got - truth).abs().mean())
    assert errors["antialiased"] < 0.5 * errors["classic"], errors
