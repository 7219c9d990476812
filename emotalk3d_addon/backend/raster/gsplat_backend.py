"""CUDA path through ``gsplat.rasterization`` (classic mode, unpacked, RGB+ED).

gsplat is imported lazily: it has no CPU path, and its CUDA kernels are compiled on first use.
SH is evaluated here in torch (the same code as the CPU path), so gsplat only ever sees plain
(N, 3 + C) colours and one call renders rgb, the extra channels and expected depth.
"""
from __future__ import annotations

import ntpath
import os
import posixpath
import sys
from typing import Mapping

import torch

from .camera import Camera
from .projection import EPS2D
from .sh import sh_to_rgb

NO_CUDA_MESSAGE = ("gsplat needs a CUDA GPU; use the CPU rasteriser (backend='cpu'); "
                   "no CUDA device is available to PyTorch")
BUILD_HINT = ("gsplat compiles its CUDA kernels on first use: it needs a C++ compiler and a CUDA toolkit (nvcc) "
              "matching torch.version.cuda. Rerun with VERBOSE=1 to see the compiler output, and MAX_JOBS=2 "
              "if the build runs out of memory")
GSPLAT_EXTENSION = "gsplat_cuda"         # the name gsplat builds its kernels under


def extension_build_dir(platform: str, env: Mapping[str, str], home: str, build_folder: str,
                        name: str = GSPLAT_EXTENSION) -> str:
    """The folder PyTorch's ``cpp_extension`` builds the extension ``name`` in (its
    ``_get_build_directory`` rule), for ``platform`` (``sys.platform``), the environment
    ``env`` and the user's ``home``: ``$TORCH_EXTENSIONS_DIR/<name>`` when set, else
    ``<cache>/torch_extensions/<build_folder>/<name>``, the cache being
    ``%LOCALAPPDATA%\\torch_extensions\\torch_extensions\\Cache`` on Windows,
    ``~/Library/Caches/torch_extensions`` on macOS and ``$XDG_CACHE_HOME`` (or ``~/.cache``)
    ``/torch_extensions`` elsewhere. ``build_folder`` is e.g. ``py311_cu128``."""
    path = ntpath if platform == "win32" else posixpath
    custom = env.get("TORCH_EXTENSIONS_DIR")
    if custom:
        return path.join(custom, name)
    if platform == "win32":
        local = env.get("LOCALAPPDATA") or ntpath.join(home, "AppData", "Local")
        root = ntpath.join(local, "torch_extensions", "torch_extensions", "Cache")
    elif platform == "darwin":
        root = posixpath.join(home, "Library", "Caches", "torch_extensions")
    else:
        root = posixpath.join(env.get("XDG_CACHE_HOME") or posixpath.join(home, ".cache"), "torch_extensions")
    return path.join(root, build_folder, name)


def build_hint() -> str:
    """``BUILD_HINT`` with the folder this process's build is cached in (delete it to rebuild)."""
    accelerator = (f"rocm{torch.version.hip.replace('.', '')}" if getattr(torch.version, "hip", None)
                   else f"cu{torch.version.cuda.replace('.', '')}" if torch.version.cuda else "cpu")
    build_folder = f"py{sys.version_info.major}{sys.version_info.minor}{getattr(sys, 'abiflags', '')}_{accelerator}"
    where = extension_build_dir(sys.platform, os.environ, os.path.expanduser("~"), build_folder)
    return f"{BUILD_HINT}; the build is cached in {where} (delete that folder to build again)."

_ready = False  # set after the first successful call


def cuda_available() -> bool:
    return torch.cuda.is_available()


def _target_device(t: torch.Tensor) -> torch.device:
    return t.device if t.device.type == "cuda" else torch.device("cuda")


def _build_error(exc: BaseException) -> RuntimeError:
    return RuntimeError(f"gsplat's CUDA kernels failed to build or load ({type(exc).__name__}: {exc}). {build_hint()}")


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
