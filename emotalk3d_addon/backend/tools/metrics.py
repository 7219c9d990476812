"""Evaluation metrics of the speech-driven face literature, in millimetres and pixels.

* Lip vertex error (LVE, as in MeshTalk/FaceFormer): per frame, the largest Euclidean
  error over the lip vertices; averaged over frames.
* Landmark distance (LMD): mean 2D distance between predicted and ground-truth landmarks
  in the rendered image, pixels.
"""
from __future__ import annotations

import numpy as np

MM_PER_M = 1000.0
LIP_MARGIN_M = 0.006   # lip region: mouth ellipse grown by 6 mm around the lip landmarks


def lip_vertices(template: np.ndarray, landmarks: dict[str, int], margin: float = LIP_MARGIN_M) -> np.ndarray:
    """Indices of the lip region of a (V, 3) template (metres, face toward -Y).

    The region is the ellipse in the frontal (x, z) plane through the mouth corners and the
    upper/lower lip points, grown by ``margin``, restricted to the front half of the face.
    """
    left, right = template[landmarks["mouth_left"]], template[landmarks["mouth_right"]]
    upper, lower = template[landmarks["upper_lip"]], template[landmarks["lower_lip"]]
    centre = (left + right + upper + lower) / 4
    half_width = abs(left[0] - right[0]) / 2 + margin
    half_height = abs(upper[2] - lower[2]) / 2 + margin
    d = template - centre
    inside = (d[:, 0] / half_width) ** 2 + (d[:, 2] / half_height) ** 2 <= 1.0
    in_front = template[:, 1] <= centre[1] + 2 * margin
    idx = np.flatnonzero(inside & in_front)
    if idx.size == 0:
        raise ValueError("no vertices in the lip region; check the lip landmarks")
    return idx


def lip_vertex_error(predicted: np.ndarray, truth: np.ndarray, lips: np.ndarray) -> float:
    """Mean over frames of the max lip-vertex error, mm. predicted/truth: (F, V, 3) metres."""
    frames = min(len(predicted), len(truth))
    err = np.linalg.norm(predicted[:frames, lips] - truth[:frames, lips], axis=-1)
    return float(err.max(axis=1).mean() * MM_PER_M)


def landmark_distance(predicted_px: np.ndarray, truth_px: np.ndarray) -> float:
    """Mean 2D distance between (..., L, 2) landmark positions, pixels."""
    return float(np.linalg.norm(predicted_px - truth_px, axis=-1).mean())


def project(points: np.ndarray, K: np.ndarray, world_to_camera: np.ndarray) -> np.ndarray:
    """(..., 3) world points -> (..., 2) pixel positions (OpenCV camera, pixel centres at +0.5)."""
    cam = points @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]
    uv = cam @ K.T
    return uv[..., :2] / uv[..., 2:3]
