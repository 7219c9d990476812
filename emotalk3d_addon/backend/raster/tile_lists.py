"""Per-tile, front-to-back Gaussian lists in plain torch ops, on whatever device the inputs live on.

The GPU rasteriser's binning (``triton_backend``): the CPU rasteriser bins with numba
(``cpu_binning``), which cannot run on a GPU. Each visible Gaussian covers the 16x16 tiles of the
bounding box of its alpha >= 1/255 ellipse (sigma <= ln(255 o)); pairs (tile, Gaussian) are sorted
by tile, then by depth rank, so every tile's list runs front to back with ties kept in index order
(a stable sort, as the CPU's radix sort and gsplat's). The per-pixel test in the compositing
kernel decides what each pixel takes, so a bounding box (a superset of the CPU binning's exact
per-band tiles) changes no pixel.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

TILE = 16
ALPHA_MIN = 1.0 / 255.0
SIGMA_PAD = 1e-6   # as cpu_binning: widen the ellipse a little, the exact per-pixel test decides
PIX_PAD = 1e-3


@dataclass
class TileLists:
    """One frame's binning.

    ``order`` (M,) int64: the drawable Gaussians front to back (record r is Gaussian order[r]);
    ``offsets`` (n_tiles + 1,) int32 and ``ids`` (n_pairs,) int32: tile t's list is the record
    indices ids[offsets[t]:offsets[t + 1]], front to back. Tiles are numbered row-major,
    ``tiles_x`` per row.
    """

    order: torch.Tensor
    offsets: torch.Tensor
    ids: torch.Tensor
    width: int
    height: int
    tiles_x: int
    tiles_y: int

    @property
    def n_pairs(self) -> int:
        return int(self.ids.numel())


def _span(centre: torch.Tensor, half: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last pixel index in [0, size - 1] whose centre lies within ``half`` of ``centre``
    (float64 in, int64 out; empty where first > last)."""
    lo = torch.ceil(centre - half - 0.5 - PIX_PAD).clamp(-1.0, float(size))
    hi = torch.floor(centre + half - 0.5 + PIX_PAD).clamp(-1.0, float(size))
    return lo.clamp_min(0.0).long(), hi.clamp_max(float(size - 1)).long()


def tile_lists(means2d: torch.Tensor, conics: torch.Tensor, opacities: torch.Tensor, depths: torch.Tensor,
               visible: torch.Tensor, width: int, height: int) -> TileLists:
    """Bin projected Gaussians: means2d (N, 2) pixels, conics (N, 3), opacities (N,) in [0, 1],
    depths (N,) camera z, visible (N,) bool. No gradients; all work stays on the inputs' device."""
    width, height = int(width), int(height)
    dev = means2d.device
    with torch.no_grad():
        m = means2d.detach().double()
        a, b, c = conics.detach().double().unbind(-1)
        o = opacities.detach().double()
        det = a * c - b * b
        drawable = visible & (o >= ALPHA_MIN) & (det > 0) & (a > 0) & torch.isfinite(m).all(-1)
        smax = torch.log(torch.clamp_min(o, ALPHA_MIN) * 255.0) + SIGMA_PAD
        safe_det = torch.where(drawable, det, torch.ones_like(det))
        hx = torch.sqrt(torch.clamp_min(2.0 * smax * c / safe_det, 0.0))
        hy = torch.sqrt(torch.clamp_min(2.0 * smax * a / safe_det, 0.0))
        j0, j1 = _span(torch.where(drawable, m[:, 0], torch.zeros_like(a)), hx, width)
        i0, i1 = _span(torch.where(drawable, m[:, 1], torch.zeros_like(a)), hy, height)
        drawable &= (j0 <= j1) & (i0 <= i1)

        key = torch.where(drawable, depths.detach().double(), torch.full_like(a, float("inf")))
        order = torch.sort(key, stable=True).indices[: int(drawable.sum())]
        tx0, tx1, ty0, ty1 = j0[order] // TILE, j1[order] // TILE, i0[order] // TILE, i1[order] // TILE
        ntx = tx1 - tx0 + 1
        counts = ntx * (ty1 - ty0 + 1)
        tiles_x = (width + TILE - 1) // TILE
        tiles_y = (height + TILE - 1) // TILE
        n_tiles = tiles_x * tiles_y
        records = torch.arange(order.numel(), device=dev)
        rec = torch.repeat_interleave(records, counts)
        first = torch.cumsum(counts, 0) - counts
        local = torch.arange(rec.numel(), device=dev) - first[rec]
        tile = (ty0[rec] + local // ntx[rec]) * tiles_x + tx0[rec] + local % ntx[rec]
        # by tile, then front to back (records are numbered in depth order)
        pair_key = tile * max(order.numel(), 1) + rec
        ids = rec[torch.sort(pair_key).indices]
        per_tile = torch.bincount(tile, minlength=n_tiles)
        offsets = torch.zeros(n_tiles + 1, dtype=torch.int64, device=dev)
        offsets[1:] = torch.cumsum(per_tile, 0)
    return TileLists(order, offsets.to(torch.int32), ids.to(torch.int32), width, height, tiles_x, tiles_y)
