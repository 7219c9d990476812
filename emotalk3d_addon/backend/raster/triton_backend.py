"""The toolkit-free CUDA rasteriser: torch projection and binning, Triton compositing (forward and
backward).

Nothing here needs a CUDA toolkit or a C++ compiler: projection (``projection.project``) and
binning (``tile_lists``) are torch ops on the GPU, and the compositing kernels
(``triton_kernels``) are compiled by the Triton that comes with PyTorch's CUDA wheels (its own
LLVM and ptxas). Same conventions as the CPU rasteriser (classic and antialiased modes, extra
channels, expected depth); differentiable w.r.t. every Gaussian input.

Under ``TRITON_INTERPRET=1`` (``triton_kernels``) the same kernels run in Triton's interpreter on
CPU tensors: the test and ``gpu-check --emulate`` path, far too slow for real frames.
"""
from __future__ import annotations

import torch

from .camera import Camera
from .projection import project
from .tile_lists import TILE, TileLists, tile_lists

FLOAT = torch.float32   # the kernels' arithmetic


def _pad_channels(d: int) -> int:
    return max(2, 1 << (d - 1).bit_length())


def _launch_args(d: int) -> dict:
    """The kernels' compile-time arguments for ``d`` feature channels."""
    return dict(DP=_pad_channels(d), TILE_=TILE)


class _TritonComposite(torch.autograd.Function):
    """Records (front-to-back order of ``bins.order``) -> ((H, W, D) sum w f, (H, W) alpha)."""

    @staticmethod
    def forward(ctx, means2d, conics, feats, opacities, bins: TileLists):
        from . import triton_kernels as tk

        H, W, D = bins.height, bins.width, feats.shape[1]
        dev = feats.device
        out_feat = torch.zeros((H, W, D), dtype=FLOAT, device=dev)
        out_alpha = torch.zeros((H, W), dtype=FLOAT, device=dev)
        out_T = torch.ones((H, W), dtype=FLOAT, device=dev)
        out_last = torch.full((H, W), -1, dtype=torch.int32, device=dev)
        grid = (bins.tiles_x * bins.tiles_y,)
        tk.composite_forward[grid](bins.offsets, bins.ids, means2d, conics, opacities, feats, out_feat, out_alpha, out_T, out_last,
                      W, H, bins.tiles_x, D, BATCH_=tk.BATCH, num_warps=tk.NUM_WARPS, **_launch_args(D))
        ctx.save_for_backward(means2d, conics, feats, opacities, out_T, out_last)
        ctx.bins = bins
        return out_feat, out_alpha

    @staticmethod
    def backward(ctx, v_feat, v_alpha):
        from . import triton_kernels as tk

        means2d, conics, feats, opacities, out_T, out_last = ctx.saved_tensors
        bins: TileLists = ctx.bins
        H, W, D = bins.height, bins.width, feats.shape[1]
        v_feat = torch.zeros((H, W, D), dtype=FLOAT, device=feats.device) if v_feat is None \
            else v_feat.to(FLOAT).contiguous()
        v_alpha = torch.zeros((H, W), dtype=FLOAT, device=feats.device) if v_alpha is None \
            else v_alpha.to(FLOAT).contiguous()
        g_mean, g_conic, g_feat, g_opac = (torch.zeros_like(t) for t in (means2d, conics, feats, opacities))
        grid = (bins.tiles_x * bins.tiles_y,)
        tk.composite_backward[grid](bins.offsets, bins.ids, means2d, conics, opacities, feats, out_T, out_last, v_feat, v_alpha,
                       g_mean, g_conic, g_opac, g_feat, W, H, bins.tiles_x, D, num_warps=tk.NUM_WARPS,
                       **_launch_args(D))
        return g_mean, g_conic, g_feat, g_opac, None


def composite(means2d: torch.Tensor, conics: torch.Tensor, feats: torch.Tensor, opacities: torch.Tensor,
              bins: TileLists) -> tuple[torch.Tensor, torch.Tensor]:
    """Alpha-composite the Gaussians of ``bins`` front to back: ((H, W, D) sum f w, (H, W) alpha), float32.

    means2d (N, 2), conics (N, 3), feats (N, D), opacities (N,), indexed by Gaussian; only
    ``bins.order`` is drawn. Differentiable w.r.t. all four.
    """
    rows = bins.order
    rec = [t.to(FLOAT)[rows].contiguous() for t in (means2d, conics, feats, opacities)]
    return _TritonComposite.apply(*rec, bins)


def rasterize_triton(means, quats, scales, opacities, colors, camera: Camera, sh_degree: int | None,
                     extra: torch.Tensor | None, mode: str = "classic"):
    """(rgb (H,W,3) premultiplied, alpha (H,W), depth (H,W), extra (H,W,C) | None), float32 on the input
    device: a CUDA device, or the CPU under Triton's interpreter."""
    from . import triton_kernels as tk

    if tk.interpreted() != (means.device.type == "cpu"):
        raise RuntimeError("the Triton rasteriser runs on CUDA tensors, or on CPU tensors under TRITON_INTERPRET=1 "
                           f"(got {means.device.type} tensors, interpreter {'on' if tk.interpreted() else 'off'})")
    dtype = means.dtype if means.dtype in (torch.float32, torch.float64) else FLOAT
    cam = camera.to(means.device, dtype)
    p = project(means, quats, scales, opacities, colors, cam, sh_degree, mode=mode)
    parts = [p.colors, p.depths[:, None]] + ([extra.to(p.colors.dtype)] if extra is not None else [])
    feats = torch.cat(parts, dim=-1)
    bins = tile_lists(p.means2d, p.conics, p.opacities, p.depths, p.visible, cam.width, cam.height)
    img, alpha = composite(p.means2d, p.conics, feats, p.opacities, bins)
    depth = img[..., 3] / alpha.clamp_min(1e-10)
    return img[..., :3], alpha, depth, (img[..., 4:] if extra is not None else None)
