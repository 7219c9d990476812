"""Tile-based alpha compositing of projected Gaussians on the CPU (numba), forward and backward.

Pipeline (``cpu_binning.bin_gaussians`` then ``composite``):

1. Binning, O(N + pairs), all numba: ``_prepare`` (parallel) packs each Gaussian's screen
   geometry into one 96-byte record (``gd``: mean, conic, opacity, the alpha >= 1/255 ellipse
   sigma <= ln(255 o), its half-extents) and counts the 16x16 tiles the ellipse really touches
   (exact per tile-row band, tighter than a bounding box); ``_depth_order`` radix-sorts the
   visible Gaussians by camera z (stable, like gsplat's radix sort); ``_emit_pairs`` (parallel)
   writes the (tile, Gaussian) pairs in that order and ``_sort_pairs_by_tile`` counting-sorts
   them by tile, so every tile's list stays front to back.
2. ``_forward_tiles`` (``prange`` over tiles, dynamic chunks): within a tile, Gaussians are taken
   front to back and for each one only the pixels of its ellipse are visited: per pixel row the
   exact span is solved for, so ~99 % of evaluated pairs contribute. Per-pixel arithmetic, the
   alpha threshold and the early-termination rule are gsplat's classic rasteriser's (comments in
   the loop). Finished rows are skipped, and the tile stops when all its pixels are done. Saved
   for backward: final T and the list index of each pixel's last contributor.
3. ``_backward_tiles`` (``prange`` over tiles): the standard 3DGS backward, walking each tile's
   list back to front from its furthest last contributor and recovering T_i by dividing by
   (1 - alpha_i). Gradients go to one slot per (tile, Gaussian) pair, so threads never share
   memory and results are deterministic; ``_reduce_slots`` (parallel over Gaussians) adds them up.

Per row of a tile, exp(-sigma) and alpha are computed for all 16 pixels at once by ``_alphas``, a
fixed-length loop with a polynomial exp that LLVM vectorises (AVX2/AVX-512); the scalar loop that
follows touches only the row's span. Forward and backward share ``_alphas``, so they agree bit for
bit on which pairs contribute. (Measured on the 110k-Gaussian head: 1.25x faster forward and 1.5x
faster backward than per-pixel libm exp; computing only the span vectorised is slower, because
spans are short.)

Kernels take float32 or float64 arrays (compiled once per dtype, cached on disk); arithmetic
inside is float64 either way.
"""
from __future__ import annotations

import math

import numba
import numpy as np
import torch
from numba import njit, prange

from .cpu_binning import (ALPHA_MIN, G_A, G_B, G_C, G_DET, G_HY, G_INVA, G_MX, G_MY, G_O, G_SMAX, GAUSS_CHUNK,
                          PIX_PAD, TILE, Bins, _chunked, _np, _row_range)

ALPHA_MAX = 0.999
T_MIN = 1e-4
TILE_CHUNK = 2     # prange chunk sizes (dynamic scheduling, so a slow or preempted thread is not waited for)


LOG2E = 1.4426950408889634
LN2_HI = 0.6931471803691238    # ln 2 split in two (Cody-Waite) so k ln 2 is exact enough
LN2_LO = 1.9082149292705877e-10


@njit(cache=True, inline="always")
def _exp(x):
    """exp(x) for x <= ~700 in plain arithmetic (relative error < 1e-12), so that the span loops
    vectorise: ~5x faster than a libm call per pixel. exp(x) = 2^k e^r, |r| <= ln2 / 2, degree-10 Taylor."""
    x = min(max(x, -700.0), 700.0)
    k = math.floor(x * LOG2E + 0.5)
    r = (x - k * LN2_HI) - k * LN2_LO
    p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6 + r * (1.0 / 24 + r * (1.0 / 120 + r * (
        1.0 / 720 + r * (1.0 / 5040 + r * (1.0 / 40320 + r * (1.0 / 362880 + r * (1.0 / 3628800))))))))))
    return p * np.int64((np.int64(k) + 1023) << 52).view(np.float64)


@njit(cache=True, inline="always")
def _alphas(mx, dy, a, b, c, o, x0, vis_out, alpha_out):
    """exp(-sigma) and alpha for the TILE pixels x0.. of a row, alpha = 0 where sigma < 0. A fixed
    trip count lets LLVM vectorise it completely; the callers read only the span they need."""
    cdy = c * dy * dy
    for q in range(TILE):
        # gsplat classic: delta = mean - pixel centre; sigma = 0.5 (a dx^2 + c dy^2) + b dx dy
        dx = mx - (x0 + q + 0.5)
        sigma = 0.5 * (a * dx * dx + cdy) + b * dx * dy
        vis = _exp(-sigma)
        vis_out[q] = vis
        alpha_out[q] = min(ALPHA_MAX, o * vis) if sigma >= 0.0 else 0.0


@njit(cache=True, inline="always")
def _row_span(gd, g, dy, lo, hi):
    """Pixel columns in [lo, hi] of the ellipse row at offset dy = my - py (empty if j0 > j1)."""
    disc = 2.0 * gd[g, G_A] * gd[g, G_SMAX] - gd[g, G_DET] * dy * dy
    if disc < 0.0:
        return 1, 0
    sq = math.sqrt(disc)
    bdy = gd[g, G_B] * dy
    f0 = math.ceil(gd[g, G_MX] + (bdy - sq) * gd[g, G_INVA] - 0.5 - PIX_PAD)
    f1 = math.floor(gd[g, G_MX] + (bdy + sq) * gd[g, G_INVA] - 0.5 + PIX_PAD)
    f0 = max(f0, float(lo))
    f1 = min(f1, float(hi))
    if not (f0 <= f1):
        return 1, 0
    return int(f0), int(f1)


@njit(parallel=True, cache=True)
def _forward_tiles(gd, colors, offsets, ids, width, height, out_color, out_alpha, out_T, out_last, pairs):
    tw = (width + TILE - 1) // TILE
    th = (height + TILE - 1) // TILE
    D = colors.shape[1]
    for t in prange(tw * th):
        ty = t // tw
        tx = t - ty * tw
        x0 = tx * TILE
        y0 = ty * TILE
        x1 = min(x0 + TILE, width) - 1
        y1 = min(y0 + TILE, height) - 1
        nx = x1 - x0 + 1
        npix = nx * (y1 - y0 + 1)
        T = np.ones(npix)
        acc = np.zeros((npix, D))
        done = np.zeros(npix, np.bool_)
        last = np.full(npix, -1, np.int64)
        row_open = np.full(TILE, nx, np.int64)  # pixels of each tile row not done yet
        cg = np.empty(D)
        vbuf = np.empty(TILE)
        abuf = np.empty(TILE)
        ndone = 0
        npairs = 0
        for k in range(offsets[t], offsets[t + 1]):
            if ndone == npix:
                break
            g = ids[k]
            mx = gd[g, G_MX]
            my = gd[g, G_MY]
            a = gd[g, G_A]
            b = gd[g, G_B]
            c = gd[g, G_C]
            o = gd[g, G_O]
            for ch in range(D):
                cg[ch] = colors[g, ch]
            i0, i1 = _row_range(my, gd[g, G_HY], y0, y1)
            for i in range(i0, i1 + 1):
                if row_open[i - y0] == 0:
                    continue
                dy = my - (i + 0.5)
                j0, j1 = _row_span(gd, g, dy, x0, x1)
                if j0 > j1:
                    continue
                _alphas(mx, dy, a, b, c, o, x0, vbuf, abuf)
                base = (i - y0) * nx - x0
                for j in range(j0, j1 + 1):
                    p = base + j
                    if done[p]:
                        continue
                    npairs += 1
                    alpha = abuf[j - x0]
                    if alpha < ALPHA_MIN:  # (also sigma < 0)
                        continue
                    Tp = T[p]
                    next_T = Tp * (1.0 - alpha)
                    if next_T <= T_MIN:  # exclusive: this Gaussian is not added, pixel done
                        done[p] = True
                        ndone += 1
                        row_open[i - y0] -= 1
                        continue
                    w = alpha * Tp
                    for ch in range(D):
                        acc[p, ch] += cg[ch] * w
                    T[p] = next_T
                    last[p] = k
        pairs[t] = npairs
        for p in range(npix):
            i = y0 + p // nx
            j = x0 + p - (p // nx) * nx
            for ch in range(D):
                out_color[i, j, ch] = acc[p, ch]
            out_alpha[i, j] = 1.0 - T[p]
            out_T[i, j] = T[p]
            out_last[i, j] = last[p]


@njit(parallel=True, cache=True)
def _backward_tiles(gd, colors, offsets, ids, width, height, T_final, last_ids, v_color, v_alpha,
                    s_mean, s_conic, s_color, s_opac):
    tw = (width + TILE - 1) // TILE
    th = (height + TILE - 1) // TILE
    D = colors.shape[1]
    for t in prange(tw * th):
        ty = t // tw
        tx = t - ty * tw
        x0 = tx * TILE
        y0 = ty * TILE
        x1 = min(x0 + TILE, width) - 1
        y1 = min(y0 + TILE, height) - 1
        nx = x1 - x0 + 1
        npix = nx * (y1 - y0 + 1)
        T = np.empty(npix)
        Tf = np.empty(npix)
        last = np.empty(npix, np.int64)
        vc = np.empty((npix, D))
        va = np.empty(npix)
        buf = np.zeros((npix, D))
        row_last = np.full(TILE, -1, np.int64)  # furthest last contributor of each tile row
        kmax = offsets[t] - 1
        for p in range(npix):
            i = y0 + p // nx
            j = x0 + p - (p // nx) * nx
            T[p] = T_final[i, j]
            Tf[p] = T_final[i, j]
            last[p] = last_ids[i, j]
            kmax = max(kmax, last[p])
            row_last[i - y0] = max(row_last[i - y0], last[p])
            va[p] = v_alpha[i, j]
            for ch in range(D):
                vc[p, ch] = v_color[i, j, ch]
        gcol = np.zeros(D)
        cg = np.empty(D)
        vbuf = np.empty(TILE)
        abuf = np.empty(TILE)
        for k in range(offsets[t], offsets[t + 1]):  # pairs behind every pixel's last contributor
            if k > kmax:
                s_mean[k, 0] = 0.0
                s_mean[k, 1] = 0.0
                s_conic[k, 0] = 0.0
                s_conic[k, 1] = 0.0
                s_conic[k, 2] = 0.0
                s_opac[k] = 0.0
                for ch in range(D):
                    s_color[k, ch] = 0.0
        for k in range(kmax, offsets[t] - 1, -1):
            g = ids[k]
            mx = gd[g, G_MX]
            my = gd[g, G_MY]
            a = gd[g, G_A]
            b = gd[g, G_B]
            c = gd[g, G_C]
            o = gd[g, G_O]
            gmx = 0.0
            gmy = 0.0
            ga = 0.0
            gb = 0.0
            gc = 0.0
            go = 0.0
            for ch in range(D):
                gcol[ch] = 0.0
                cg[ch] = colors[g, ch]
            i0, i1 = _row_range(my, gd[g, G_HY], y0, y1)
            for i in range(i0, i1 + 1):
                if k > row_last[i - y0]:
                    continue
                dy = my - (i + 0.5)
                j0, j1 = _row_span(gd, g, dy, x0, x1)
                if j0 > j1:
                    continue
                _alphas(mx, dy, a, b, c, o, x0, vbuf, abuf)
                base = (i - y0) * nx - x0
                for j in range(j0, j1 + 1):
                    p = base + j
                    if k > last[p]:
                        continue
                    alpha = abuf[j - x0]
                    if alpha < ALPHA_MIN:
                        continue
                    vis = vbuf[j - x0]
                    dx = mx - (j + 0.5)
                    ra = 1.0 / (1.0 - alpha)
                    Tp = T[p] * ra  # transmittance in front of this Gaussian
                    T[p] = Tp
                    fac = alpha * Tp
                    v_al = Tf[p] * ra * va[p]
                    for ch in range(D):
                        col = cg[ch]
                        gcol[ch] += fac * vc[p, ch]
                        v_al += (col * Tp - buf[p, ch] * ra) * vc[p, ch]
                        buf[p, ch] += col * fac
                    if o * vis <= ALPHA_MAX:
                        v_sigma = -o * vis * v_al
                        ga += 0.5 * v_sigma * dx * dx
                        gb += v_sigma * dx * dy
                        gc += 0.5 * v_sigma * dy * dy
                        gmx += v_sigma * (a * dx + b * dy)
                        gmy += v_sigma * (b * dx + c * dy)
                        go += vis * v_al
            s_mean[k, 0] = gmx
            s_mean[k, 1] = gmy
            s_conic[k, 0] = ga
            s_conic[k, 1] = gb
            s_conic[k, 2] = gc
            s_opac[k] = go
            for ch in range(D):
                s_color[k, ch] = gcol[ch]


@njit(parallel=True, cache=True)
def _reduce_slots(order, start, dest, s_mean, s_conic, s_color, s_opac, v_mean, v_conic, v_color, v_opac):
    """Per-Gaussian sums of the per-pair slots: record r's pairs were emitted at start[r]:start[r+1]
    (in a fixed order, so the sums are deterministic) and sit at list positions dest[...]."""
    D = s_color.shape[1]
    for r in prange(order.size):
        g = order[r]
        for e in range(start[r], start[r + 1]):
            k = dest[e]
            v_mean[g, 0] += s_mean[k, 0]
            v_mean[g, 1] += s_mean[k, 1]
            v_conic[g, 0] += s_conic[k, 0]
            v_conic[g, 1] += s_conic[k, 1]
            v_conic[g, 2] += s_conic[k, 2]
            v_opac[g] += s_opac[k]
            for ch in range(D):
                v_color[g, ch] += s_color[k, ch]


class ForwardStats:
    """Filled by ``composite`` when passed: Gaussian-pixel pairs evaluated and binned."""

    def __init__(self) -> None:
        self.pairs_evaluated = 0
        self.pairs_binned = 0


def _forward_numpy(colors, bins: Bins, stats: ForwardStats | None):
    H, W, D = bins.height, bins.width, colors.shape[1]
    dt = colors.dtype
    out_color = np.empty((H, W, D), dt)
    out_alpha = np.empty((H, W), dt)
    out_T = np.empty((H, W), np.float64)
    out_last = np.empty((H, W), np.int64)
    pairs = np.zeros(bins.offsets.size - 1, np.int64)
    with _chunked(TILE_CHUNK):
        _forward_tiles(bins.gd, colors, bins.offsets, bins.ids, W, H, out_color, out_alpha, out_T, out_last, pairs)
    if stats is not None:
        stats.pairs_evaluated = int(pairs.sum())
        stats.pairs_binned = bins.n_pairs
    return out_color, out_alpha, out_T, out_last


class _Composite(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, bins, stats):
        c = np.ascontiguousarray(_np(colors)[bins.order])  # rows in record (depth) order
        color, alpha, T, last = _forward_numpy(c, bins, stats)
        ctx.bins = bins
        ctx.arrays = (c, T, last)
        ctx.dtype = colors.dtype
        ctx.n = colors.shape[0]
        return torch.from_numpy(color), torch.from_numpy(alpha)

    @staticmethod
    def backward(ctx, v_color, v_alpha):
        c, T, last = ctx.arrays
        bins: Bins = ctx.bins
        H, W, D = bins.height, bins.width, c.shape[1]
        vc = np.zeros((H, W, D), c.dtype) if v_color is None else _np(v_color.to(ctx.dtype))
        va = np.zeros((H, W), c.dtype) if v_alpha is None else _np(v_alpha.to(ctx.dtype))
        n = bins.n_pairs
        s_mean = np.empty((n, 2))
        s_conic = np.empty((n, 3))
        s_color = np.empty((n, D))
        s_opac = np.empty(n)
        with _chunked(TILE_CHUNK):
            _backward_tiles(bins.gd, c, bins.offsets, bins.ids, W, H, T, last, vc, va,
                            s_mean, s_conic, s_color, s_opac)
        N = ctx.n
        v_mean = np.zeros((N, 2))
        v_conic = np.zeros((N, 3))
        v_col = np.zeros((N, D))
        v_opac = np.zeros(N)
        with _chunked(GAUSS_CHUNK):
            _reduce_slots(bins.order, bins.start, bins.dest, s_mean, s_conic, s_color, s_opac,
                          v_mean, v_conic, v_col, v_opac)
        out = (torch.from_numpy(a).to(ctx.dtype) for a in (v_mean, v_conic, v_col, v_opac))
        return (*out, None, None)


def composite(means2d: torch.Tensor, conics: torch.Tensor, colors: torch.Tensor, opacities: torch.Tensor,
              bins: Bins, stats: ForwardStats | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Alpha-composite (N, D) ``colors`` front to back: returns ((H, W, D) sum c w, (H, W) alpha).

    Differentiable w.r.t. means2d, conics, colors and opacities (all one dtype, float32/64, CPU).
    """
    dt = colors.dtype
    if dt not in (torch.float32, torch.float64):
        raise TypeError(f"composite needs float32 or float64, got {dt}")
    return _Composite.apply(means2d.to(dt), conics.to(dt), colors, opacities.to(dt), bins, stats)


def set_threads(n: int) -> None:
    """Number of numba threads used by the tile loops."""
    numba.set_num_threads(n)
