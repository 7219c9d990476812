"""Calibrated cameras on a 180 degree arc at head height (OpenCV conventions).

K = [[f, 0, cx], [0, f, cy], [0, 0, 1]] with pixel (i, j) covering [i, i+1) x [j, j+1)
(so the image centre is (W/2, H/2)); world_to_camera maps subject space (metres, +Z up,
face toward -Y) to camera axes x right, y down, z forward. cam00 looks from the
subject's right (-X), the middle camera from the front, the last from the subject's left.
"""
from __future__ import annotations

import numpy as np

TARGET = np.array([0.0, 0.0, -0.040])     # where the cameras aim: the middle of the face/neck


def look_at(position, target, roll: float = 0.0) -> np.ndarray:
    """4x4 world_to_camera (OpenCV axes) for a camera at ``position`` aiming at ``target``."""
    pos = np.asarray(position, np.float64)
    z = np.asarray(target, np.float64) - pos
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    if roll:
        c, s = np.cos(roll), np.sin(roll)
        x, y = c * x + s * y, -s * x + c * y
    R = np.stack([x, y, z])
    M = np.eye(4)
    M[:3, :3] = R
    M[:3, 3] = -R @ pos
    return M


def arc_cameras(width: int, height: int, count: int = 11, distance: float = 1.0,
                field_m: float = 0.40, seed: int = 0, jitter: bool = True) -> list[dict]:
    """``count`` cameras evenly on a 180 degree arc around the head.

    ``field_m``: the height in metres the image spans at the target's distance.
    With ``jitter`` each camera gets small seeded calibration offsets (position,
    aim, roll, focal length, principal point), as a real rig would.
    """
    rng = np.random.default_rng(seed + 7)
    cams = []
    az = np.linspace(-np.pi / 2, np.pi / 2, count) if count > 1 else np.zeros(1)
    for i, a in enumerate(az):
        j = rng.standard_normal(8) if jitter else np.zeros(8)
        a = a + 0.6 * np.pi / 180 * j[0]
        d = distance * (1 + 0.02 * j[1])
        h = 0.012 * j[2]
        pos = TARGET + np.array([d * np.sin(a), -d * np.cos(a), h + 0.045])
        aim = TARGET + np.array([0.004 * j[3], 0.004 * j[4], 0.004 * j[5]])
        w2c = look_at(pos, aim, roll=0.6 * np.pi / 180 * j[6])
        f = height * d / field_m * (1 + 0.015 * j[7])
        cx = width / 2 + (0.012 * width * rng.standard_normal() if jitter else 0.0)
        cy = height / 2 + (0.012 * height * rng.standard_normal() if jitter else 0.0)
        K = np.array([[f, 0, cx], [0, f, cy], [0, 0, 1.0]])
        cams.append({"name": f"cam{i:02d}", "width": int(width), "height": int(height),
                     "K": K.tolist(), "world_to_camera": w2c.tolist()})
    return cams


def project(cam: dict, points: np.ndarray) -> np.ndarray:
    """(N, 3) subject-space points -> (N, 2) pixel coordinates (OpenCV, centres at +0.5)."""
    K = np.asarray(cam["K"], np.float64)
    M = np.asarray(cam["world_to_camera"], np.float64)
    p = np.asarray(points, np.float64) @ M[:3, :3].T + M[:3, 3]
    uv = p @ K.T
    return uv[:, :2] / uv[:, 2:3]


def camera_centre(cam: dict) -> np.ndarray:
    M = np.asarray(cam["world_to_camera"], np.float64)
    return -M[:3, :3].T @ M[:3, 3]
