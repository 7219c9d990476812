"""Photometric losses of 3D Gaussian Splatting: L1 + D-SSIM (Kerbl et al. 2023)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
C1, C2 = 0.01 ** 2, 0.03 ** 2


def _gaussian_window(channels: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    x = torch.arange(SSIM_WINDOW, device=device, dtype=dtype) - SSIM_WINDOW // 2
    g = torch.exp(-x ** 2 / (2 * SSIM_SIGMA ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, SSIM_WINDOW, SSIM_WINDOW).contiguous()


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of two (H, W, C) images in [0, 1] (11x11 Gaussian window, sigma 1.5)."""
    return ssim_map(a, b).mean()


def ssim_map(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM (1, C, H, W); zero padding at the borders, as the 3DGS reference code."""
    x, y = a.permute(2, 0, 1)[None], b.permute(2, 0, 1)[None]
    channels = x.shape[1]
    w = _gaussian_window(channels, x.device, x.dtype)
    pad = SSIM_WINDOW // 2
    mu_x = F.conv2d(x, w, padding=pad, groups=channels)
    mu_y = F.conv2d(y, w, padding=pad, groups=channels)
    sxx = F.conv2d(x * x, w, padding=pad, groups=channels) - mu_x ** 2
    syy = F.conv2d(y * y, w, padding=pad, groups=channels) - mu_y ** 2
    sxy = F.conv2d(x * y, w, padding=pad, groups=channels) - mu_x * mu_y
    num = (2 * mu_x * mu_y + C1) * (2 * sxy + C2)
    den = (mu_x ** 2 + mu_y ** 2 + C1) * (sxx + syy + C2)
    return num / den


def photometric_loss(render: torch.Tensor, target: torch.Tensor, ssim_weight: float = 0.2) -> torch.Tensor:
    """(1 - w) * L1 + w * (1 - SSIM) between (H, W, C) images, as in 3DGS (w = 0.2)."""
    l1 = (render - target).abs().mean()
    return (1 - ssim_weight) * l1 + ssim_weight * (1 - ssim(render, target))


def psnr(render: torch.Tensor, target: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1]."""
    mse = float((render - target).square().mean())
    return float("inf") if mse == 0 else -10.0 * torch.log10(torch.tensor(mse)).item()
