"""3D Gaussian splatting rasteriser: gsplat's classic conventions on two backends.

``rasterize(...)`` renders rgb, alpha, expected depth and optional extra channels, and is
differentiable w.r.t. every Gaussian parameter. ``backend="auto"`` uses gsplat (CUDA) when the
tensors live on a CUDA device, else the CPU rasteriser (torch projection + numba tiles).

Modules: ``camera`` (Camera, look_at, intrinsics), ``sh`` (spherical harmonics), ``projection``
(EWA projection, torch), ``cpu`` (binning + compositing in numba), ``gsplat_backend`` (CUDA),
``reference`` (brute-force float64 renderer used by the tests).
"""
from .api import BACKENDS, RasterOutput, rasterize
from .camera import Camera, intrinsics, look_at
from .cpu import ForwardStats

__all__ = ["Camera", "RasterOutput", "rasterize", "look_at", "intrinsics", "ForwardStats", "BACKENDS"]
