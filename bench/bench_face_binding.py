"""How closely the tracked face mesh carries the synthetic subject's real skin.

Face Gaussians ride on the tracked (coarse) face mesh. This binds every render-mesh skin
vertex of a region, at rest, to its nearest tracked triangle (barycentric position plus an
offset along the triangle's normal), poses one rig expression at full weight, and measures
how far the carried point lands from where the generator really puts that skin (mm).
Errors above a pixel (0.77 mm on the face at 512² with the demo cameras) are what colour
alone cannot hide.

Usage: python bench/bench_face_binding.py
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emotalk3d_addon.backend.datasets.synthetic.head import RIG_PARAMS  # noqa: E402
from emotalk3d_addon.backend.datasets.synthetic.model import HeadModel  # noqa: E402

PIXEL_MM = 0.77
POSES = {
    "brows up": dict(brow_inner_up=1, brow_outer_up=1),
    "eyes wide": dict(eye_wide=1),
    "surprised (brows up + eyes wide)": dict(brow_inner_up=1, brow_outer_up=1, eye_wide=1),
    "brows down": dict(brow_down=1),
    "squint + cheek raise": dict(eye_squint=1, cheek_raise=1),
}


def skin(model: HeadModel, **weights: float) -> np.ndarray:
    """(V_skin, 3) float64 posed render skin, metres."""
    params = {k: np.array([float(weights.get(k, 0.0))]) for k in RIG_PARAMS}
    return model.skin.pose(params, 1)[0].astype(np.float64)


def normals(corners: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    a, b, c = corners
    n = np.cross(b - a, c - a)
    return n / np.linalg.norm(n, axis=1, keepdims=True)


def bind(points: np.ndarray, verts: np.ndarray, tri: np.ndarray, chunk: int = 256):
    """Nearest triangle of each point (inside ones first) and (l0, l1, l2, normal offset)."""
    a, b, c = verts[tri[:, 0]], verts[tri[:, 1]], verts[tri[:, 2]]
    n = normals((a, b, c))
    e0, e1 = b - a, c - a
    d00, d01, d11 = (e0 * e0).sum(1), (e0 * e1).sum(1), (e1 * e1).sum(1)
    den = d00 * d11 - d01 ** 2
    index = np.zeros(len(points), np.int64)
    coef = np.zeros((len(points), 4))
    for k in range(0, len(points), chunk):
        v = points[k:k + chunk, None, :] - a[None]
        h = (v * n[None]).sum(-1)
        q = v - h[..., None] * n[None]
        d20, d21 = (q * e0[None]).sum(-1), (q * e1[None]).sum(-1)
        l1 = (d11 * d20 - d01 * d21) / den
        l2 = (d00 * d21 - d01 * d20) / den
        l0 = 1 - l1 - l2
        outside = np.maximum(0.0, -np.minimum(np.minimum(l0, l1), l2))
        j = (np.abs(h) + 0.05 * outside).argmin(1)
        r = np.arange(len(j))
        index[k:k + chunk] = j
        coef[k:k + chunk] = np.stack([l0[r, j], l1[r, j], l2[r, j], h[r, j]], 1)
    return index, coef


def carry(index: np.ndarray, coef: np.ndarray, verts: np.ndarray, tri: np.ndarray) -> np.ndarray:
    a, b, c = (verts[tri[index, i]] for i in range(3))
    return coef[:, :1] * a + coef[:, 1:2] * b + coef[:, 2:3] * c + coef[:, 3:] * normals((a, b, c))


def main() -> None:
    model = HeadModel()
    tri = model.face_triangles.astype(np.int64)
    face = model.face_to_render
    rest = skin(model)
    x, y, z = rest.T
    # the eyes and brows (not the mouth: its lip rims meet at rest, so a rim vertex can bind to the other lip)
    mask = (np.abs(x) > 0.008) & (np.abs(x) < 0.06) & (z > -0.015) & (z < 0.05) & (y < 0)
    points = rest[mask]
    index, coef = bind(points, rest[face], tri)
    print(f"eyes & brows: {mask.sum()} skin vertices, normal offset at rest median "
          f"{np.median(np.abs(coef[:, 3])) * 1e3:.2f} mm")
    print("| pose | skin moves (median) | carry error median / p95 / max | over a pixel |")
    print("|---|---|---|---|")
    for label, weights in POSES.items():
        posed = skin(model, **weights)
        moved = np.linalg.norm(posed[mask] - points, axis=1) * 1e3
        err = np.linalg.norm(carry(index, coef, posed[face], tri) - posed[mask], axis=1) * 1e3
        moving = moved > 0.5
        median_move = np.median(moved[moving]) if moving.any() else 0.0
        print(f"| {label} | {median_move:.2f} mm | {np.median(err):.3f} / {np.percentile(err, 95):.2f} / "
              f"{err.max():.2f} mm | {(err > PIXEL_MM).sum()} |")

if __name__ == "__main__":
    main()
