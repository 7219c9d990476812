"""``rasterize``: one function, gsplat's conventions (classic or antialiased mode), a CPU (numba)
backend and two CUDA ones: gsplat where its kernels build, and the toolkit-free Triton rasteriser.
On CUDA tensors ``backend="auto"`` takes the first GPU path that passed its self-check
(``gpu_paths``) and falls back to the next, and last to the CPU, when one fails."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import cpu as _cpu
from . import gpu_paths
from .cpu_binning import bin_gaussians
from .camera import Camera
from .cpu_projection import project_features
from .projection import RASTER_MODES, check_mode, project

BACKENDS = ("auto", "cpu", "gsplat", "triton")


@dataclass
class RasterOutput:
    rgb: torch.Tensor            # (H, W, 3) premultiplied by alpha (black background)
    alpha: torch.Tensor          # (H, W)
    depth: torch.Tensor          # (H, W) expected camera z, 0 where alpha == 0
    extra: torch.Tensor | None   # (H, W, C) alpha-weighted sums of the extra channels, or None


def _check(means, quats, scales, opacities, colors, sh_degree, extra):
    if means.dim() != 2 or means.shape[1] != 3:
        raise ValueError(f"means must be (N, 3), got {tuple(means.shape)}")
    n = means.shape[0]
    if tuple(quats.shape) != (n, 4):
        raise ValueError(f"quats must be (N, 4) wxyz with N={n}, got {tuple(quats.shape)}")
    if tuple(scales.shape) != (n, 3):
        raise ValueError(f"scales must be (N, 3) linear with N={n}, got {tuple(scales.shape)}")
    if opacities.dim() == 2 and opacities.shape[1] == 1:
        opacities = opacities[:, 0]
    if tuple(opacities.shape) != (n,):
        raise ValueError(f"opacities must be (N,) with N={n}, got {tuple(opacities.shape)}")
    if sh_degree is None:
        if tuple(colors.shape) != (n, 3):
            raise ValueError(f"colors must be (N, 3) RGB when sh_degree is None, got {tuple(colors.shape)}")
    else:
        if not (isinstance(sh_degree, int) and 0 <= sh_degree <= 3):
            raise ValueError(f"sh_degree must be None or 0..3, got {sh_degree!r}")
        k = (sh_degree + 1) ** 2
        if colors.dim() != 3 or colors.shape[0] != n or colors.shape[1] < k or colors.shape[2] != 3:
            raise ValueError(f"colors must be SH coefficients (N, >= {k}, 3) for sh_degree {sh_degree}, "
                             f"got {tuple(colors.shape)}")
    if extra is not None and (extra.dim() != 2 or extra.shape[0] != n):
        raise ValueError(f"extra must be (N, C), got {tuple(extra.shape)}")
    return opacities


def resolve_backend(backend: str, means: torch.Tensor) -> str:
    """The backend to draw with: ``auto`` is the first self-checked GPU path on CUDA tensors, else ``cpu``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        if means.device.type == "cuda" and torch.cuda.is_available():
            usable = gpu_paths.CHOICE.usable(means.device, self_check)
            return usable[0] if usable else "cpu"
        return "cpu"
    return backend


def self_check(name: str, device: torch.device) -> float:
    """Draw ``gpu_paths.probe_scene`` with backend ``name`` on ``device`` and with the CPU rasteriser, in both
    raster modes: the largest absolute difference over colour, alpha and the extra channel (inf if not finite)."""
    means, quats, scales, opacities, sh, extra, camera = gpu_paths.probe_scene(device)
    cpu = torch.device("cpu")
    worst = 0.0
    with torch.no_grad():
        for mode in RASTER_MODES:
            got = rasterize(means, quats, scales, opacities, sh, camera, sh_degree=1, extra=extra, backend=name,
                            mode=mode)
            want = rasterize(means.to(cpu), quats.to(cpu), scales.to(cpu), opacities.to(cpu), sh.to(cpu),
                             camera.to(cpu), sh_degree=1, extra=extra.to(cpu), backend="cpu", mode=mode)
            for a, b in ((got.rgb, want.rgb), (got.alpha, want.alpha), (got.extra, want.extra)):
                diff = (a.detach().float().to(cpu) - b.float()).abs()
                if not bool(torch.isfinite(diff).all()):
                    return float("inf")
                worst = max(worst, float(diff.max()))
    return worst


def _draw_gpu(which: str, means, quats, scales, opacities, colors, camera, sh_degree, extra, mode):
    if which == "gsplat":
        from .gsplat_backend import rasterize_gsplat

        return RasterOutput(*rasterize_gsplat(means, quats, scales, opacities, colors, camera, sh_degree, extra, mode))
    from .triton_backend import rasterize_triton

    return RasterOutput(*rasterize_triton(means, quats, scales, opacities, colors, camera, sh_degree, extra, mode))


def rasterize(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, opacities: torch.Tensor,
              colors: torch.Tensor, camera: Camera, *, sh_degree: int | None = None,
              extra: torch.Tensor | None = None, backend: str = "auto", mode: str = "classic",
              stats: _cpu.ForwardStats | None = None) -> RasterOutput:
    """Render N 3D Gaussians through ``camera`` (gsplat's ``rasterize_mode`` ``mode``, classic or
    antialiased (``projection``), eps2d 0.3, RGB+ED).

    means (N,3) world; quats (N,4) wxyz (normalised here); scales (N,3) linear; opacities (N,)
    in [0,1]; colors (N,3) RGB, or SH coefficients (N,K,3) when ``sh_degree`` is given;
    ``extra`` (N,C) channels splatted like rgb. Differentiable w.r.t. all of them on every
    backend. ``backend``: ``auto`` (the module docstring), or ``cpu``, ``gsplat``, ``triton``
    exactly (no fallback). ``stats`` (CPU only) receives the forward pair counts.
    """
    opacities = _check(means, quats, scales, opacities, colors, sh_degree, extra)
    check_mode(mode)
    which = resolve_backend(backend, means)
    while which != "cpu":
        try:
            return _draw_gpu(which, means, quats, scales, opacities, colors, camera, sh_degree, extra, mode)
        except Exception as exc:  # noqa: BLE001 - under "auto", any GPU failure falls back, with one notice
            if backend != "auto":
                raise
            gpu_paths.CHOICE.set_aside(which, exc)
            which = resolve_backend(backend, means)

    out_device = means.device
    dtype = means.dtype if means.dtype in (torch.float32, torch.float64) else torch.float32
    cpu = torch.device("cpu")
    means, quats, scales, opacities, colors = (t.to(device=cpu, dtype=dtype)
                                               for t in (means, quats, scales, opacities, colors))
    if extra is not None:
        extra = extra.to(device=cpu, dtype=dtype)
    cam = camera.to(cpu, dtype)
    tensors = (means, quats, scales, opacities, colors) + ((extra,) if extra is not None else ())
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        p = project(means, quats, scales, opacities, colors, cam, sh_degree, mode=mode)
        parts = [p.colors, p.depths[:, None]] + ([extra] if extra is not None else [])
        feats = torch.cat(parts, dim=-1)
    else:  # inference: the fused numba projection (same numbers, one parallel pass)
        p, feats = project_features(means, quats, scales, opacities, colors, cam, sh_degree, extra, mode=mode)
    bins = bin_gaussians(p.means2d, p.conics, p.opacities, p.depths, p.visible, cam.width, cam.height)
    img, alpha = _cpu.composite(p.means2d, p.conics, feats, p.opacities, bins, stats)
    depth = img[..., 3] / alpha.clamp_min(1e-10)
    out = RasterOutput(img[..., :3], alpha, depth, img[..., 4:] if extra is not None else None)
    if out_device != cpu:
        out = RasterOutput(*(t.to(out_device) if t is not None else None
                             for t in (out.rgb, out.alpha, out.depth, out.extra)))
    return out
