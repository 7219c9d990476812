"""Tile binning and ellipse spans: every pixel with alpha >= 1/255 is visited, in depth order."""
from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from emotalk3d_addon.backend.raster import cpu, cpu_binning


def _brute_pixels(mx, my, a, b, c, o, w, h):
    """Set of (i, j) with sigma >= 0 and alpha >= 1/255, evaluated like the kernels."""
    jj, ii = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    dx, dy = mx - jj, my - ii
    sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
    alpha = np.minimum(0.999, o * np.exp(-sigma))
    hit = (sigma >= 0) & (alpha >= 1 / 255)
    return {(int(i), int(j)) for i, j in zip(*np.nonzero(hit))}


ellipses = st.tuples(
    st.floats(-30, 70), st.floats(-30, 70),                 # centre (pixels)
    st.floats(0.3, 30), st.floats(0.3, 30), st.floats(-0.99, 0.99),  # std x, std y, correlation
    st.floats(1 / 255, 1.0),                                # opacity
)


@settings(max_examples=150, deadline=None)
@given(ellipses)
def test_spans_and_tiles_cover_every_contributing_pixel(e):
    mx, my, sx, sy, rho, o = e
    cov = np.array([[sx * sx, rho * sx * sy], [rho * sx * sy, sy * sy]])
    prec = np.linalg.inv(cov)
    a, b, c = prec[0, 0], prec[0, 1], prec[1, 1]
    w, h = 45, 37
    want = _brute_pixels(mx, my, a, b, c, o, w, h)
    smax, det, hx, hy = cpu_binning._extent(a, b, c, o)
    if smax < 0:
        assert not want
        return
    # per-row spans (as the raster kernels use them)
    got = set()
    gd = np.zeros((1, cpu_binning.G_FIELDS))
    gd[0, [cpu_binning.G_MX, cpu_binning.G_MY, cpu_binning.G_A, cpu_binning.G_B, cpu_binning.G_C, cpu_binning.G_O, cpu_binning.G_SMAX, cpu_binning.G_DET, cpu_binning.G_HX, cpu_binning.G_HY,
           cpu_binning.G_INVA]] = [mx, my, a, b, c, o, smax, det, hx, hy, 1 / a]
    i0, i1 = cpu_binning._row_range.py_func(my, hy, 0, h - 1)
    for i in range(i0, i1 + 1):
        j0, j1 = cpu._row_span.py_func(gd, 0, my - (i + 0.5), 0, w - 1)
        got |= {(i, j) for j in range(j0, j1 + 1)}
    assert want <= got
    assert len(got) <= len(want) + 2 * (i1 - i0 + 1) + 2  # spans are tight (at most a pixel per side)
    # tiles (row-band exact) contain every contributing pixel
    bins = cpu_binning.bin_gaussians(torch.tensor([[mx, my]]), torch.tensor([[a, b, c]]), torch.tensor([o]),
                             torch.tensor([1.0]), torch.tensor([True]), w, h)
    tw = math.ceil(w / cpu_binning.TILE)
    tiles = {t for t in range(len(bins.offsets) - 1) if bins.offsets[t + 1] > bins.offsets[t]}
    assert {(i // cpu_binning.TILE) * tw + j // cpu_binning.TILE for i, j in want} <= tiles


def test_tile_lists_are_depth_sorted_and_stable():
    g = torch.Generator().manual_seed(0)
    n, w, h = 400, 70, 50
    means2d = torch.rand(n, 2, generator=g, dtype=torch.float64) * torch.tensor([w, h])
    conics = torch.tensor([[0.05, 0.0, 0.05]], dtype=torch.float64).repeat(n, 1)
    opac = torch.full((n,), 0.5, dtype=torch.float64)
    depths = torch.randint(0, 20, (n,), generator=g).double() + 1  # many ties
    visible = torch.rand(n, generator=g) > 0.1
    bins = cpu_binning.bin_gaussians(means2d, conics, opac, depths, visible, w, h)
    assert bins.offsets[0] == 0 and bins.offsets[-1] == bins.n_pairs
    seen = set()
    for t in range(len(bins.offsets) - 1):
        ids = bins.order[bins.ids[bins.offsets[t]:bins.offsets[t + 1]]]
        key = [(float(depths[i]), int(i)) for i in ids]
        assert key == sorted(key)  # by depth, ties by index (stable, as gsplat's radix sort)
        seen |= set(ids.tolist())
    assert seen <= set(torch.nonzero(visible)[:, 0].tolist())
    assert len(seen) > 0.8 * int(visible.sum())


def test_negative_and_float32_depths_sort():
    d = np.array([3.0, -1.0, 0.5, -1.0, 2.0, 0.5, 1e-30, -0.0, 0.0], np.float32)
    order = cpu_binning._depth_order(d, np.ones(d.size, np.bool_))
    assert list(order) == sorted(range(d.size), key=lambda i: (float(d[i]), i))
    d64 = np.array([2.0, 1.0 + 1e-15, 1.0, 1.0 + 1e-15])  # float64 keys keep full precision
    assert list(cpu_binning._depth_order(d64, np.array([1, 1, 0, 1], np.bool_))) == [1, 3, 0]  # invisible: left out


def test_polynomial_exp():
    x = np.concatenate([-np.linspace(0, 60, 20001), -np.geomspace(1e-12, 700, 2001), [0.0, -1e-300]])
    got = np.array([cpu._exp.py_func(v) for v in x])
    assert np.max(np.abs(got / np.exp(x) - 1)) < 1e-12
    assert cpu._exp.py_func(-1e6) == cpu._exp.py_func(-700.0) < 1e-300  # clamped, no garbage
    assert np.isfinite(cpu._exp.py_func(1e6))
