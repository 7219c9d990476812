"""The whole synthetic subject: render mesh (head and body parts) and tracked face mesh."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .head import (DEG, EYE_ALMOND, EYE_CENTRE, EYE_RADIUS, HAIRLINE, JAW_MAX, SkinRig, atlas_uv,
                   build_skin_grid, direction, frontal, jaw_rotate, space_radius, t_of_phi)
from .shapes import grid_triangles, smoothstep, uv_sphere
from ...appearance.rigid import RigidPart

# grid resolution of the tracked face (coarse); the render skin refines it twice
COARSE_COLS, COARSE_ROWS = 96, 84
FACE_THETA = 74 * DEG
FACE_PHI = (46 * DEG, 147 * DEG)
MOUTH_PHI = 126.5 * DEG



@dataclass
class Part:
    name: str
    vertices: np.ndarray      # (V, 3) rest positions
    triangles: np.ndarray     # (T, 3) local indices
    uvs: np.ndarray           # (V, 2) atlas UVs
    jaw_weight: np.ndarray | None = None   # (V,) follows the jaw rotation


class HeadModel:
    """Builds the render mesh and the tracked face mesh once; poses frames."""

    def __init__(self):
        slit_row = int(round(t_of_phi(MOUTH_PHI) * COARSE_ROWS))
        coarse, mouth = build_skin_grid(COARSE_COLS, COARSE_ROWS, 1, None, slit_row, 0)
        fine, _ = build_skin_grid(COARSE_COLS, COARSE_ROWS, 2, mouth, slit_row, 2)
        self.mouth = mouth
        self.coarse_grid, self.fine_grid = coarse, fine
        self.skin = SkinRig(fine, mouth)
        # coarse vertex -> fine vertex
        inv_coarse = {v: k for k, v in coarse.keys.items()}
        c2f = np.array([fine.keys[inv_coarse[i]] for i in range(coarse.theta.size)], np.int64)
        # the tracked face: coarse vertices inside the face window
        th, ph = coarse.theta, coarse.phi
        inside = (np.abs(th) <= FACE_THETA + 1e-9) & (ph >= FACE_PHI[0] - 1e-9) & (ph <= FACE_PHI[1] + 1e-9)
        tri = coarse.triangles
        keep = inside[tri].all(1)
        face_vertices = np.flatnonzero(inside)
        remap = -np.ones(th.size, np.int64)
        remap[face_vertices] = np.arange(face_vertices.size)
        self.face_triangles = remap[tri[keep]]
        self.face_to_render = c2f[face_vertices]          # face vertex -> render (skin) vertex
        fth, fph = th[face_vertices], ph[face_vertices]
        # a one-vertex border of the face window is not "face" (mask 0)
        edge = (np.abs(np.abs(fth) - np.abs(fth).max()) < 1e-9) \
            | (np.abs(fph - fph.min()) < 1e-9) | (np.abs(fph - fph.max()) < 1e-9)
        self.face_mask = (~edge).astype(np.uint8)
        st = coarse.st[face_vertices]
        lo, hi = st.min(0), st.max(0)
        self.face_uvs = ((st - lo) / (hi - lo)).astype(np.float32)
        self.face_uvs[:, 1] = 1.0 - self.face_uvs[:, 1]          # v up, forehead at the top
        self.face_side = coarse.side[face_vertices]
        # render parts
        self.parts = self._build_parts()
        offs = np.cumsum([0] + [p.vertices.shape[0] for p in self.parts])
        self.part_slices = {p.name: slice(int(offs[i]), int(offs[i + 1])) for i, p in enumerate(self.parts)}
        self.render_triangles = np.concatenate([p.triangles + offs[i] for i, p in enumerate(self.parts)])
        self.render_uvs = np.concatenate([p.uvs for p in self.parts]).astype(np.float32)
        self.render_rest = self.pose_render({}, 1)[0]
        self.face_template = self.render_rest[self.face_to_render].astype(np.float32)
        self.landmarks = self._landmarks()

    # ------------------------------------------------------------------ parts
    def _build_parts(self) -> list[Part]:
        g = self.fine_grid
        skin_uv = atlas_uv("skin", np.stack([g.st[:, 0], 1.0 - g.st[:, 1]], 1))
        inner = g.inner > 0
        mouth_uv = atlas_uv("mouth", np.stack([g.st[:, 0] * 0 + 0.5 + 0.45 * np.sin(g.theta) / np.sin(
            self.mouth.theta_corner), 0.80 + 0.06 * g.inner * g.side], 1))
        skin_uv = np.where(inner[:, None], mouth_uv, skin_uv)
        skin_rest = self.skin.pose({}, 1)[0]
        parts = [Part("skin", skin_rest, g.triangles, skin_uv)]
        parts.append(self._hair())
        parts += self._ears()
        parts += self._eyes()
        parts += self._teeth()
        parts += self._mouth()
        parts.append(self._neck())
        parts.append(self._torso())
        return parts

    def _hair(self) -> Part:
        nc, nr = 96, 30
        s = np.linspace(0, 1, nc + 1)
        theta = np.pi * (2 * s - 1)
        q = np.linspace(0, 1, nr + 1)[1:]
        Q, TH = np.meshgrid(q, theta, indexing="ij")
        edge = HAIRLINE(np.abs(TH))
        PH = Q * edge
        r = space_radius(TH, PH)
        back = smoothstep(0.2, -0.8, np.cos(TH))
        thick = (0.0075 + 0.0105 * (1 - Q) ** 1.3 + 0.004 * back * (1 - Q)) \
            * smoothstep(1.0, 0.88, Q) ** 0.7
        # a soft fringe: a little volume at the front hairline
        thick += 0.003 * smoothstep(0.6, 0.95, Q) * smoothstep(1.0, 0.97, Q) * smoothstep(0.3, 0.9, np.cos(TH))
        # clumps: a little unevenness of the hair mass
        clump = 1 + 0.12 * np.sin(7 * TH + 2.0 * Q) * np.sin(9 * Q + 1.3) + 0.06 * np.sin(17 * TH - 5 * Q)
        thick = thick * clump
        pos = (r + thick)[..., None] * direction(TH, PH)
        verts = pos.reshape(-1, 3)
        tris = grid_triangles(nr, nc + 1, flip=True)
        pole = verts.shape[0]
        fan = np.stack([np.full(nc, pole), np.arange(nc), np.arange(1, nc + 1)], 1)
        top_r = space_radius(np.zeros(1), np.zeros(1))[0] + 0.0075 + 0.0105
        verts = np.concatenate([verts, [[0.0, 0.0, top_r]]])
        uv01 = np.concatenate([np.stack([np.broadcast_to(s, Q.shape).ravel(), 1 - Q.ravel()], 1), [[0.5, 1.0]]])
        return Part("hair", verts, np.concatenate([tris, fan]), atlas_uv("hair", uv01))

    def _ears(self) -> list[Part]:
        parts = []
        unit, tris, par = uv_sphere(28, 18)
        az, pol = par[:, 0] * 2 * np.pi, par[:, 1] * np.pi
        for sx, name in ((1.0, "ear"), (-1.0, "ear")):
            p = unit * np.array([0.0075, 0.0175, 0.0295])
            # concha: the outer face is hollowed inside its rim
            outer = unit[:, 0] > 0
            rim = np.sqrt(unit[:, 1] ** 2 + unit[:, 2] ** 2)
            dent = outer * smoothstep(0.85, 0.45, rim) * 0.0065
            p[:, 0] -= dent
            p[:, 1] += 0.003 * unit[:, 2]            # lobe a little forward
            # flare: the ear's back edge stands off the head
            ang = 16 * DEG
            ca, sa = np.cos(ang), np.sin(ang)
            x = p[:, 0] * ca + p[:, 1] * sa
            y = -p[:, 0] * sa + p[:, 1] * ca
            p = np.stack([x, y, p[:, 2]], 1)
            tilt = -12 * DEG
            ct, st_ = np.cos(tilt), np.sin(tilt)
            y, z = p[:, 1] * ct - p[:, 2] * st_, p[:, 1] * st_ + p[:, 2] * ct
            p = np.stack([p[:, 0], y, z], 1) + np.array([0.0760, 0.0105, -0.0095])
            p[:, 0] *= sx
            t = tris if sx > 0 else tris[:, ::-1]
            uv01 = np.stack([0.5 + 0.45 * unit[:, 1], 0.5 + 0.45 * unit[:, 2]], 1)
            uv01[:, 0] = np.where(outer, uv01[:, 0] * 0.5, 0.5 + uv01[:, 0] * 0.5)
            parts.append(Part(name, p, t.copy(), atlas_uv("ear", uv01)))
        return parts

    def _eyes(self) -> list[Part]:
        parts = []
        unit, tris, par = uv_sphere(36, 24)
        # pole forward (-Y): rotate +Z -> -Y
        pts = np.stack([unit[:, 0], -unit[:, 2], unit[:, 1]], 1)
        ang = par[:, 1] * np.pi            # angle from the front pole
        azi = par[:, 0] * 2 * np.pi
        rho = np.sqrt(ang / np.pi) * 0.5
        uv01 = np.stack([0.5 + rho * np.cos(azi), 0.5 + rho * np.sin(azi)], 1)
        for sx in (1.0, -1.0):
            c = EYE_CENTRE * np.array([sx, 1, 1])
            parts.append(Part("eye", pts * EYE_RADIUS + c, tris.copy(), atlas_uv("eye", uv01)))
        return parts

    def _teeth(self) -> list[Part]:
        parts = []
        zm = self._mouth_z()
        n = 28
        a = np.linspace(-1, 1, n + 1)
        for name, top, bottom, yf, jaw in (("teeth_upper", zm + 0.0070, zm - 0.0040, -0.0866, 0.0),
                                           ("teeth_lower", zm - 0.0046, zm - 0.0135, -0.0850, 1.0)):
            ang = a * 1.35
            cx = 0.0225 * np.sin(ang)
            cy = yf + 0.021 * (1 - np.cos(ang))
            nx, ny = np.sin(ang), -np.cos(ang)           # outward normal of the arch
            th = 0.0028
            loop = [(0.0, top), (0.0, bottom), (th, bottom), (th, top)]   # (inset, z)
            verts, uv = [], []
            for li, (inset, z) in enumerate(loop + [loop[0]]):
                verts.append(np.stack([cx - nx * inset, cy - ny * inset, np.full_like(cx, z)], 1))
                uv.append(np.stack([(a + 1) / 2, np.full_like(a, li / 4)], 1))
            V = np.concatenate(verts)
            tris = grid_triangles(5, n + 1, flip=True)
            parts.append(Part(name, V, tris, atlas_uv("teeth", np.concatenate(uv)),
                              np.full(V.shape[0], jaw)))
        return parts

    def _mouth_z(self) -> float:
        _, Z, _ = frontal(np.zeros(1), np.full(1, self.mouth.phi_m))
        return float(Z[0])

    def _mouth(self) -> list[Part]:
        zm = self._mouth_z()
        unit, tris, par = uv_sphere(32, 20)
        # cavity: an open bag behind the lips (front cap removed)
        c = np.array([0.0, -0.064, zm - 0.002])
        rad = np.array([0.029, 0.0255, 0.021])
        p = unit * rad + c
        keep_v = unit[:, 1] > -0.84
        keep_t = keep_v[tris].all(1)
        cav_t = tris[keep_t]
        w = smoothstep(c[2] + 0.004, c[2] - 0.006, p[:, 2])
        uv01 = np.stack([0.1 + 0.3 * par[:, 0], 0.05 + 0.4 * par[:, 1]], 1)
        cavity = Part("mouth", p, cav_t, atlas_uv("mouth", uv01), w)
        # tongue: a flattened ellipsoid on the floor
        ct = np.array([0.0, -0.060, zm - 0.0125])
        pt = unit * np.array([0.0175, 0.024, 0.0065]) + ct
        uv01 = np.stack([0.55 + 0.4 * par[:, 0], 0.05 + 0.4 * par[:, 1]], 1)
        tongue = Part("mouth", pt, tris.copy(), atlas_uv("mouth", uv01), np.ones(pt.shape[0]))
        return [cavity, tongue]

    def _neck(self) -> Part:
        nc, nr = 48, 16
        az = np.pi / 2 + np.linspace(0, 2 * np.pi, nc + 1)       # the seam at the back
        h = np.linspace(0, 1, nr + 1)
        H, A = np.meshgrid(h, az, indexing="ij")
        z_top = -0.098 + 0.06 * smoothstep(-0.6, 0.8, np.sin(A))
        z = z_top + (-0.24 - z_top) * H
        yc = 0.016 + 0.016 * H
        rx = 0.0565 + 0.022 * smoothstep(0.55, 1.0, H) ** 1.5
        ry = 0.0580 + 0.008 * smoothstep(0.6, 1.0, H)
        x = rx * np.cos(A)
        y = yc + ry * np.sin(A)
        # the throat a little forward at the middle
        y -= 0.004 * np.exp(-0.5 * ((A - 1.5 * np.pi) / 0.4) ** 2) * smoothstep(0.2, 0.5, H) * smoothstep(0.9, 0.6, H)
        V = np.stack([x, y, z], -1).reshape(-1, 3)
        tris = grid_triangles(nr + 1, nc + 1, flip=True)
        uv01 = np.stack([(A.ravel() - np.pi / 2) / (2 * np.pi), 1 - H.ravel()], 1)
        return Part("neck", V, tris, atlas_uv("neck", uv01))

    def _torso(self) -> Part:
        nc, nr = 64, 24
        az = np.pi / 2 + np.linspace(0, 2 * np.pi, nc + 1)       # the seam at the back
        pol = np.linspace(0, np.pi * 0.62, nr + 1)
        P, A = np.meshgrid(pol, az, indexing="ij")
        e1, e2 = 0.55, 0.8

        def spow(v, e):
            return np.sign(v) * np.abs(v) ** e

        x = 0.205 * spow(np.sin(P), e1) * spow(np.cos(A), e2)
        y = 0.105 * spow(np.sin(P), e1) * spow(np.sin(A), e2)
        z = 0.16 * spow(np.cos(P), e1)
        z = z - 1.9 * x ** 2 - 0.25 * np.maximum(-y, 0)
        V = np.stack([x, y + 0.028, z - 0.338], -1).reshape(-1, 3)
        tris = grid_triangles(nr + 1, nc + 1, flip=True)
        uv01 = np.stack([(A.ravel() - np.pi / 2) / (2 * np.pi), 1 - P.ravel() / P.max()], 1)
        return Part("torso", V, tris, atlas_uv("torso", uv01))

    # ------------------------------------------------------------------ rigid parts
    def rigid_parts(self) -> list[RigidPart]:
        """The moving parts outside the tracked face (``appearance/rigid.py``): both eyeballs'
        front caps and the upper teeth move with the skull (empty anchor: no gaze here);
        the lower teeth follow the jaw, anchored to the chin vertices that only the jaw moves."""
        parts = []
        eyes = [p for p in self.parts if p.name == "eye"]
        for part, side in zip(eyes, ("left", "right")):
            centre = part.vertices.mean(0)
            front = (part.vertices[:, 1] - centre[1]) / EYE_RADIUS < -0.2       # the face looks toward -Y
            parts.append(_sub_part(f"eye_{side}", part, front[part.triangles].all(1), np.zeros(0, np.int64)))
        teeth = {p.name: p for p in self.parts if p.name.startswith("teeth")}
        everything = np.ones(teeth["teeth_upper"].triangles.shape[0], bool)
        parts.append(_sub_part("teeth_upper", teeth["teeth_upper"], everything, np.zeros(0, np.int64)))
        parts.append(_sub_part("teeth_lower", teeth["teeth_lower"], everything, self.jaw_anchor()))
        return parts

    def jaw_anchor(self) -> np.ndarray:
        """(A,) face-vertex indices that move with the jaw alone: full jaw weight, off the
        lips, and (almost) untouched by every other rig field (< 0.2 mm at weight 1)."""
        rig = _SubRig(self.skin, self.face_to_render)._rig
        others = sum(np.linalg.norm(f, axis=0) for f in rig.fields.values())
        lowlip = np.maximum(rig.lip_low, (rig.grid.side < 0).astype(np.float64))
        return np.flatnonzero((rig.jaw_w >= 0.98) & (lowlip < 1e-3) & (others < 2e-4)).astype(np.int64)

    # ------------------------------------------------------------------ posing
    def pose_render(self, params: dict[str, np.ndarray], frames: int) -> np.ndarray:
        """(F, V_render, 3) float32 render mesh for per-frame rig parameters."""
        skin = self.skin.pose(params, frames)
        jaw = np.asarray(params.get("jaw", np.zeros(frames)), np.float64).reshape(frames, 1) * JAW_MAX
        out = [skin]
        for p in self.parts[1:]:
            v = np.broadcast_to(p.vertices, (frames,) + p.vertices.shape)
            if p.jaw_weight is not None:
                v = jaw_rotate(v, jaw, p.jaw_weight[None])
            out.append(v)
        return np.concatenate(out, 1).astype(np.float32)

    def pose_face(self, params: dict[str, np.ndarray], frames: int, chunk: int = 64) -> np.ndarray:
        """(F, V_face, 3) float32 tracked face meshes (a subset of the render skin)."""
        sub = _SubRig(self.skin, self.face_to_render)
        out = np.empty((frames, self.face_to_render.size, 3), np.float32)
        for a in range(0, frames, chunk):
            b = min(frames, a + chunk)
            out[a:b] = sub.pose({k: np.asarray(v)[a:b] for k, v in params.items()}, b - a)
        return out

    # ------------------------------------------------------------------ landmarks
    def _landmarks(self) -> dict[str, int]:
        V = self.face_template
        th = self._face_param("theta")
        ph = self._face_param("phi")
        X, Z, _ = frontal(th, ph)
        side = self.face_side
        front = np.abs(th) < 80 * DEG
        lm = {}

        def nearest(x, z, mask=None):
            m = front if mask is None else (front & mask)
            d = (X - x) ** 2 + (Z - z) ** 2
            d = np.where(m, d, np.inf)
            return int(np.argmin(d))

        centre = np.abs(th) < 1e-9
        lm["upper_lip"] = int(np.flatnonzero(centre & (side > 0))[0])
        lm["lower_lip"] = int(np.flatnonzero(centre & (side < 0))[0])
        corner = np.abs(np.abs(th) - self.mouth.theta_corner) < 1e-9
        at_slit = np.abs(ph - self.mouth.phi_m) < 1e-9
        lm["mouth_left"] = int(np.flatnonzero(corner & at_slit & (th > 0))[0])
        lm["mouth_right"] = int(np.flatnonzero(corner & at_slit & (th < 0))[0])
        near_mid = np.abs(X) < 0.003
        lm["nose_tip"] = int(np.argmin(np.where(near_mid & front, V[:, 1], np.inf)))
        lm["nose_bridge"] = nearest(0.0, 0.004)
        lm["chin"] = nearest(0.0, -0.110)
        a = EYE_ALMOND
        for sx, nm in ((1, "left"), (-1, "right")):
            lm[f"eye_{nm}_inner"] = nearest(sx * (a["cx"] - a["w"] + 0.0008), a["cz"] - a["tilt"])
            lm[f"eye_{nm}_outer"] = nearest(sx * (a["cx"] + a["w"] - 0.0008), a["cz"] + a["tilt"])
            lm[f"eye_{nm}_upper"] = nearest(sx * a["cx"], a["cz"] + a["up"] + 0.0008)
            lm[f"eye_{nm}_lower"] = nearest(sx * a["cx"], a["cz"] - a["low"] - 0.0008)
            lm[f"brow_{nm}_inner"] = nearest(sx * 0.013, 0.021)
            lm[f"brow_{nm}_mid"] = nearest(sx * 0.031, 0.026)
            lm[f"brow_{nm}_outer"] = nearest(sx * 0.050, 0.020)
            lm[f"cheek_{nm}"] = nearest(sx * 0.045, -0.035)
        lm["forehead"] = nearest(0.0, 0.052)
        return lm

    def _face_param(self, which: str) -> np.ndarray:
        g = self.fine_grid
        arr = g.theta if which == "theta" else g.phi
        return arr[self.face_to_render]

    # ------------------------------------------------------------------ summary
    @property
    def num_render_vertices(self) -> int:
        return self.render_rest.shape[0]


def _sub_part(name: str, part: Part, keep_triangles: np.ndarray, anchor: np.ndarray) -> RigidPart:
    """The triangles ``keep_triangles`` of a render part as a rigid part (unused vertices dropped)."""
    tris = part.triangles[keep_triangles]
    used = np.unique(tris)
    remap = -np.ones(part.vertices.shape[0], np.int64)
    remap[used] = np.arange(used.size)
    return RigidPart(name, part.vertices[used].astype(np.float32), remap[tris], anchor)


class _SubRig:
    """The skin rig restricted to a subset of its vertices (the tracked face)."""

    def __init__(self, rig: SkinRig, idx: np.ndarray):
        from copy import copy

        sub = copy(rig)
        g = copy(rig.grid)
        g.theta, g.phi = rig.grid.theta[idx], rig.grid.phi[idx]
        g.side, g.inner = rig.grid.side[idx], rig.grid.inner[idx]
        sub.grid = g
        for name in ("X", "Z", "fm", "r_base", "dZ", "above", "h_up", "h_low", "jaw_w", "lip_up",
                     "lip_low", "lips", "rest_relief"):
            setattr(sub, name, getattr(rig, name)[idx])
        sub.fields = {k: v[:, idx] for k, v in rig.fields.items()}
        self._rig = sub

    def pose(self, params, frames):
        return self._rig.pose(params, frames)
