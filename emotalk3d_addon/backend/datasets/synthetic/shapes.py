"""Small numpy helpers for the procedural head: smooth steps, blobs, 1-D profiles, grids."""
from __future__ import annotations

import numpy as np


def smoothstep(e0: float, e1: float, x):
    t = np.clip((np.asarray(x, np.float64) - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def blob(X, Z, cx: float, cz: float, sx: float, sz: float):
    """Unit Gaussian bump centred at (cx, cz) with widths (sx, sz)."""
    return np.exp(-0.5 * (((X - cx) / sx) ** 2 + ((Z - cz) / sz) ** 2))


def smax(a, b, k: float):
    """Smooth maximum with blend width k (same units as a, b)."""
    h = np.clip(0.5 + 0.5 * (a - b) / k, 0.0, 1.0)
    return b + (a - b) * h + k * h * (1.0 - h)


class Profile:
    """Monotone cubic (PCHIP) interpolation through control points, clamped at the ends."""

    def __init__(self, xs, ys):
        x = np.asarray(xs, np.float64)
        y = np.asarray(ys, np.float64)
        order = np.argsort(x)
        self.x, self.y = x[order], y[order]
        h = np.diff(self.x)
        delta = np.diff(self.y) / h
        d = np.zeros_like(self.y)
        for k in range(1, len(self.x) - 1):
            if delta[k - 1] * delta[k] > 0:
                w1, w2 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
                d[k] = (w1 + w2) / (w1 / delta[k - 1] + w2 / delta[k])
        d[0], d[-1] = delta[0], delta[-1]
        if len(self.x) > 2:
            d[0] = _end_slope(h[0], h[1], delta[0], delta[1])
            d[-1] = _end_slope(h[-1], h[-2], delta[-1], delta[-2])
        self.d = d

    def __call__(self, q):
        q = np.asarray(q, np.float64)
        qc = np.clip(q, self.x[0], self.x[-1])
        k = np.clip(np.searchsorted(self.x, qc) - 1, 0, len(self.x) - 2)
        h = self.x[k + 1] - self.x[k]
        t = (qc - self.x[k]) / h
        t2, t3 = t * t, t * t * t
        return ((2 * t3 - 3 * t2 + 1) * self.y[k] + (t3 - 2 * t2 + t) * h * self.d[k]
                + (-2 * t3 + 3 * t2) * self.y[k + 1] + (t3 - t2) * h * self.d[k + 1])


def _end_slope(h0, h1, d0, d1):
    s = ((2 * h0 + h1) * d0 - h0 * d1) / (h0 + h1)
    if np.sign(s) != np.sign(d0):
        return 0.0
    if np.sign(d0) != np.sign(d1) and abs(s) > abs(3 * d0):
        return 3 * d0
    return s


def grid_triangles(rows: int, cols: int, offset: int = 0, flip: bool = False) -> np.ndarray:
    """Triangles of a rows x cols vertex grid (row-major), two per quad."""
    r, c = np.meshgrid(np.arange(rows - 1), np.arange(cols - 1), indexing="ij")
    a = (r * cols + c).ravel()
    b, d, e = a + 1, a + cols, a + cols + 1
    if flip:
        tris = np.concatenate([np.stack([a, e, b], 1), np.stack([a, d, e], 1)])
    else:
        tris = np.concatenate([np.stack([a, b, e], 1), np.stack([a, e, d], 1)])
    return (tris + offset).astype(np.int64)


def uv_sphere(n_az: int, n_pol: int):
    """Unit sphere around +Z poles: (V,3) points, (T,3) triangles, (V,2) (azimuth, polar) in [0,1]."""
    az = np.linspace(0, 2 * np.pi, n_az + 1)
    pol = np.linspace(0, np.pi, n_pol + 1)
    P, A = np.meshgrid(pol, az, indexing="ij")
    pts = np.stack([np.sin(P) * np.cos(A), np.sin(P) * np.sin(A), np.cos(P)], -1).reshape(-1, 3)
    params = np.stack([A / (2 * np.pi), P / np.pi], -1).reshape(-1, 2)
    tris = grid_triangles(n_pol + 1, n_az + 1, flip=True)
    keep = ~((tris[:, 0] == tris[:, 1]) | (tris[:, 1] == tris[:, 2]) | (tris[:, 0] == tris[:, 2]))
    return pts, tris[keep], params
