"""3D Gaussian splatting rasteriser: gsplat's classic conventions on two backends.

``rasterize(...)`` renders rgb, alpha, expected depth and optional extra channels, and is
differentiable w.r.t. every Gaussian parameter. ``backend="auto"`` uses gsplat (CUDA) when the
tensors live on a CUDA device, else the CPU rasteriser.

Modules: ``camera`` (Camera, look_at, intrinsics), ``sh`` (spherical harmonics, torch),
``projection`` (EWA projection, torch autograd: the training path), ``cpu_projection`` (its
forward-only numba twin: the inference path), ``cpu`` (tile binning and compositing, forward and
backward, numba), ``gsplat_backend`` (CUDA), ``reference`` (brute-force float64 renderer for tests).

The numba kernels compile on first use (~20 s per dtype) and are cached next to the sources.
"""
from .api import BACKENDS, RasterOutput, rasterize
from .camera import Camera, intrinsics, look_at
from .cpu import ForwardStats

__all__ = ["Camera", "RasterOutput", "rasterize", "look_at", "intrinsics", "ForwardStats", "BACKENDS"]
