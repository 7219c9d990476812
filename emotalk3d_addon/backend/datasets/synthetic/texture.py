"""Procedural texture atlas of the synthetic subject and the per-emotion overlays.

The atlas (H, W, 4) uint8 sRGB (row 0 at the top, UV v up) holds skin with tone variation
and pores, lips, brows, lash lines, hair, eyes, teeth, mouth interior, neck and shirt
(regions: ``head.ATLAS``). An overlay is an (H, W, 3) float sRGB delta in the skin's own
coordinates (so it moves with the skin): creases, furrows, flush, pallor; the renderer
shows ``base + weight * overlay`` with weight = intensity x the emotion's ramp.
"""
from __future__ import annotations

import numpy as np

from ...emotions import EMOTIONS
from .head import ATLAS, DEG, EYE_ALMOND, HAIRLINE, _almond, frontal, lip_shape, phi_of_t, theta_of_s
from .shapes import blob, smoothstep


def value_noise(shape, cells, rng, octaves=1, persistence=0.5) -> np.ndarray:
    """Smooth fractal noise in about [-1, 1] over an (H, W) grid."""
    h, w = shape
    out = np.zeros(shape)
    amp, total = 1.0, 0.0
    cy, cx = cells
    for _ in range(octaves):
        g = rng.standard_normal((int(cy) + 2, int(cx) + 2))
        ys = np.linspace(0, cy, h)
        xs = np.linspace(0, cx, w)
        y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
        fy, fx = ys - y0, xs - x0
        fy, fx = fy * fy * (3 - 2 * fy), fx * fx * (3 - 2 * fx)
        a = g[y0][:, x0]
        b = g[y0][:, x0 + 1]
        c = g[y0 + 1][:, x0]
        d = g[y0 + 1][:, x0 + 1]
        top = a + (b - a) * fx[None]
        bot = c + (d - c) * fx[None]
        out += amp * (top + (bot - top) * fy[:, None])
        total += amp
        amp *= persistence
        cy, cx = cy * 2, cx * 2
    return out / total


def _region_grid(size: int, region: str):
    """Texel centres of an atlas region: (rows, cols, u01, v01) with v01 up."""
    u0, v0, u1, v1 = ATLAS[region]
    c0, c1 = int(round(u0 * size)), int(round(u1 * size))
    r0, r1 = int(round((1 - v1) * size)), int(round((1 - v0) * size))
    pad = 0.004
    us = ((np.arange(c0, c1) + 0.5) / size - (u0 + pad)) / (u1 - u0 - 2 * pad)
    vs = ((size - np.arange(r0, r1) - 0.5) / size - (v0 + pad)) / (v1 - v0 - 2 * pad)
    U, Vv = np.meshgrid(us, vs)
    return slice(r0, r1), slice(c0, c1), U, Vv


def _mix(img, color, alpha):
    a = np.clip(alpha, 0, 1)[..., None]
    return img * (1 - a) + np.asarray(color, np.float64) * a


class SkinChart:
    """Face-chart coordinates of the skin region's texels."""

    def __init__(self, size: int, mouth):
        rows, cols, U, V = _region_grid(size, "skin")
        self.rows, self.cols = rows, cols
        s, t = np.clip(U, 0, 1), np.clip(1 - V, 0, 1)
        self.theta, self.phi = theta_of_s(s), phi_of_t(t)
        self.X, self.Z, self.fm = frontal(self.theta, self.phi)
        _, Zm, _ = frontal(self.theta, np.full_like(self.theta, mouth.phi_m))
        self.dZ = self.Z - Zm
        self.mouth = mouth
        # texels per metre on the face (for line widths)
        self.shape = U.shape


def base_texture(size: int, mouth, seed: int = 0) -> np.ndarray:
    """The atlas (size, size, 4) uint8."""
    rng = np.random.default_rng(seed + 17)
    img = np.zeros((size, size, 3))
    img[:] = (0.5, 0.42, 0.38)
    chart = SkinChart(size, mouth)
    img[chart.rows, chart.cols] = _skin(chart, rng)
    for region, fn in (("hair", _hair), ("mouth", _mouth_interior), ("eye", _eye), ("teeth", _teeth),
                       ("ear", _ear), ("neck", _neck), ("torso", _torso)):
        rows, cols, U, V = _region_grid(size, region)
        img[rows, cols] = fn(U, V, rng)
    out = np.empty((size, size, 4), np.uint8)
    out[..., :3] = np.round(np.clip(img, 0, 1) * 255)
    out[..., 3] = 255
    return out


SKIN = np.array([0.84, 0.645, 0.545])
HAIR = np.array([0.17, 0.115, 0.08])
BROW = np.array([0.20, 0.135, 0.095])
LIP = np.array([0.73, 0.42, 0.41])


def _skin(c: SkinChart, rng) -> np.ndarray:
    h, w = c.shape
    X, Z, dZ, fm = c.X, c.Z, c.dZ, c.fm
    ax = np.abs(X)
    low = value_noise((h, w), (6, 6), rng, octaves=3)
    mid = value_noise((h, w), (40, 40), rng, octaves=2)
    pores = value_noise((h, w), (h / 3, w / 3), rng)
    img = SKIN * (1 + 0.045 * low[..., None]) + 0.02 * mid[..., None] * np.array([1.0, 0.8, 0.7])
    img -= 0.028 * np.clip(pores, 0, None)[..., None] * fm[..., None]
    # redness: cheeks, nose, ears' side, chin
    red = 0.7 * blob(ax, Z, 0.045, -0.028, 0.013, 0.012) + 0.5 * blob(X, Z, 0.0, -0.040, 0.008, 0.008) \
        + 0.25 * blob(X, Z, 0.0, -0.105, 0.012, 0.010)
    img += (red * fm)[..., None] * np.array([0.05, -0.035, -0.03])
    # eye surroundings: a little darker, the lids a little pink
    a = EYE_ALMOND
    alm = _almond(X, Z)
    around = blob(ax, Z, a["cx"], -0.004, 0.016, 0.009) * fm
    img -= around[..., None] * np.array([0.05, 0.06, 0.04])
    img = _mix(img, (0.62, 0.36, 0.35), smoothstep(0.0, 0.0012, alm) * fm)             # inside: caruncle pink
    lash_up = np.exp(-0.5 * ((alm + 0.0004) / 0.00045) ** 2) * (Z > a["cz"] - a["tilt"] * 0 - 0.0005)
    lash_lo = 0.5 * np.exp(-0.5 * ((alm + 0.0003) / 0.00035) ** 2) * (Z <= a["cz"])
    img = _mix(img, (0.10, 0.07, 0.06), (lash_up + lash_lo) * fm * (ax < 0.06))
    crease = np.exp(-0.5 * ((Z - (a["cz"] + a["up"] + 0.0045 - 0.006 * ((ax - a["cx"]) / 0.02) ** 2)) / 0.0007) ** 2)
    img -= (0.10 * crease * smoothstep(0.02, 0.0, np.abs(ax - a["cx"])) * fm)[..., None] * np.array([1, 1.1, 1])
    # brows: an arch of strands
    xb = ax - a["cx"]
    zc = 0.0205 + 0.0058 * np.clip(1 - ((xb - 0.002) / 0.027) ** 2, 0, None)
    thick = np.interp(xb, [-0.022, -0.012, 0.01, 0.026], [0.0062, 0.0072, 0.0052, 0.0024])
    inside = smoothstep(-0.0235, -0.0195, xb) * smoothstep(0.0275, 0.024, xb)
    band = smoothstep(thick * 0.5, thick * 0.5 - 0.0012, np.abs(Z - zc)) * inside
    strands = 0.55 + 0.45 * value_noise((h, w), (h / 2.5, w / 14), rng)
    img = _mix(img, BROW, np.clip(band * (0.35 + strands), 0, 1) * fm * (Z > -0.01))
    # lips
    h_up, h_low = lip_shape(X, dZ, c.mouth.x_corner)
    lip = np.where(dZ >= 0, smoothstep(h_up, h_up - 0.0009, dZ), smoothstep(-h_low, -h_low + 0.0009, dZ))
    lip *= smoothstep(c.mouth.x_corner + 0.0015, c.mouth.x_corner - 0.0015, ax) * fm
    lip_noise = 1 + 0.06 * value_noise((h, w), (h / 6, w / 30), rng)[..., None]
    img = _mix(img, LIP * lip_noise, 0.9 * lip)
    seam = np.exp(-0.5 * (dZ / 0.0005) ** 2) * smoothstep(c.mouth.x_corner + 0.003, c.mouth.x_corner - 0.001, ax)
    img = _mix(img, (0.33, 0.14, 0.14), 0.85 * seam * fm)
    # nostrils (seen from below)
    nos = smoothstep(1.0, 0.6, np.hypot((ax - 0.0068) / 0.0042, (Z + 0.0495) / 0.0022))
    img = _mix(img, (0.25, 0.12, 0.1), nos * fm)
    # faint stubble shadow on the jaw and upper lip
    stub = (smoothstep(-0.0, -0.012, dZ) * smoothstep(0.075, 0.05, ax) * smoothstep(-0.135, -0.12, Z)
            + smoothstep(0.002, 0.006, dZ) * smoothstep(0.022, 0.016, dZ) * smoothstep(0.026, 0.01, ax))
    stub *= (1 - lip) * fm * (0.6 + 0.4 * value_noise((h, w), (h / 2, w / 2), rng))
    img -= (0.05 * stub)[..., None] * np.array([1, 1.05, 1.05])
    # scalp under the hair is hair coloured, so no gap can show skin
    under = smoothstep(-1.5 * DEG, -4.5 * DEG, c.phi - HAIRLINE(np.abs(c.theta)))
    img = _mix(img, HAIR, under)
    return img


def _hair(U, V, rng):
    h, w = U.shape
    strands = value_noise((h, w), (h / 40, w / 1.5), rng, octaves=2)
    fine = value_noise((h, w), (h / 10, w / 1.2), rng)
    img = HAIR * (1 + 0.35 * strands[..., None] + 0.15 * fine[..., None])
    sheen = 0.06 * np.exp(-0.5 * ((V - 0.55) / 0.12) ** 2)
    return img + sheen[..., None] * np.array([1.0, 0.85, 0.7])


def _mouth_interior(U, V, rng):
    h, w = U.shape
    n = value_noise((h, w), (8, 8), rng)[..., None]
    img = np.empty((h, w, 3))
    img[:] = (0.20, 0.06, 0.07)
    tongue = (U > 0.5) & (V < 0.5)
    img[tongue] = (0.60, 0.30, 0.31)
    inner_lip = V > 0.6
    img = np.where(inner_lip[..., None], np.array([0.58, 0.27, 0.28]), img)
    cav = (U <= 0.5) & (V < 0.5)
    shade = np.clip((V - 0.05) / 0.4, 0, 1)
    img = np.where(cav[..., None], np.array([0.26, 0.07, 0.08]) * (0.6 + 0.4 * shade[..., None]), img)
    return img * (1 + 0.08 * n)


def _eye(U, V, rng):
    h, w = U.shape
    x, y = (U - 0.5) * 2, (V - 0.5) * 2
    rho = np.hypot(x, y)                                   # sqrt(angle / pi) * 1
    ang = rho ** 2 * np.pi                                 # angle from the front pole
    azi = np.arctan2(y, x)
    iris_r, pupil_r = 27 * DEG, 8.5 * DEG
    img = np.empty((h, w, 3))
    img[:] = (0.93, 0.90, 0.87)
    veins = value_noise((h, w), (24, 24), rng)
    img -= (0.05 * smoothstep(30 * DEG, 80 * DEG, ang) * (0.5 + veins))[..., None] * np.array([0, 1, 1])
    fib = 0.5 + 0.5 * np.sin(azi * 38 + 3 * value_noise((h, w), (6, 6), rng))
    iris = np.array([0.36, 0.25, 0.13]) * (0.75 + 0.35 * fib[..., None])
    iris = _mix(iris, (0.52, 0.46, 0.22), 0.4 * smoothstep(pupil_r + 6 * DEG, pupil_r, ang))
    img = _mix(img, iris, smoothstep(iris_r + 1 * DEG, iris_r - 1 * DEG, ang))
    img = _mix(img, (0.12, 0.09, 0.07), 0.8 * np.exp(-0.5 * ((ang - iris_r) / (1.2 * DEG)) ** 2))
    img = _mix(img, (0.02, 0.02, 0.02), smoothstep(pupil_r + 0.8 * DEG, pupil_r - 0.8 * DEG, ang))
    return img


def _teeth(U, V, rng):
    # u along the arch (0..1, centre 0.5), v around the cross-section (front face 0..0.25)
    h, w = U.shape
    x = (U - 0.5) * 2
    widths = np.array([0, 0.085, 0.16, 0.24, 0.31, 0.42, 0.53, 0.66, 0.82, 1.0])
    edge = np.min(np.abs(np.abs(x)[..., None] - widths[None, None, 1:]), -1)
    gap = np.exp(-0.5 * (edge / 0.008) ** 2)
    img = np.empty((h, w, 3))
    img[:] = (0.93, 0.91, 0.84)
    img *= 1 - 0.03 * smoothstep(0.3, 1.0, np.abs(x))[..., None]
    img = _mix(img, (0.55, 0.48, 0.42), 0.7 * gap)
    return img


def _ear(U, V, rng):
    h, w = U.shape
    img = np.empty((h, w, 3))
    img[:] = SKIN * np.array([1.0, 0.95, 0.93])
    x = np.where(U < 0.5, U * 2, (U - 0.5) * 2)
    r = np.hypot((x - 0.5) / 0.45, (V - 0.5) / 0.45)
    concha = smoothstep(0.75, 0.35, r) * (U < 0.5)
    img -= concha[..., None] * np.array([0.22, 0.2, 0.17])
    img += 0.03 * value_noise((h, w), (10, 10), rng)[..., None]
    return img


def _neck(U, V, rng):
    h, w = U.shape
    img = np.empty((h, w, 3))
    img[:] = SKIN * 0.97
    # shadow under the jaw, at the front (u = 0.5)
    front = 0.5 - 0.5 * np.cos(U * 2 * np.pi)
    img -= (0.06 * smoothstep(0.6, 1.0, V) * front)[..., None] * np.array([1, 1.1, 1.1])
    img += 0.03 * value_noise((h, w), (12, 12), rng)[..., None]
    return img


def _torso(U, V, rng):
    h, w = U.shape
    weave = value_noise((h, w), (h / 3, w / 3), rng)
    folds = value_noise((h, w), (5, 14), rng, octaves=2)
    img = np.array([0.16, 0.30, 0.37]) * (1 + 0.12 * folds[..., None] + 0.05 * weave[..., None])
    collar = smoothstep(0.86, 0.93, V) * smoothstep(0.99, 0.95, V)
    img = _mix(img, (0.11, 0.22, 0.28), collar)
    return img


# --- emotion overlays ---------------------------------------------------------------------
def _lines(coord, spacing, width, phase=0.0):
    """Thin periodic lines along ``coord``: 1 on a line, 0 between."""
    u = (coord / spacing + phase) % 1.0
    d = np.minimum(u, 1 - u) * spacing
    return np.exp(-0.5 * (d / width) ** 2)


def overlay(emotion: str, size: int, mouth, seed: int = 0) -> np.ndarray:
    """(size, size, 3) float32 sRGB delta of one emotion at full intensity (0 for neutral)."""
    out = np.zeros((size, size, 3), np.float32)
    if emotion == "neutral":
        return out
    rng = np.random.default_rng(seed + 1000 + EMOTIONS.index(emotion))
    c = SkinChart(size, mouth)
    X, Z, fm = c.X, c.Z, c.fm
    ax = np.abs(X)
    h, w = c.shape
    jitter = value_noise((h, w), (20, 20), rng)
    d = np.zeros((h, w, 3))
    darken = np.array([-1.0, -1.1, -1.05])

    def forehead(amount, central):
        zc = Z - 0.0035 * (X / 0.03) ** 2 * (1 if central else 0.4) + 0.0004 * jitter
        lines = _lines(zc - 0.034, 0.0062, 0.00045)
        win = smoothstep(0.030, 0.036, Z) * smoothstep(0.066, 0.058, Z)
        win *= smoothstep(0.030 if central else 0.052, 0.016 if central else 0.040, ax)
        return amount * 0.16 * lines * win

    def furrow(amount):
        v = sum(np.exp(-0.5 * ((ax - x0) / 0.00045) ** 2) for x0 in (0.0035, 0.0065))
        return amount * 0.2 * v * smoothstep(0.010, 0.016, Z) * smoothstep(0.036, 0.028, Z)

    def nose_lines(amount):
        lines = _lines(Z + 0.0006 * jitter, 0.0028, 0.0004)
        return amount * 0.14 * lines * smoothstep(0.011, 0.006, ax) * smoothstep(-0.016, -0.010, Z) \
            * smoothstep(0.004, -0.001, Z)

    def crows_feet(amount):
        rel_x, rel_z = ax - 0.048, Z - 0.002
        ang = np.arctan2(rel_z, rel_x)
        r = np.hypot(rel_x, rel_z)
        rays = _lines(ang + 0.05 * jitter, 0.30, 0.035)
        return amount * 0.13 * rays * smoothstep(0.002, 0.004, r) * smoothstep(0.012, 0.008, r) \
            * smoothstep(-1.0, -0.6, np.cos(ang) * -1 + 0)

    def nasolabial(amount, side=None):
        p0, p1 = np.array([0.0175, -0.040]), np.array([0.031, -0.082])
        t = (p1 - p0) / np.linalg.norm(p1 - p0)
        rel = np.stack([ax - p0[0], Z - p0[1]], -1)
        along = rel @ t
        across = rel @ np.array([-t[1], t[0]])
        v = np.exp(-0.5 * (across / 0.0008) ** 2) * smoothstep(-0.002, 0.005, along) \
            * smoothstep(0.050, 0.040, along)
        if side is not None:
            v = v * smoothstep(-0.002, 0.002, side * X)
        return amount * 0.16 * v

    lines = np.zeros((h, w))
    tint = np.zeros((h, w, 3))
    face = smoothstep(0.075, 0.05, ax) * smoothstep(-0.13, -0.11, Z) * smoothstep(0.085, 0.07, Z)
    cheeks = blob(ax, Z, 0.045, -0.030, 0.016, 0.015)
    flush = np.array([0.07, -0.045, -0.04])
    pallor = np.array([0.02, 0.045, 0.06])
    if emotion == "angry":
        lines += furrow(1.0) + nose_lines(0.3)
        tint += (0.8 * face + 0.6 * cheeks)[..., None] * flush
        lines += 0.5 * 0.08 * np.clip(jitter, 0, None) * blob(X, Z, 0, -0.104, 0.01, 0.008)
    elif emotion == "contempt":
        lines += nasolabial(1.1, side=1.0)
        lines += 0.18 * blob(X, c.dZ, c.mouth.x_corner + 0.004, 0.0015, 0.0018, 0.0025)
    elif emotion == "disgusted":
        lines += nose_lines(1.0) + furrow(0.6) + nasolabial(0.8)
        tint += (0.6 * face)[..., None] * np.array([-0.03, 0.015, -0.02])
    elif emotion == "fear":
        lines += forehead(1.0, central=True) + furrow(0.3)
        tint += (1.0 * face)[..., None] * pallor
    elif emotion == "happy":
        lines += crows_feet(1.0) + nasolabial(1.0)
        tint += (1.1 * cheeks)[..., None] * flush
    elif emotion == "sad":
        lines += forehead(0.6, central=True)
        tint += (0.7 * face)[..., None] * pallor
        rims = blob(ax, Z, EYE_ALMOND["cx"], -0.004, 0.013, 0.004) + 0.9 * blob(X, Z, 0.0, -0.040, 0.008, 0.008)
        tint += rims[..., None] * np.array([0.09, -0.03, -0.02])
        lines += 0.6 * 0.08 * np.clip(jitter, 0, None) * blob(X, Z, 0, -0.104, 0.01, 0.008)
    elif emotion == "surprised":
        lines += forehead(1.0, central=False)
    d += lines[..., None] * darken + tint
    d *= fm[..., None]
    out[c.rows, c.cols] = d.astype(np.float32)
    return out
