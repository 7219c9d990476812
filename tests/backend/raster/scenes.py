"""Random test scenes for the rasteriser tests."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from emotalk3d_addon.backend.raster import Camera, intrinsics, look_at
from emotalk3d_addon.backend.raster.reference import render_reference


@dataclass
class Scene:
    means: torch.Tensor
    quats: torch.Tensor
    scales: torch.Tensor
    opacities: torch.Tensor
    colors: torch.Tensor
    camera: Camera
    sh_degree: int | None = None
    extra: torch.Tensor | None = None

    def to(self, dtype: torch.dtype) -> "Scene":
        return Scene(*(t.to(dtype) for t in (self.means, self.quats, self.scales, self.opacities, self.colors)),
                     self.camera.to(None, dtype), self.sh_degree,
                     None if self.extra is None else self.extra.to(dtype))

    def args(self):
        return self.means, self.quats, self.scales, self.opacities, self.colors, self.camera

    def reference(self, mode: str = "classic") -> dict:
        c = self.camera
        return render_reference(self.means, self.quats, self.scales, self.opacities, self.colors, c.K,
                                c.world_to_camera, c.width, c.height, c.near, c.far, self.sh_degree, self.extra,
                                antialiased=mode == "antialiased")


def random_scene(seed: int, n: int = 100, width: int = 40, height: int = 32, sh_degree: int | None = None,
                 extra: int = 0, behind: float = 0.1, spread: float = 1.0, scale: tuple = (0.005, 0.12),
                 dtype: torch.dtype = torch.float64) -> Scene:
    """N Gaussians around (0, 0, 2) seen from near the origin; a fraction ``behind`` sits behind the
    camera, and ``spread`` > ~0.7 puts some partly or wholly off-screen."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g, dtype=torch.float64) * torch.tensor([0.8, 0.6, 0.6]) * spread
    means += torch.tensor([0.0, 0.0, 2.0])
    nb = int(round(behind * n))
    means[:nb, 2] = -means[:nb, 2] + 0.3  # behind the camera
    quats = torch.randn(n, 4, generator=g, dtype=torch.float64)
    quats *= 1.0 + torch.rand(n, 1, generator=g, dtype=torch.float64)  # not normalised
    scales = torch.rand(n, 3, generator=g, dtype=torch.float64) * (scale[1] - scale[0]) + scale[0]
    opac = torch.rand(n, generator=g, dtype=torch.float64)
    if sh_degree is None:
        colors = torch.rand(n, 3, generator=g, dtype=torch.float64)
    else:
        colors = torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g, dtype=torch.float64) * 0.4
    ext = torch.rand(n, extra, generator=g, dtype=torch.float64) if extra else None
    cam = Camera(intrinsics(width, height, 55.0, dtype=torch.float64),
                 look_at([0.1, -0.1, -0.2], [0.0, 0.0, 2.0], dtype=torch.float64), width, height)
    return Scene(means, quats, scales, opac, colors, cam, sh_degree, ext).to(dtype)


def max_err(a: torch.Tensor, b: np.ndarray) -> float:
    return float(np.abs(a.detach().double().cpu().numpy() - b).max()) if b.size else 0.0
