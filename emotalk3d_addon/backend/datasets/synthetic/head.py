"""A procedural human head: one fixed topology, posed by a small facial rig (numpy only).

Subject space: metres, +Z up, the face looking toward -Y, origin between the ears at eye
height. The subject's left is +X.

The skin is a star-shaped surface around the origin, sampled on a (theta, phi) grid:
theta is the angle around the vertical axis (0 = front, +pi/2 = the subject's left),
phi the angle from the top (pi/2 = eye height). Its radius is

    r(theta, phi) = space(theta', phi') + material(theta, phi)

where (theta, phi) is where a skin point sits at rest ("material" coordinates) and
(theta', phi') where the expression has slid it to: the skin slides over a fixed
"space" shape (skull, nose, cheekbones, chin, the eyeballs the lids hug), and carries
its own "material" relief with it (lips, the eye openings, creases). A rigid jaw turns
the lower face about a hinge in front of the ears. The mouth is a slit in the grid: the
upper and lower lip rims are separate rows that meet at rest.

Two samplings of the same surface are made: a fine render mesh (the whole head plus
hair, ears, eyes, teeth, mouth cavity, neck and shoulders, each with UVs into one
texture atlas) and the coarse tracked FACE mesh (forehead to chin, cheek to cheek),
whose vertices are a subset of the render mesh's.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .shapes import Profile, blob, grid_triangles, smax, smoothstep

DEG = np.pi / 180.0

# --- rig parameters --------------------------------------------------------------------
SPEECH_PARAMS = ("jaw", "round", "spread", "close", "fv")
EXPRESSION_PARAMS = ("brow_inner_up", "brow_outer_up", "brow_down", "eye_wide", "eye_squint",
                     "cheek_raise", "smile_l", "smile_r", "frown", "stretch", "press",
                     "upper_lip_raise", "nose_wrinkle")
RIG_PARAMS = SPEECH_PARAMS + EXPRESSION_PARAMS
# expressions that part the lips (AU10 lifts the upper lip, AU15's pout pushes the lower
# lip out): a bilabial seals the lips whatever the expression, so on the lips these give
# way to the closure parameter ("close"), elsewhere they hold
LIP_PARTING_PARAMS = ("upper_lip_raise", "frown")
# bumped whenever posing changes what a parameter set looks like (2: the lip seal above);
# a speech corpus animated by an older rig is animated again (speech_corpus/build.py)
RIG_VERSION = 2

JAW_MAX = 0.17                       # radians at jaw = 1
JAW_HINGE = np.array([0.0, 0.004, -0.028])
EYE_CENTRE = np.array([0.0325, -0.0685, 0.0015])   # left eye (+X); the right mirrors X
EYE_RADIUS = 0.0125
EYE_ALMOND = dict(cx=0.0330, cz=0.0010, w=0.0136, up=0.0046, low=0.0034, tilt=0.0011)

# hairline: phi of the hair edge over |theta|
HAIRLINE = Profile(np.array([0, 30, 52, 63, 70, 77, 86, 100, 125, 150, 180]) * DEG,
                   np.array([41, 43, 50, 62, 84, 87, 73, 74, 100, 118, 124]) * DEG)

# --- texture atlas regions (u0, v0, u1, v1); v up (Blender's UV convention) -------------
ATLAS = {
    "skin": (0.0, 0.25, 0.75, 1.0),
    "hair": (0.0, 0.0, 0.5, 0.25),
    "mouth": (0.5, 0.0, 0.75, 0.25),
    "eye": (0.75, 0.75, 1.0, 1.0),
    "teeth": (0.75, 0.625, 1.0, 0.75),
    "ear": (0.75, 0.375, 1.0, 0.625),
    "neck": (0.75, 0.1875, 1.0, 0.375),
    "torso": (0.75, 0.0, 1.0, 0.1875),
}


def atlas_uv(region: str, uv01: np.ndarray, pad: float = 0.004) -> np.ndarray:
    u0, v0, u1, v1 = ATLAS[region]
    u0, v0, u1, v1 = u0 + pad, v0 + pad, u1 - pad, v1 - pad
    uv = np.asarray(uv01, np.float64)
    return np.stack([u0 + (u1 - u0) * uv[..., 0], v0 + (v1 - v0) * uv[..., 1]], -1)


# --- grid parametrisation ---------------------------------------------------------------
def theta_of_s(s):
    """s in [0, 1] -> theta in [-pi, pi]; denser columns at the front."""
    x = 2.0 * np.asarray(s, np.float64) - 1.0
    a = 0.5
    return np.pi * (a * x + (1 - a) * x ** 3)


_T_KNOTS = np.array([0.0, 0.14, 0.82, 1.0])
_PHI_KNOTS = np.array([3.0, 44.0, 150.0, 176.0]) * DEG


def phi_of_t(t):
    """t in [0, 1] -> phi (from the top); denser rows over the face."""
    return np.interp(t, _T_KNOTS, _PHI_KNOTS)


def t_of_phi(phi):
    return np.interp(phi, _PHI_KNOTS, _T_KNOTS)


def direction(theta, phi):
    st = np.sin(phi)
    return np.stack([st * np.sin(theta), -st * np.cos(theta), np.cos(phi)], -1)


# --- the space shape --------------------------------------------------------------------
def _profile_from_points(points):
    """(distance from the vertical axis, z) points in a vertical plane -> radius over phi."""
    pts = np.asarray(points, np.float64)
    r = np.hypot(pts[:, 0], pts[:, 1])
    phi = np.arctan2(pts[:, 0], pts[:, 1])
    return Profile(phi, r)


# sagittal front profile (distance in front of the origin, z), without nose and lips
_FRONT = _profile_from_points([
    (0.0, 0.119), (0.052, 0.108), (0.080, 0.083), (0.091, 0.058), (0.0945, 0.035),
    (0.0935, 0.018), (0.0885, 0.003), (0.0895, -0.020), (0.0925, -0.042), (0.0935, -0.060),
    (0.0920, -0.072), (0.0905, -0.085), (0.0885, -0.097), (0.0865, -0.108), (0.0780, -0.121),
    (0.0560, -0.130), (0.030, -0.134), (0.0, -0.134)])
_BACK = _profile_from_points([
    (0.0, 0.119), (0.060, 0.103), (0.092, 0.066), (0.104, 0.025), (0.103, -0.015),
    (0.094, -0.055), (0.078, -0.085), (0.055, -0.115), (0.030, -0.130), (0.0, -0.134)])
_SIDE = _profile_from_points([
    (0.0, 0.119), (0.050, 0.107), (0.070, 0.076), (0.0765, 0.035), (0.0760, 0.0),
    (0.0735, -0.030), (0.0680, -0.062), (0.0600, -0.088), (0.0470, -0.112), (0.030, -0.128),
    (0.0, -0.134)])
_EXPO = Profile(np.array([0, 45, 70, 100, 125, 145, 180]) * DEG, [2.0, 2.2, 2.6, 2.5, 2.15, 1.9, 2.0])

# nose: forward offset and half-width along Z
_NOSE_A = Profile([0.016, 0.006, -0.004, -0.016, -0.028, -0.037, -0.042, -0.046, -0.0495, -0.053, -0.057],
                  [0.0, 0.003, 0.0085, 0.0145, 0.0205, 0.0255, 0.0268, 0.0235, 0.0150, 0.004, 0.0])
_NOSE_W = Profile([0.016, -0.010, -0.030, -0.042, -0.057], [0.0065, 0.0052, 0.0064, 0.0085, 0.0095])


def base_radius(theta, phi):
    """Radius of the smooth skull/jaw shape (no facial features)."""
    F, B, S, p = _FRONT(phi), _BACK(phi), _SIDE(phi), _EXPO(phi)
    c, s = np.cos(theta), np.abs(np.sin(theta))
    A = np.where(c >= 0, F, B)
    return ((s / S) ** p + (np.abs(c) / A) ** p) ** (-1.0 / p)


def frontal(theta, phi, r=None):
    """(X, Z, front weight) of the base surface point: the face chart coordinates."""
    r = base_radius(theta, phi) if r is None else r
    X = r * np.sin(phi) * np.sin(theta)
    Z = r * np.cos(phi)
    fm = smoothstep(0.05, 0.4, np.cos(theta))
    return X, Z, fm


def _eye_hit(theta, phi):
    """Distance along the ray to the nearer eyeball's front surface (inf where missed)."""
    d = direction(theta, phi)
    best = np.full(d.shape[:-1], np.inf)
    for sx in (1.0, -1.0):
        E = EYE_CENTRE * np.array([sx, 1.0, 1.0])
        b = d @ E
        disc = b * b - (E @ E - EYE_RADIUS ** 2)
        t = np.where(disc > 0, b - np.sqrt(np.maximum(disc, 0)), np.inf)
        best = np.minimum(best, t)
    return best


def space_radius(theta, phi):
    """The fixed shape the skin slides over: skull, brow ridge, nose, cheekbones, chin,
    eye sockets with the lids hugging the eyeballs."""
    r0 = base_radius(theta, phi)
    X, Z, fm = frontal(theta, phi, r0)
    ax = np.abs(X)
    off = np.zeros_like(r0)
    # brow ridge and forehead
    off += 0.0042 * np.exp(-0.5 * ((Z - 0.021) / 0.0075) ** 2) * smoothstep(0.058, 0.035, ax) \
        * (1 - 0.35 * np.exp(-0.5 * (X / 0.007) ** 2))
    # eye sockets and temples
    off -= 0.0075 * blob(ax, Z, EYE_CENTRE[0], 0.001, 0.0135, 0.0105)
    off -= 0.003 * blob(ax, Z, 0.066, 0.018, 0.010, 0.016)
    # cheekbones, cheeks, chin
    off += 0.0042 * blob(ax, Z, 0.047, -0.022, 0.014, 0.011)
    off += 0.0028 * blob(ax, Z, 0.040, -0.052, 0.015, 0.014)
    off += 0.0045 * blob(X, Z, 0.0, -0.106, 0.0135, 0.0105)
    # nose
    w = _NOSE_W(Z)
    off += _NOSE_A(Z) * np.exp(-0.5 * np.abs(X / w) ** 2.4)
    off += 0.0085 * blob(ax, Z, 0.0135, -0.0435, 0.0050, 0.0048)
    r = r0 + fm * off
    # eyelids hug the eyeballs
    hit = _eye_hit(theta, phi)
    hug = np.where(np.isfinite(hit), hit + 0.0016, -1.0)
    return smax(r, hug, 0.0015)


# --- the mouth ----------------------------------------------------------------------------
@dataclass(frozen=True)
class MouthFrame:
    phi_m: float          # phi of the slit row
    x_corner: float       # |X| of the corner columns
    theta_corner: float


def _almond(X, Z):
    """Signed distance-like value (metres, positive inside) of the eye openings."""
    a = EYE_ALMOND
    ax = np.abs(X)
    q = (ax - a["cx"]) / a["w"]
    qc = np.clip(q, -1, 1)
    bump = np.clip(1 - qc ** 2, 0, None)
    zc = a["cz"] + a["tilt"] * qc
    z_up = zc + a["up"] * bump ** 0.7 * (1 - 0.25 * qc)
    z_low = zc - a["low"] * bump ** 0.85
    return np.minimum.reduce([z_up - Z, Z - z_low, (1 - np.abs(q)) * a["w"] * 0.45])


def lip_shape(X, dZ, x_corner):
    """Upper/lower lip heights (metres) at X and the vermilion mask."""
    q = np.clip(np.abs(X) / x_corner, 0, 1)
    taper = np.clip(1 - q ** 2, 0, None) ** 0.55
    bow = 0.0088 + 0.0014 * np.exp(-0.5 * ((np.abs(X) - 0.0055) / 0.003) ** 2) \
        - 0.0011 * np.exp(-0.5 * (X / 0.0022) ** 2)
    h_up = bow * taper
    h_low = 0.0102 * taper ** 0.8
    return h_up, h_low


@dataclass
class SkinGrid:
    """One sampling of the skin surface (material coordinates per vertex)."""
    theta: np.ndarray     # (V,)
    phi: np.ndarray       # (V,)
    side: np.ndarray      # (V,) int8: +1 upper lip rim/inner, -1 lower, 0 elsewhere
    inner: np.ndarray     # (V,) int8: 0 skin, k>0 k-th row rolled into the mouth
    st: np.ndarray        # (V,2) grid coordinates (s, t) in [0, 1]
    triangles: np.ndarray
    keys: dict = field(default_factory=dict)   # (col, row_key) -> vertex


def build_skin_grid(n_cols: int, n_rows: int, refine: int, mouth: MouthFrame | None,
                    slit_row: int, inner_rows: int) -> tuple[SkinGrid, MouthFrame]:
    """Skin grid with n_cols x n_rows coarse cells, each split ``refine`` times.

    Columns: s = j / (n_cols * refine); rows: t = i / (n_rows * refine). The coarse row
    ``slit_row`` is the mouth: it is doubled (upper rim, lower rim) for the columns
    between the mouth corners, with ``inner_rows`` extra rows rolled into the mouth
    behind each rim. A pole vertex closes the top.
    """
    nc, nr = n_cols * refine, n_rows * refine
    s = np.arange(nc + 1) / nc
    theta = theta_of_s(s)
    t_rows = np.arange(nr + 1) / nr
    phi_rows = phi_of_t(t_rows)
    slit = slit_row * refine
    if mouth is None:
        phi_m = phi_rows[slit]
        Xs, _, _ = frontal(theta, np.full_like(theta, phi_m))
        # corner columns: the coarse columns nearest |X| = 24 mm
        coarse = np.arange(0, nc + 1, refine)
        front = coarse[np.abs(theta[coarse]) < np.pi / 2]
        jc = front[np.argmin(np.abs(np.abs(Xs[front]) - 0.0245) + 1e-9 * (Xs[front] < 0))]
        mouth = MouthFrame(phi_m, float(abs(Xs[jc])), float(abs(theta[jc])))
    # row specs: (t, phi, side, inner, key)
    rows = []
    for i in range(nr + 1):
        if i == slit:
            rows.append((t_rows[i], phi_rows[i], 1, 0, ("rim", 1, 0)))
            for k in range(1, inner_rows + 1):
                rows.append((t_rows[i], phi_rows[i], 1, k, ("rim", 1, k)))
            for k in range(inner_rows, 0, -1):
                rows.append((t_rows[i], phi_rows[i], -1, k, ("rim", -1, k)))
            rows.append((t_rows[i], phi_rows[i], -1, 0, ("rim", -1, 0)))
        else:
            rows.append((t_rows[i], phi_rows[i], 0, 0, ("row", round(t_rows[i] * 1e6), 0)))
    nrow = len(rows)
    inside = np.abs(theta) < mouth.theta_corner - 1e-9          # strictly between corners
    T = np.array([r[1] for r in rows])
    side = np.array([r[2] for r in rows], np.int8)
    inner = np.array([r[3] for r in rows], np.int8)
    tt = np.array([r[0] for r in rows])
    # full vertex table, then merge the slit rows outside the mouth
    V = nrow * (nc + 1)
    idx = np.arange(V).reshape(nrow, nc + 1)
    rep = idx.copy()
    slit_first = slit
    for rr in range(slit_first, slit_first + 2 + 2 * inner_rows):
        rep[rr, ~inside] = idx[slit_first, ~inside]
    # triangles over all quads, except across the mouth opening
    tris = grid_triangles(nrow, nc + 1, flip=True)          # outward normals
    gap_row = slit_first + inner_rows                 # quads between this row and the next
    quad_row = np.concatenate([np.repeat(np.arange(nrow - 1), nc)] * 2)
    quad_col = np.concatenate([np.tile(np.arange(nc), nrow - 1)] * 2)
    opening = (quad_row == gap_row) & (inside[quad_col] | inside[quad_col + 1])
    tris = rep.ravel()[tris[~opening]]
    # top pole fan
    pole = V
    top = rep[0]
    fan = np.stack([np.full(nc, pole), top[:-1], top[1:]], 1)
    tris = np.concatenate([tris, fan])
    good = (tris[:, 0] != tris[:, 1]) & (tris[:, 1] != tris[:, 2]) & (tris[:, 0] != tris[:, 2])
    tris = tris[good]
    # compact
    used = np.unique(np.concatenate([tris.ravel(), rep.ravel()[rep.ravel() == idx.ravel()]]))
    remap = -np.ones(V + 1, np.int64)
    remap[used] = np.arange(used.size)
    TH = np.broadcast_to(theta, (nrow, nc + 1)).ravel()
    PH = np.broadcast_to(T[:, None], (nrow, nc + 1)).ravel()
    SD = np.broadcast_to(side[:, None], (nrow, nc + 1)).ravel().copy()
    IN = np.broadcast_to(inner[:, None], (nrow, nc + 1)).ravel().copy()
    SS = np.broadcast_to(s, (nrow, nc + 1)).ravel()
    TT = np.broadcast_to(tt[:, None], (nrow, nc + 1)).ravel()
    # merged corner/outside vertices are ordinary skin
    merged_rows = np.zeros((nrow, nc + 1), bool)
    merged_rows[slit_first:slit_first + 2 + 2 * inner_rows, ~inside] = True
    SD[merged_rows.ravel()] = 0
    IN[merged_rows.ravel()] = 0
    TH = np.append(TH, 0.0)
    PH = np.append(PH, 0.0)
    SD = np.append(SD, 0)
    IN = np.append(IN, 0)
    SS = np.append(SS, 0.5)
    TT = np.append(TT, 0.0)
    keep = used
    grid = SkinGrid(TH[keep], PH[keep], SD[keep].astype(np.int8), IN[keep].astype(np.int8),
                    np.stack([SS[keep], TT[keep]], 1), remap[tris])
    keys = {}
    for ri, r in enumerate(rows):
        for j in range(nc + 1):
            keys[(round(s[j] * 1e6), r[4])] = int(remap[rep[ri, j]])
    keys[("pole",)] = int(remap[pole])
    grid.keys = keys
    return grid, mouth


# --- the posable skin ------------------------------------------------------------------------
class SkinRig:
    """Material fields of a skin grid, precomputed; ``pose`` evaluates frames."""

    def __init__(self, grid: SkinGrid, mouth: MouthFrame):
        self.grid, self.mouth = grid, mouth
        th, ph = grid.theta, grid.phi
        X, Z, fm = frontal(th, ph)
        self.X, self.Z, self.fm = X, Z, fm
        self.r_base = base_radius(th, ph)
        Xm, Zm, _ = frontal(th, np.full_like(th, mouth.phi_m))
        self.dZ = Z - Zm                                    # height above the mouth line
        sd = grid.side.astype(np.float64)
        # above the slit: 1, below: 0, rims by their side
        above = np.where(sd > 0, 1.0, np.where(sd < 0, 0.0, smoothstep(-0.0006, 0.0006, self.dZ)))
        lateral = np.maximum(np.abs(X) - mouth.x_corner, 0.0)
        soft = 0.5 + 0.5 * np.tanh(self.dZ / (0.0007 + 0.55 * lateral))
        in_mouth = (np.abs(X) < mouth.x_corner) & (np.abs(th) < np.pi / 2)
        self.above = np.where(in_mouth, above, soft)
        h_up, h_low = lip_shape(X, self.dZ, mouth.x_corner)
        self.h_up, self.h_low = h_up, h_low
        # jaw weight
        back = 1.0 - smoothstep(62 * DEG, 108 * DEG, np.abs(th))
        bottom = 1.0 - smoothstep(160 * DEG, 174 * DEG, ph)
        low = 1.0 - self.above
        low = np.where(ph < 95 * DEG, 0.0, low)
        self.jaw_w = low * back * bottom
        # lip regions (masks on the rest surface)
        ax = np.abs(X)
        lip_x = smoothstep(mouth.x_corner + 0.006, mouth.x_corner - 0.002, ax) * fm
        self.lip_up = lip_x * self.above * smoothstep(0.016, 0.004, self.dZ)
        self.lip_low = lip_x * (1 - self.above) * smoothstep(-0.022, -0.006, self.dZ)
        self.lips = self.lip_up + self.lip_low
        # rest material relief
        self.rest_relief = self._rest_relief()
        self.fields = self._fields()

    # -- material relief at rest: lips, eye openings, creases
    def _rest_relief(self):
        X, Z, dZ, fm = self.X, self.Z, self.dZ, self.fm
        up = self.above
        ax = np.abs(X)
        h_up, h_low = self.h_up, self.h_low
        u_up = np.clip(dZ / np.maximum(h_up, 1e-4), 0, 1.3)
        u_low = np.clip(-dZ / np.maximum(h_low, 1e-4), 0, 1.3)

        def lip_profile(u, amp, rim=0.0031):
            return np.where(u < 1, (1 - np.clip(u, 0, 1)) ** 2.0 * (rim + 3.4 * amp * u), 0.0)

        taper = smoothstep(self.mouth.x_corner + 0.003, self.mouth.x_corner - 0.004, ax)
        rel = (up * lip_profile(u_up, 0.0060) + (1 - up) * lip_profile(u_low, 0.0068)) * taper
        # philtrum groove and mentolabial sulcus
        rel -= 0.0010 * np.exp(-0.5 * (X / 0.0035) ** 2) * smoothstep(0.004, 0.009, dZ) \
            * smoothstep(0.022, 0.016, dZ)
        rel -= 0.0028 * blob(X, dZ, 0.0, -0.0175, 0.013, 0.0045)
        # nasolabial folds
        rel += self._nasolabial(0.0011)
        # eye openings: skin inside pushed behind the eyeball
        rel -= 0.0085 * smoothstep(-0.0002, 0.0009, _almond(X, Z))
        return rel * fm

    def _nasolabial(self, depth, side_mask=None):
        X, Z = self.X, self.Z
        ax = np.abs(X)
        p0, p1 = np.array([0.0175, -0.040]), np.array([0.0300, -0.080])
        dvec = p1 - p0
        L = np.linalg.norm(dvec)
        tdir = dvec / L
        rel = np.stack([ax - p0[0], Z - p0[1]], -1)
        along = rel @ tdir
        across = rel @ np.array([-tdir[1], tdir[0]])       # positive toward the cheek (outward)
        env = smoothstep(-0.004, 0.006, along) * smoothstep(L + 0.006, L - 0.004, along)
        step = (0.5 + 0.5 * np.tanh(-across / 0.0016)) - 0.5 * np.exp(-0.5 * (across / 0.001) ** 2)
        out = depth * env * step
        if side_mask is not None:
            out = out * side_mask
        return out

    # -- expression and viseme fields: (dX, dZ, dR) at weight 1
    def _fields(self):
        X, Z, dZ, fm = self.X, self.Z, self.dZ, self.fm
        ax, sx = np.abs(X), np.sign(X)
        left, right = smoothstep(-0.002, 0.002, X), smoothstep(0.002, -0.002, X)
        zero = np.zeros_like(X)
        up, low = self.above, 1 - self.above
        a = EYE_ALMOND
        lid_up_z = a["cz"] + a["up"] + 0.0004
        lid_low_z = a["cz"] - a["low"] - 0.0002
        f = {}
        f["brow_inner_up"] = (zero, 0.0085 * blob(ax, Z, 0.016, 0.028, 0.013, 0.017), zero)
        f["brow_outer_up"] = (zero, 0.0075 * blob(ax, Z, 0.046, 0.026, 0.016, 0.015), zero)
        g = blob(ax, Z, 0.014, 0.024, 0.012, 0.010)
        f["brow_down"] = (-sx * 0.0036 * g, -0.0050 * g,
                          0.0016 * blob(X, Z, 0.0, 0.019, 0.007, 0.008) + 0.0008 * g)
        lid_u = blob(ax, Z, a["cx"], lid_up_z, 0.013, 0.0042)
        lid_l = blob(ax, Z, a["cx"], lid_low_z, 0.013, 0.0032)
        f["eye_wide"] = (zero, 0.0030 * lid_u - 0.0010 * lid_l, zero)
        f["eye_squint"] = (zero, -0.0016 * lid_u + 0.0026 * lid_l, 0.0005 * lid_l)
        ch = blob(ax, Z, 0.041, -0.030, 0.016, 0.016)
        f["cheek_raise"] = (sx * 0.001 * ch, 0.0042 * ch + 0.0016 * blob(ax, Z, a["cx"], lid_low_z - 0.003, 0.012, 0.004),
                            0.0026 * ch)
        mc = self.mouth.x_corner
        for name, mask in (("smile_l", left), ("smile_r", right)):
            c = blob(ax, dZ, mc, 0.0, 0.012, 0.011) * mask
            ck = blob(ax, Z, 0.036, -0.046, 0.014, 0.014) * mask
            f[name] = (sx * 0.0058 * c, 0.0068 * c + 0.0024 * ck,
                       -0.0015 * c + 0.0022 * ck + self._nasolabial(0.0016, mask))
        c = blob(ax, dZ, mc, -0.003, 0.012, 0.012)
        chin = blob(X, Z, 0.0, -0.102, 0.012, 0.011)
        f["frown"] = (sx * 0.0012 * c, -0.0060 * c + 0.0018 * chin,
                      0.0018 * chin + 0.0012 * self.lip_low)
        c = blob(ax, dZ, mc, 0.0, 0.014, 0.012)
        f["stretch"] = (sx * 0.0060 * c, -0.0014 * c, -0.0012 * self.lips)
        f["press"] = (-sx * 0.0010 * blob(ax, dZ, mc, 0.0, 0.008, 0.008), zero, -0.0022 * self.lips)
        ul = blob(X, dZ, 0.0, 0.007, 0.020, 0.010) * up
        f["upper_lip_raise"] = (zero, 0.0042 * ul, 0.0006 * ul)
        nw = blob(ax, Z, 0.012, -0.012, 0.008, 0.012)
        f["nose_wrinkle"] = (-sx * 0.0008 * nw, 0.0030 * nw, 0.0010 * nw)
        lipreg = blob(X, dZ, 0.0, 0.0, 0.022, 0.013)
        f["round"] = (-0.33 * X * lipreg, zero, 0.0052 * self.lips + 0.0015 * lipreg)
        c = blob(ax, dZ, mc, 0.0, 0.011, 0.010)
        f["spread"] = (sx * 0.0042 * c, 0.0005 * c, -0.0010 * c)
        f["close"] = (zero, zero, -0.0008 * self.lips)
        f["fv"] = (zero, 0.0016 * self.lip_low, -0.0032 * self.lip_low)
        fields = {}
        for k, (dx, dz, dr) in f.items():
            fields[k] = np.stack([dx * fm, dz * fm, dr * fm], 0)
        return fields

    def pose(self, params: dict[str, np.ndarray], frames: int) -> np.ndarray:
        """(F, V, 3) positions for per-frame rig parameters (missing ones are 0)."""
        V = self.X.size
        disp = np.zeros((frames, 3, V))
        close = np.clip(np.asarray(params.get("close", np.zeros(frames)), np.float64).reshape(frames, 1), 0, 1)
        seal = 1.0 - close * np.clip(self.lips, 0.0, 1.0)[None]           # (F, V): 0 on sealed lips
        for k, fld in self.fields.items():
            w = params.get(k)
            if w is None:
                continue
            w = np.asarray(w, np.float64).reshape(frames, 1, 1)
            disp += (w * seal[:, None] if k in LIP_PARTING_PARAMS else w) * fld[None]
        th0, ph0 = self.grid.theta, self.grid.phi
        sinp = np.maximum(np.sin(ph0), 0.2)
        rho = self.r_base * sinp
        cos_t = np.maximum(np.cos(th0), 0.3)
        th = th0[None] + disp[:, 0] / (rho * cos_t)
        ph = ph0[None] - disp[:, 1] / (self.r_base * sinp)
        r = space_radius(th, ph) + self.rest_relief[None] + disp[:, 2]
        pos = r[..., None] * direction(th, ph)
        # inner lip rows: rolled back into the mouth behind their rim
        inner = self.grid.inner.astype(np.float64)
        if inner.any():
            sd = self.grid.side.astype(np.float64)
            pos = pos + (inner[None, :, None] * np.stack([np.zeros_like(sd), np.full_like(sd, 0.0040),
                                                          sd * 0.0017], -1)[None])
        # jaw
        jaw = np.asarray(params.get("jaw", np.zeros(frames)), np.float64).reshape(frames, 1)
        close = np.asarray(params.get("close", np.zeros(frames)), np.float64).reshape(frames, 1)
        fv = np.asarray(params.get("fv", np.zeros(frames)), np.float64).reshape(frames, 1)
        lowlip = np.maximum(self.lip_low, (self.grid.side < 0).astype(np.float64))
        w = self.jaw_w[None] * np.clip(1.0 - np.clip(close + 0.75 * fv, 0, 1) * lowlip[None], 0, 1)
        return jaw_rotate(pos, jaw * JAW_MAX, w)


def jaw_rotate(pos: np.ndarray, angle: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Blend each point toward its position rotated about the jaw hinge (X axis).

    pos (F, V, 3); angle (F, 1) radians (positive opens); weight (F or 1, V)."""
    rel = pos - JAW_HINGE
    ca, sa = np.cos(angle), np.sin(angle)
    y = rel[..., 1] * ca - rel[..., 2] * sa
    z = rel[..., 1] * sa + rel[..., 2] * ca
    rot = np.stack([rel[..., 0], y, z], -1) + JAW_HINGE
    return pos + weight[..., None] * (rot - pos)
