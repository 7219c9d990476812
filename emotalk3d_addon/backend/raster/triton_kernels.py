"""Triton kernels of the GPU rasteriser: front-to-back compositing of one 16x16 tile per program,
and its backward pass. The only module that imports triton.

One program draws one tile: its 256 pixels are the lanes of a block, and the tile's list of
Gaussians (``tile_lists``) is walked front to back, one Gaussian per step, as in gsplat's classic
rasteriser and the CPU one (``cpu._forward_tiles``): pixel centres at +0.5, sigma = 0.5 (a dx^2 +
c dy^2) + b dx dy, alpha = min(0.999, o exp(-sigma)), pairs with sigma < 0 or alpha < 1/255 are
skipped, and a pixel stops before the Gaussian that would take its transmittance to <= 1e-4.
A tile stops when all its pixels are done (checked every ``BATCH`` Gaussians).

The backward pass walks each tile's list back to front from its furthest last contributor,
recovering the transmittance in front of each Gaussian by dividing by (1 - alpha), and adds each
Gaussian's per-tile gradient sums into the outputs with atomics (float32, so the summation order,
and the last bits, vary from run to run).

Records (``mean``, ``conic``, ``opac``, ``feat``) are indexed by the list entries; ``feat`` has
``D`` channels, padded to the power of two ``DP`` inside the kernels. Arithmetic is float32.

With ``TRITON_INTERPRET=1`` in the environment before triton is first imported (a process-wide
switch: Triton's own library functions are built one way or the other at import), the same
kernels run in Triton's interpreter on CPU tensors with numpy: slow, but the arithmetic that the
tests and ``gpu-check --emulate`` compare with the CPU rasteriser.
"""
from __future__ import annotations

import triton
import triton.language as tl

TILE = 16
BATCH = 32           # Gaussians between two "is the whole tile done?" checks
NUM_WARPS = 8        # 256 threads: one pixel each
ALPHA_MAX = tl.constexpr(0.999)
T_MIN = tl.constexpr(1e-4)
ALPHA_MIN = tl.constexpr(1.0 / 255.0)


@triton.jit
def _tile_pixels(t, tiles_x, width, height, TILE_: tl.constexpr):
    """Tile t's pixel columns, rows and in-image mask, one lane each (row-major within the tile)."""
    ty = t // tiles_x
    tx = t - ty * tiles_x
    lane = tl.arange(0, TILE_ * TILE_)
    px = tx * TILE_ + lane % TILE_
    py = ty * TILE_ + lane // TILE_
    return px, py, (px < width) & (py < height)


@triton.jit
def composite_forward(offsets, ids, mean, conic, opac, feat, out_feat, out_alpha, out_T, out_last,
                      width, height, tiles_x, D, DP: tl.constexpr, TILE_: tl.constexpr, BATCH_: tl.constexpr):
    t = tl.program_id(0)
    px, py, inside = _tile_pixels(t, tiles_x, width, height, TILE_)
    fx = px.to(tl.float32) + 0.5
    fy = py.to(tl.float32) + 0.5
    start = tl.load(offsets + t)
    end = tl.load(offsets + t + 1)
    ch = tl.arange(0, DP)
    chmask = ch < D

    T = tl.full([TILE_ * TILE_], 1.0, tl.float32)
    done = inside == 0
    last = tl.full([TILE_ * TILE_], -1, tl.int32)
    acc = tl.zeros([TILE_ * TILE_, DP], tl.float32)
    n_open = tl.sum(inside.to(tl.int32), axis=0)
    k0 = start
    while (k0 < end) & (n_open > 0):
        for j in range(0, BATCH_):
            k = k0 + j
            valid = k < end
            r = tl.load(ids + k, mask=valid, other=0)
            mx = tl.load(mean + 2 * r, mask=valid, other=0.0)
            my = tl.load(mean + 2 * r + 1, mask=valid, other=0.0)
            a = tl.load(conic + 3 * r, mask=valid, other=0.0)
            b = tl.load(conic + 3 * r + 1, mask=valid, other=0.0)
            c = tl.load(conic + 3 * r + 2, mask=valid, other=0.0)
            o = tl.load(opac + r, mask=valid, other=0.0)
            f = tl.load(feat + r * D + ch, mask=chmask & valid, other=0.0)
            dx = mx - fx
            dy = my - fy
            sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
            alpha = tl.minimum(ALPHA_MAX, o * tl.exp(-sigma))
            hit = (sigma >= 0.0) & (alpha >= ALPHA_MIN) & (done == 0)
            next_T = T * (1.0 - alpha)
            stop = hit & (next_T <= T_MIN)      # this Gaussian is not added; the pixel is done
            done = done | stop
            hit = hit & (stop == 0)
            w = tl.where(hit, alpha * T, 0.0)
            acc += w[:, None] * f[None, :]
            T = tl.where(hit, next_T, T)
            last = tl.where(hit, k, last)
        k0 += BATCH_
        n_open = tl.sum((done == 0).to(tl.int32), axis=0)

    pix = py * width + px
    tl.store(out_feat + pix[:, None] * D + ch[None, :], acc, mask=inside[:, None] & chmask[None, :])
    tl.store(out_alpha + pix, 1.0 - T, mask=inside)
    tl.store(out_T + pix, T, mask=inside)
    tl.store(out_last + pix, last, mask=inside)


@triton.jit
def composite_backward(offsets, ids, mean, conic, opac, feat, T_final, last_ids, v_feat, v_alpha,
                       g_mean, g_conic, g_opac, g_feat, width, height, tiles_x, D,
                       DP: tl.constexpr, TILE_: tl.constexpr):
    t = tl.program_id(0)
    px, py, inside = _tile_pixels(t, tiles_x, width, height, TILE_)
    fx = px.to(tl.float32) + 0.5
    fy = py.to(tl.float32) + 0.5
    pix = py * width + px
    start = tl.load(offsets + t)
    ch = tl.arange(0, DP)
    chmask = ch < D

    Tf = tl.load(T_final + pix, mask=inside, other=1.0)
    last = tl.load(last_ids + pix, mask=inside, other=-1)
    va = tl.load(v_alpha + pix, mask=inside, other=0.0)
    vc = tl.load(v_feat + pix[:, None] * D + ch[None, :], mask=inside[:, None] & chmask[None, :], other=0.0)
    T = Tf
    buf = tl.zeros([TILE_ * TILE_, DP], tl.float32)
    kmax = tl.max(last, axis=0)
    for i in range(0, kmax - start + 1):
        k = kmax - i
        r = tl.load(ids + k)
        mx = tl.load(mean + 2 * r)
        my = tl.load(mean + 2 * r + 1)
        a = tl.load(conic + 3 * r)
        b = tl.load(conic + 3 * r + 1)
        c = tl.load(conic + 3 * r + 2)
        o = tl.load(opac + r)
        f = tl.load(feat + r * D + ch, mask=chmask, other=0.0)
        dx = mx - fx
        dy = my - fy
        sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
        vis = tl.exp(-sigma)
        alpha = tl.minimum(ALPHA_MAX, o * vis)
        hit = (k <= last) & (sigma >= 0.0) & (alpha >= ALPHA_MIN)
        ra = 1.0 / (1.0 - alpha)
        T = tl.where(hit, T * ra, T)          # transmittance in front of this Gaussian
        fac = tl.where(hit, alpha * T, 0.0)
        v_al = Tf * ra * va + tl.sum((f[None, :] * T[:, None] - buf * ra[:, None]) * vc, axis=1)
        buf += fac[:, None] * f[None, :]
        grad = hit & (o * vis <= ALPHA_MAX)
        v_sigma = tl.where(grad, -o * vis * v_al, 0.0)
        tl.atomic_add(g_feat + r * D + ch, tl.sum(fac[:, None] * vc, axis=0), mask=chmask)
        tl.atomic_add(g_mean + 2 * r, tl.sum(v_sigma * (a * dx + b * dy), axis=0))
        tl.atomic_add(g_mean + 2 * r + 1, tl.sum(v_sigma * (b * dx + c * dy), axis=0))
        tl.atomic_add(g_conic + 3 * r, tl.sum(0.5 * v_sigma * dx * dx, axis=0))
        tl.atomic_add(g_conic + 3 * r + 1, tl.sum(v_sigma * dx * dy, axis=0))
        tl.atomic_add(g_conic + 3 * r + 2, tl.sum(0.5 * v_sigma * dy * dy, axis=0))
        tl.atomic_add(g_opac + r, tl.sum(tl.where(grad, vis * v_al, 0.0), axis=0))


def interpreted() -> bool:
    """True when this process runs Triton kernels in the interpreter (CPU tensors), not on a GPU."""
    return bool(triton.knobs.runtime.interpret)
