"""Binning for the CPU rasteriser (numba): which 16x16 tiles each projected Gaussian touches,
front to back.

``bin_gaussians`` packs each visible Gaussian's screen geometry into one record (``gd``, the
``G_*`` columns: mean, conic, opacity, the alpha >= 1/255 ellipse sigma <= ln(255 o), its
half-extents), radix-sorts them by camera z (``_depth_order``), emits the (tile, Gaussian)
pairs of the tiles the ellipse really touches (exact per tile-row band) and counting-sorts
them by tile (``_sort_pairs_by_tile``). ``cpu.composite`` then walks each tile's list.
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import numba
import numpy as np
import torch
from numba import njit, prange

TILE = 16
ALPHA_MIN = 1.0 / 255.0
SIGMA_PAD = 1e-6   # widen sigma <= ln(255 o) a little when solving for spans ...
PIX_PAD = 1e-3     # ... and spans by a thousandth of a pixel: the exact per-pixel test decides
GAUSS_CHUNK = 4096  # prange chunk size over Gaussians (dynamic scheduling)


@njit(cache=True, inline="always")
def _extent(a, b, c, o):
    """(smax, det, hx, hy): sigma bound and half-extents of the alpha >= 1/255 ellipse; smax < 0: none."""
    if not (o >= ALPHA_MIN):
        return -1.0, 0.0, 0.0, 0.0
    smax = math.log(o * 255.0) + SIGMA_PAD
    det = a * c - b * b
    if not (det > 0.0 and a > 0.0):
        return -1.0, 0.0, 0.0, 0.0
    hx = math.sqrt(2.0 * smax * c / det)
    hy = math.sqrt(2.0 * smax * a / det)
    return smax, det, hx, hy


@njit(cache=True, inline="always")
def _clamped(f0, f1, lo, hi):
    """Integer span [f0, f1] cut to [lo, hi]; (1, 0) when empty (or NaN)."""
    if not (f0 <= f1):
        return 1, 0
    f0 = max(f0, float(lo))
    f1 = min(f1, float(hi))
    if f0 > f1:
        return 1, 0
    return int(f0), int(f1)


@njit(cache=True, inline="always")
def _row_range(my, hy, lo, hi):
    """Pixel rows i in [lo, hi] whose centre is within hy of my; returns (i0, i1), empty if i0 > i1."""
    f0 = math.ceil(my - hy - 0.5 - PIX_PAD)
    f1 = math.floor(my + hy - 0.5 + PIX_PAD)
    return _clamped(f0, f1, lo, hi)


@njit(cache=True, inline="always")
def _band_cols(mx, my, a, b, c, smax, det, hx, hy, i0, i1, lo, hi):
    """Pixel columns in [lo, hi] touched by the ellipse within pixel rows i0..i1 (exact span)."""
    # With dy = my - py, the ellipse row at dy spans px in mx + (b dy -+ sqrt(2 a smax - det dy^2)) / a.
    # The right edge is concave in dy (left edge convex): its extreme over [dy_lo, dy_hi] is at
    # the clamped unconstrained optimum dy* = +-b sqrt(2 smax / (det c)) = +-b hx / c.
    dy_lo = max(my - (i1 + 0.5), -hy)
    dy_hi = min(my - (i0 + 0.5), hy)
    if dy_lo > dy_hi:
        return 1, 0
    ds = b * hx / c
    d = min(max(ds, dy_lo), dy_hi)
    right = mx + (b * d + math.sqrt(max(2.0 * a * smax - det * d * d, 0.0))) / a
    d = min(max(-ds, dy_lo), dy_hi)
    left = mx + (b * d - math.sqrt(max(2.0 * a * smax - det * d * d, 0.0))) / a
    f0 = math.ceil(left - 0.5 - PIX_PAD)
    f1 = math.floor(right - 0.5 + PIX_PAD)
    return _clamped(f0, f1, lo, hi)


# per-Gaussian record used by every kernel (float64, one 96-byte row per Gaussian)
G_MX, G_MY, G_A, G_B, G_C, G_O, G_SMAX, G_DET, G_HX, G_HY, G_INVA = range(11)
G_FIELDS = 12


@njit(cache=True, inline="always")
def _tiles_of(gd, g, width, height, tw, out_tile, out_gid, pos):
    """Tiles touched by Gaussian g's ellipse (row-band exact); writes them at ``pos`` when pos >= 0."""
    smax = gd[g, G_SMAX]
    if smax < 0.0:
        return 0
    mx = gd[g, G_MX]
    my = gd[g, G_MY]
    hy = gd[g, G_HY]
    i0, i1 = _row_range(my, hy, 0, height - 1)
    n = 0
    if i0 > i1:
        return 0
    for ty in range(i0 // TILE, i1 // TILE + 1):
        r0 = max(i0, ty * TILE)
        r1 = min(i1, ty * TILE + TILE - 1)
        j0, j1 = _band_cols(mx, my, gd[g, G_A], gd[g, G_B], gd[g, G_C], smax, gd[g, G_DET], gd[g, G_HX], hy,
                            r0, r1, 0, width - 1)
        if j0 > j1:
            continue
        for tx in range(j0 // TILE, j1 // TILE + 1):
            if pos >= 0:
                out_tile[pos + n] = ty * tw + tx
                out_gid[pos + n] = g
            n += 1
    return n


@njit(cache=True)
def _depth_order(depths, visible):
    """Indices (int32) of the visible Gaussians sorted by depth, stable (LSD radix sort of the float64 bits)."""
    n = depths.size
    m = 0
    for g in range(n):
        if visible[g]:
            m += 1
    keys = np.empty(m, np.uint64)
    idx = np.empty(m, np.int32)
    d64 = np.empty(1, np.float64)
    bits = d64.view(np.uint64)
    sign = np.uint64(1) << np.uint64(63)
    r = 0
    for g in range(n):
        if visible[g]:
            d64[0] = depths[g]
            k = bits[0]
            keys[r] = ~k if (k & sign) else (k | sign)  # order-preserving for negative floats too
            idx[r] = g
            r += 1
    keys2 = np.empty_like(keys)
    idx2 = np.empty_like(idx)
    radix = 2048
    hist = np.empty(radix + 1, np.int64)
    for shift in range(0, 64, 11):
        sh = np.uint64(shift)
        hist[:] = 0
        for r in range(m):
            hist[((keys[r] >> sh) & np.uint64(radix - 1)) + 1] += 1
        if m == 0 or hist[((keys[0] >> sh) & np.uint64(radix - 1)) + 1] == m:
            continue  # every key has the same digit here
        for b in range(radix):
            hist[b + 1] += hist[b]
        for r in range(m):
            dgt = (keys[r] >> sh) & np.uint64(radix - 1)
            dst = hist[dgt]
            hist[dgt] = dst + 1
            keys2[dst] = keys[r]
            idx2[dst] = idx[r]
        keys, keys2 = keys2, keys
        idx, idx2 = idx2, idx
    return idx


@njit(parallel=True, cache=True)
def _prepare(means2d, conics, opacities, order, width, height):
    """Records gd (M, G_FIELDS) float64 of the Gaussians ``order`` (depth order: row r is the r-th nearest)
    and the number of tiles each touches. Storing them in depth order makes every later pass read
    them front to back, i.e. nearly sequentially."""
    m = order.size
    tw = (width + TILE - 1) // TILE
    gd = np.empty((m, G_FIELDS))
    ntiles = np.zeros(m, np.int64)
    dummy_t = np.empty(0, np.int32)
    dummy_g = np.empty(0, np.int32)
    for r in prange(m):
        g = order[r]
        a = float(conics[g, 0])
        b = float(conics[g, 1])
        c = float(conics[g, 2])
        o = float(opacities[g])
        smax, det, hx, hy = _extent(a, b, c, o)
        gd[r, G_MX] = means2d[g, 0]
        gd[r, G_MY] = means2d[g, 1]
        gd[r, G_A] = a
        gd[r, G_B] = b
        gd[r, G_C] = c
        gd[r, G_O] = o
        gd[r, G_SMAX] = smax
        gd[r, G_DET] = det
        gd[r, G_HX] = hx
        gd[r, G_HY] = hy
        gd[r, G_INVA] = 1.0 / a if smax >= 0.0 else 0.0
        gd[r, 11] = 0.0
        ntiles[r] = _tiles_of(gd, r, width, height, tw, dummy_t, dummy_g, -1)
    return gd, ntiles


@njit(parallel=True, cache=True)
def _emit_pairs(gd, ntiles, width, height):
    """(tile, record) pairs, records in depth order."""
    tw = (width + TILE - 1) // TILE
    m = ntiles.size
    start = np.empty(m + 1, np.int64)
    start[0] = 0
    for r in range(m):
        start[r + 1] = start[r] + ntiles[r]
    ptile = np.empty(start[m], np.int32)
    prec = np.empty(start[m], np.int32)
    for r in prange(m):
        _tiles_of(gd, r, width, height, tw, ptile, prec, start[r])
    return ptile, prec, start


@njit(cache=True)
def _sort_pairs_by_tile(ptile, pgid, n_tiles):
    """Stable counting sort of the pairs by tile: (offsets (n_tiles+1,), ids, dest)."""
    offsets = np.zeros(n_tiles + 1, np.int64)
    for k in range(ptile.size):
        offsets[ptile[k] + 1] += 1
    for t in range(n_tiles):
        offsets[t + 1] += offsets[t]
    cursor = offsets[:-1].copy()
    ids = np.empty(ptile.size, np.int32)
    dest = np.empty(ptile.size, np.int64)  # emitted pair e went to list position dest[e]
    for e in range(ptile.size):
        t = ptile[e]
        ids[cursor[t]] = pgid[e]
        dest[e] = cursor[t]
        cursor[t] += 1
    return offsets, ids, dest


@contextmanager
def _chunked(n: int):
    """Dynamic prange scheduling in chunks of ``n`` iterations for the kernels launched inside (set from
    Python: calling it inside jitted code would make the kernels uncacheable). Tiles differ widely in
    cost, and a preempted thread's share is picked up by the others."""
    old = numba.set_parallel_chunksize(n)
    try:
        yield
    finally:
        numba.set_parallel_chunksize(old)


class Bins:
    """One frame's binning. ``order`` (M,) int32: the visible Gaussians front to back; ``gd`` (M, G_FIELDS):
    their screen-space records in that order; ``offsets`` (n_tiles + 1,) and ``ids`` (n_pairs,): each
    tile's list of record indices (front to back). Gaussian index of list entry k: ``order[ids[k]]``."""

    def __init__(self, order, gd, offsets, ids, width: int, height: int, start=None, dest=None):
        self.order, self.gd, self.offsets, self.ids = order, gd, offsets, ids
        self.width, self.height = width, height
        self.start, self.dest = start, dest  # pairs of record r: list positions dest[start[r]:start[r + 1]]

    @property
    def n_pairs(self) -> int:
        return int(self.ids.size)


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().contiguous().numpy()


def bin_gaussians(means2d: torch.Tensor, conics: torch.Tensor, opacities: torch.Tensor, depths: torch.Tensor,
                  visible: torch.Tensor, width: int, height: int) -> Bins:
    """Depth-sorted per-tile lists of the visible Gaussians (no gradients).

    ``composite`` must then be called with the same means2d / conics / opacities.
    """
    width, height = int(width), int(height)
    order = _depth_order(_np(depths), _np(visible).astype(np.bool_))
    with _chunked(GAUSS_CHUNK):
        gd, ntiles = _prepare(_np(means2d), _np(conics), _np(opacities), order, width, height)
        ptile, prec, start = _emit_pairs(gd, ntiles, width, height)
    n_tiles = ((width + TILE - 1) // TILE) * ((height + TILE - 1) // TILE)
    offsets, ids, dest = _sort_pairs_by_tile(ptile, prec, n_tiles)
    return Bins(order, gd, offsets, ids, width, height, start, dest)
