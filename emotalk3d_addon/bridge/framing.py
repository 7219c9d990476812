"""A portrait camera for a head: every point inside the frame, with room above the hair.

The camera looks straight at the face (along the head's -forward, level with its up), and
is moved sideways, up or down and back until every point projects inside the frame less
its margins (fractions of the frame's width and height): ``HEADROOM`` above, ``FOOTROOM``
below (the neck runs out of the frame there), ``SIDE`` left and right. The frame is the
camera's real one (lens, sensor size and fit, shift, output size, pixel aspect: the pinhole
``bridge.camera.intrinsics`` gives), so it holds at any aspect ratio. When the width limits
(portrait frames), the head keeps its headroom and the frame's lower part shows the neck.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import camera as camera_mod

HEADROOM = 0.10
FOOTROOM = 0.15
SIDE = 0.08
MIN_NEAR = 0.02          # metres between the camera and the nearest point, at least


@dataclass(frozen=True)
class Framing:
    """The camera's world matrix (4, 4; Blender axes: looks down -Z, +Y up), its distance
    from the points' centre along the view (metres) and the nearest point's depth (metres)."""

    matrix_world: np.ndarray
    distance: float
    nearest: float
    farthest: float


def frame_tangents(K: np.ndarray, width: int, height: int) -> tuple[float, float, float, float]:
    """(left, right, bottom, top): the frame's edges as x/z and up/z in front of the camera."""
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    return -cx / fx, (width - cx) / fx, -(height - cy) / fy, cy / fy


def _axis_fit(across: np.ndarray, depth_in: np.ndarray, low: float, high: float) -> tuple[float, float, float]:
    """One image axis: low <= (a - o) / (D - f) <= high for every point (a: its coordinate
    along the axis, f: toward the camera, o: the camera's offset, D: its distance) holds for
    D >= the returned D_min and o in [A - high·D, B - low·D]; returns (D_min, A, B)."""
    A = float(np.max(across + high * depth_in))
    B = float(np.min(across + low * depth_in))
    return (A - B) / (high - low), A, B


def fit(points: np.ndarray, forward, up, K: np.ndarray, width: int, height: int,
        headroom: float = HEADROOM, footroom: float = FOOTROOM, side: float = SIDE) -> Framing:
    """The camera for (N, 3) world ``points`` seen from ``forward`` (the way the face looks)
    with ``up`` up, through intrinsics ``K`` for a ``width`` x ``height`` image."""
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    if not len(pts):
        raise ValueError("nothing to frame: the head has no vertices")
    f = np.asarray(forward, np.float64)
    f = f / np.linalg.norm(f)
    u = np.asarray(up, np.float64)
    u = u - f * (u @ f)
    if np.linalg.norm(u) < 1e-6:                          # looking straight up or down: any up will do
        u = np.cross(f, [1.0, 0.0, 0.0] if abs(f[0]) < 0.9 else [0.0, 1.0, 0.0])
    u = u / np.linalg.norm(u)
    r = np.cross(u, f)                                    # the camera's right (Blender: X = Y x Z)
    left, right, bottom, top = frame_tangents(K, width, height)
    w, h = right - left, top - bottom
    left, right = left + side * w, right - side * w
    bottom, top = bottom + footroom * h, top - headroom * h
    if right <= left or top <= bottom:
        raise ValueError("the margins leave no room in the frame")
    centre = (pts.min(axis=0) + pts.max(axis=0)) / 2
    rel = pts - centre
    x, y, z = rel @ r, rel @ u, rel @ f
    dx, ax, bx = _axis_fit(x, z, left, right)
    dy, ay, by = _axis_fit(y, z, bottom, top)
    distance = max(dx, dy, float(z.max()) + MIN_NEAR)
    off_x = ((ax - right * distance) + (bx - left * distance)) / 2     # centred across
    off_y = ay - top * distance                                        # the hair at the headroom line
    location = centre + r * off_x + u * off_y + f * distance
    M = np.eye(4)
    M[:3, 0], M[:3, 1], M[:3, 2], M[:3, 3] = r, u, f, location
    depth = distance - z
    return Framing(M, float(distance), float(depth.min()), float(depth.max()))


def intrinsics_for(camera_data, scene) -> tuple[np.ndarray, int, int]:
    """(K, width, height) of a perspective camera as ``scene`` renders it."""
    r = scene.render
    width, height = camera_mod.render_size(r.resolution_x, r.resolution_y, r.resolution_percentage)
    K = camera_mod.intrinsics(camera_data.lens, camera_data.sensor_fit, camera_data.sensor_width,
                              camera_data.sensor_height, camera_data.shift_x, camera_data.shift_y,
                              width, height, r.pixel_aspect_x, r.pixel_aspect_y)
    return K, width, height


__all__ = ["Framing", "fit", "frame_tangents", "intrinsics_for", "HEADROOM", "FOOTROOM", "SIDE"]
