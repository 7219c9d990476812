"""CUDA path through ``gsplat.rasterization`` (classic mode, unpacked, RGB+ED).

gsplat is imported lazily: it has no CPU path, and its CUDA kernels are compiled on first use.
SH is evaluated here in torch (the same code as the CPU path), so gsplat only ever sees plain
(N, 3 + C) colours and one call renders rgb, the extra channels and expected depth.
"""
from __future__ import annotations

import torch

from .camera import Camera
from .projection import EPS2D
from .sh import sh_to_rgb

NO_CUDA_MESSAGE = ("gsplat needs a CUDA GPU; use the CPU rasteriser (backend='cpu'); "
                   "no CUDA device is available to PyTorch")
BUILD_HINT = ("gsplat compiles its CUDA kernels on first use: it needs a C++ compiler and a CUDA toolkit (nvcc) "
              "matching torch.version.cuda. Rerun with VERBOSE=1 to see the compiler output, and MAX_JOBS=2 "
              "if the build runs out of memory; the build is cached under ~/.cache/torch_extensions.")

_ready = False  # set after the first successful call


def cuda_available() -> bool:
    return torch.cuda.is_available()


def _target_device(t: torch.Tensor) -> torch.device:
    return t.device if t.device.type == "cuda" else torch.device("cuda")


def _build_error(exc: BaseException) -> RuntimeError:
    return RuntimeError(f"gsplat's CUDA kernels failed to build or load ({type(exc).__name__}: {exc}). {BUILD_HINT}")


def _import_gsplat():
    if not cuda_available():
        raise RuntimeError(NO_CUDA_MESSAGE)
    try:
        import gsplat
    except ImportError as exc:
        raise RuntimeError(f"gsplat is not installed ({exc}); pip install gsplat==1.5.3 packaging, "
                           "or use the CPU rasteriser (backend='cpu')") from exc
    return gsplat


def rasterize_gsplat(means, quats, scales, opacities, colors, camera: Camera, sh_degree: int | None,
                     extra: torch.Tensor | None, mode: str = "classic"):
    """(rgb (H,W,3), alpha (H,W), depth (H,W), extra (H,W,C) | None) on the input device;
    ``mode`` is gsplat's ``rasterize_mode`` (classic or antialiased)."""
    global _ready
    gsplat = _import_gsplat()
    out_device = means.device
    dev = _target_device(means)
    dtype = torch.float32  # gsplat's kernels are float32 only
    means, quats, scales, opacities, colors = (t.to(device=dev, dtype=dtype)
                                               for t in (means, quats, scales, opacities, colors))
    viewmat = camera.world_to_camera.to(device=dev, dtype=dtype)
    K = camera.K.to(device=dev, dtype=dtype)
    if sh_degree is not None:
        V = camera.world_to_camera.detach().double()
        center = (-(V[:3, :3].T @ V[:3, 3])).to(device=dev, dtype=dtype)
        rgb = sh_to_rgb(sh_degree, colors, means, center)
    else:
        rgb = colors
    feats = rgb if extra is None else torch.cat([rgb, extra.to(device=dev, dtype=rgb.dtype)], dim=-1)
    try:
        render, alphas, _meta = gsplat.rasterization(
            means, quats, scales, opacities, feats, viewmats=viewmat[None], Ks=K[None],
            width=int(camera.width), height=int(camera.height), near_plane=float(camera.near),
            far_plane=float(camera.far), eps2d=EPS2D, sh_degree=None, packed=False, tile_size=16,
            render_mode="RGB+ED", rasterize_mode=mode)
    except Exception as exc:  # the first call compiles/loads the kernels and hides why that failed
        if _ready:
            raise
        raise _build_error(exc) from exc
    _ready = True
    render = render[0].to(out_device)
    alpha = alphas[0, ..., 0].to(out_device)
    rgb_img = render[..., :3]
    ext = render[..., 3:-1] if extra is not None else None
    depth = render[..., -1]
    return rgb_img, alpha, depth, ext
