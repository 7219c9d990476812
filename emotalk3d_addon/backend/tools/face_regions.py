"""Face regions for evaluation, taken from the mesh: each vertex of the tracked face mesh gets
a region from the subject's landmarks, and the mesh is rasterised (z-buffered, numba) into a
per-pixel region map for a camera. Nothing is guessed from the image.

Regions: ``mouth`` (the lips and the skin around them), ``eyes_brows`` (lids, eyes, brows
and the skin between), ``cheeks`` (the rest of the face mask), and, in images,
``outside_face`` (what the ground truth covers where no face triangle is: hair, ears, neck,
shoulders). Subject space: metres, +Z up, the face looking toward -Y.
"""
from __future__ import annotations

import numba
import numpy as np

from ..raster.camera import Camera

REGIONS = ("mouth", "eyes_brows", "cheeks")     # vertex regions 1, 2, 3 (0: not in the face)
IMAGE_REGIONS = REGIONS + ("outside_face", "all")
MOUTH_HALF_WIDTH = 0.75      # mouth ellipse: half-widths in units of the mouth's width ...
MOUTH_HALF_HEIGHT = 0.55     # ... across and up/down, around the lips' centre


def vertex_regions(template: np.ndarray, landmarks: dict[str, int], face_mask: np.ndarray) -> np.ndarray:
    """(V,) int8 region index per vertex (1 mouth, 2 eyes and brows, 3 cheeks, 0 outside the
    face mask), from the landmarks: the four required lip landmarks place the mouth; the eye
    and brow landmarks (when the subject has them) bound the eye band, else it starts 1.3
    mouth widths above the lips."""
    v = np.asarray(template, np.float64)
    face = np.asarray(face_mask, bool)
    lm = {k: v[i] for k, i in landmarks.items()}
    centre = (lm["upper_lip"] + lm["lower_lip"] + lm["mouth_left"] + lm["mouth_right"]) / 4
    width = float(np.linalg.norm(lm["mouth_left"] - lm["mouth_right"]))
    dx, dz = (v[:, 0] - centre[0]) / (MOUTH_HALF_WIDTH * width), (v[:, 2] - centre[2]) / (MOUTH_HALF_HEIGHT * width)
    mouth = dx ** 2 + dz ** 2 <= 1.0
    eyes = [lm[k] for k in lm if k.startswith(("eye_", "brow_"))]
    if eyes:
        pts = np.array(eyes)
        lids = [lm[k] for k in lm if k.endswith("_lower") and k.startswith("eye_")]
        low = min(p[2] for p in lids) if lids else pts[:, 2].min()
        top = pts[:, 2].max()
        margin = 0.35 * (top - low)
        band = (v[:, 2] >= low - margin) & (v[:, 2] <= top + margin) & \
            (np.abs(v[:, 0] - centre[0]) <= np.abs(pts[:, 0] - centre[0]).max() + margin)
    else:
        band = v[:, 2] >= centre[2] + 1.3 * width
    out = np.zeros(v.shape[0], np.int8)
    out[face] = 3
    out[face & band] = 2
    out[face & mouth] = 1
    return out


@numba.njit(cache=True)
def _raster(uv, z, triangles, labels, height, width, out_label, out_depth):  # pragma: no cover - numba
    for t in range(triangles.shape[0]):
        a, b, c = triangles[t, 0], triangles[t, 1], triangles[t, 2]
        if z[a] <= 0 or z[b] <= 0 or z[c] <= 0:
            continue
        x0, y0, x1, y1, x2, y2 = uv[a, 0], uv[a, 1], uv[b, 0], uv[b, 1], uv[c, 0], uv[c, 1]
        area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        if abs(area) < 1e-12:
            continue
        lo_x = max(int(np.floor(min(x0, x1, x2))), 0)
        hi_x = min(int(np.ceil(max(x0, x1, x2))), width - 1)
        lo_y = max(int(np.floor(min(y0, y1, y2))), 0)
        hi_y = min(int(np.ceil(max(y0, y1, y2))), height - 1)
        for py in range(lo_y, hi_y + 1):
            for px in range(lo_x, hi_x + 1):
                sx, sy = px + 0.5, py + 0.5                      # pixel centres, as the rasteriser
                w0 = ((x1 - sx) * (y2 - sy) - (x2 - sx) * (y1 - sy)) / area
                w1 = ((x2 - sx) * (y0 - sy) - (x0 - sx) * (y2 - sy)) / area
                w2 = 1.0 - w0 - w1
                if w0 < 0 or w1 < 0 or w2 < 0:
                    continue
                d = w0 * z[a] + w1 * z[b] + w2 * z[c]
                if d < out_depth[py, px]:
                    out_depth[py, px] = d
                    k = a if (w0 >= w1 and w0 >= w2) else (b if w1 >= w2 else c)
                    out_label[py, px] = labels[k]


def region_map(vertices: np.ndarray, triangles: np.ndarray, labels: np.ndarray, camera: Camera) -> np.ndarray:
    """(H, W) int8 region of each pixel: the region of the nearest vertex of the frontmost face
    triangle there (0 where no triangle). vertices (V, 3) metres in the camera's world."""
    K = camera.K.double().numpy()
    w2c = camera.world_to_camera.double().numpy()
    p = np.asarray(vertices, np.float64) @ w2c[:3, :3].T + w2c[:3, 3]
    z = p[:, 2]
    uv = (p @ K.T)[:, :2] / np.where(np.abs(z) > 1e-9, z, 1e-9)[:, None]
    out = np.zeros((camera.height, camera.width), np.int8)
    depth = np.full((camera.height, camera.width), np.inf)
    tris = np.ascontiguousarray(triangles, np.int64)
    _raster(np.ascontiguousarray(uv), np.ascontiguousarray(z), tris, np.asarray(labels, np.int8),
            camera.height, camera.width, out, depth)
    return out


def image_masks(regions: np.ndarray, alpha: np.ndarray) -> dict[str, np.ndarray]:
    """(H, W) bool masks per image region, given the pixel region map and the ground truth's
    alpha (outside_face: covered by the subject, not by the face mesh)."""
    masks = {name: regions == i + 1 for i, name in enumerate(REGIONS)}
    masks["outside_face"] = (regions == 0) & (np.asarray(alpha) > 0.5)
    masks["all"] = np.ones(regions.shape, bool)
    return masks
