"""The 3D smoothing filter: no Gaussian finer than the training images could see.

A camera of focal length f (pixels) samples a point at depth z every z / f metres. Over
the training cameras that see a Gaussian's centre, the finest interval is
T = min_k z_k / f_k. Nothing finer than T was ever in an image, so nothing constrains a
Gaussian narrower than that: trained at 256² and rendered at 1080p, such Gaussians show as
needle-thin streaks and a speckled skin. The filter (Mip-Splatting, Yu et al., CVPR 2024,
its "3D smoothing filter") convolves every Gaussian with an isotropic Gaussian of variance
(s T)², s² = ``FILTER_VARIANCE`` in the training images' pixels squared:

    Sigma' = Sigma + (s T)^2 I        opacity' = opacity * sqrt(det Sigma / det Sigma')

The opacity factor keeps each Gaussian's integral, so at the training resolution an image
barely changes; zoomed in, no splat is narrower than what was seen. Both factors follow
from the scales alone (Sigma + c I keeps Sigma's axes), so the filter works on the
rasteriser's inputs and both backends draw it alike. It is applied in training as well,
so the Gaussians learn with it (``train.appearance`` recomputes T as they move).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from ..raster.camera import Camera

FILTER_VARIANCE = 0.2
"""s²: the filter's variance in training pixels squared (Mip-Splatting's value)."""

FRUSTUM_MARGIN = 0.15
"""A Gaussian counts as seen by a camera when its centre projects within the image widened
by this fraction on each side (a Gaussian just outside still covers pixels)."""


@torch.no_grad()
def sampling_intervals(means: torch.Tensor, cameras: Sequence[Camera],
                       margin: float = FRUSTUM_MARGIN) -> torch.Tensor:
    """(N,) metres: each Gaussian's finest sampling interval T over ``cameras``.

    means (N, 3) metres in the cameras' world. T = min over the cameras that see the
    centre (in front of ``near``, inside the image widened by ``margin``) of depth divided
    by the larger focal length. A Gaussian that no camera sees gets the largest T of those
    seen (no image constrains it), or 0 when no Gaussian is seen at all.
    """
    if means.ndim != 2 or means.shape[1] != 3:
        raise ValueError(f"means must be (N, 3), got {tuple(means.shape)}")
    if not cameras:
        raise ValueError("sampling_intervals needs at least one camera")
    pts = means.detach().to(torch.float64)
    best = torch.full((pts.shape[0],), math.inf, dtype=torch.float64, device=pts.device)
    for cam in cameras:
        c = cam.to(pts.device, torch.float64)
        cam_pts = pts @ c.world_to_camera[:3, :3].T + c.world_to_camera[:3, 3]
        z = cam_pts[:, 2]
        front = z > c.near
        zs = torch.where(front, z, torch.ones_like(z))
        u = c.K[0, 0] * cam_pts[:, 0] / zs + c.K[0, 2]
        v = c.K[1, 1] * cam_pts[:, 1] / zs + c.K[1, 2]
        mx, my = margin * c.width, margin * c.height
        seen = front & (u >= -mx) & (u <= c.width + mx) & (v >= -my) & (v <= c.height + my)
        focal = float(max(c.K[0, 0], c.K[1, 1]))
        best = torch.where(seen, torch.minimum(best, z / focal), best)
    seen_any = torch.isfinite(best)
    fallback = best[seen_any].max() if bool(seen_any.any()) else torch.zeros((), dtype=torch.float64)
    return torch.where(seen_any, best, fallback).to(means.dtype)


def filter_std(intervals: torch.Tensor, variance: float = FILTER_VARIANCE) -> torch.Tensor:
    """(N,) metres: the filter's standard deviation s T for sampling intervals T (N,) metres."""
    if variance < 0:
        raise ValueError(f"the filter variance must be >= 0, got {variance}")
    return intervals * math.sqrt(variance)


def smooth(scales: torch.Tensor, opacities: torch.Tensor, std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussians convolved with isotropic Gaussians of standard deviation ``std``.

    scales (N, 3) linear standard deviations, metres; opacities (N,); std (N,) metres.
    Returns (N, 3) scales sqrt(s² + std²) and (N,) opacities times
    prod(s / sqrt(s² + std²)) = sqrt(det Sigma / det Sigma'); differentiable in scales and
    opacities.
    """
    if scales.ndim != 2 or scales.shape[1] != 3 or tuple(opacities.shape) != (scales.shape[0],) \
            or tuple(std.shape) != (scales.shape[0],):
        raise ValueError(f"need scales (N, 3), opacities (N,) and std (N,), got {tuple(scales.shape)}, "
                         f"{tuple(opacities.shape)}, {tuple(std.shape)}")
    smoothed = torch.sqrt(scales * scales + (std * std)[:, None])
    return smoothed, opacities * torch.prod(scales / smoothed, dim=1)
