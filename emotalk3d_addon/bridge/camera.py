"""Blender cameras and 3D views as pinhole cameras in OpenCV axes (x right, y down, z forward).

Blender's camera looks down its local −Z with +Y up; OpenCV's looks down +Z with −Y up,
so the camera's world matrix is right-multiplied by diag(1, −1, −1). Intrinsics follow
Blender's own sensor-fit rules (lens, sensor width/height, AUTO/HORIZONTAL/VERTICAL fit,
shift, resolution percentage, pixel aspect); pixel centres sit at +0.5, so a centred
camera has cx = width / 2. The pure functions take numbers, not bpy objects, and are
checked against Blender's own projection in the tests.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backend.protocol.messages import CameraSpec

BLENDER_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass(frozen=True)
class PinholeCamera:
    """K (3, 3) pixels, world_to_camera (4, 4) OpenCV axes, image size in pixels, clip in metres."""

    K: np.ndarray
    world_to_camera: np.ndarray
    width: int
    height: int
    near: float
    far: float

    def spec(self) -> CameraSpec:
        """The camera as the worker's ``render_frame`` takes it."""
        return CameraSpec(tuple(float(v) for v in self.K.ravel()),
                          tuple(float(v) for v in self.world_to_camera.ravel()),
                          int(self.width), int(self.height), float(self.near), float(self.far))

    def to_params(self) -> dict:
        """``spec``'s wire form."""
        return self.spec().to_dict()

    def project(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) pixel coordinates (x right, y down from the top-left corner) of (N, 3) world points."""
        p = np.asarray(points, np.float64) @ self.world_to_camera[:3, :3].T + self.world_to_camera[:3, 3]
        uv = p @ self.K.T
        return uv[:, :2] / uv[:, 2:3]


def render_size(resolution_x: int, resolution_y: int, percentage: int) -> tuple[int, int]:
    """Rendered image size in pixels, as Blender computes it from the resolution percentage."""
    return max(1, int(resolution_x * percentage / 100)), max(1, int(resolution_y * percentage / 100))


def intrinsics(lens_mm: float, sensor_fit: str, sensor_width_mm: float, sensor_height_mm: float,
               shift_x: float, shift_y: float, width: int, height: int,
               pixel_aspect_x: float = 1.0, pixel_aspect_y: float = 1.0) -> np.ndarray:
    """(3, 3) K for a perspective Blender camera rendering ``width`` x ``height`` pixels."""
    if lens_mm <= 0:
        raise ValueError(f"the camera's focal length must be positive, got {lens_mm} mm")
    aspect = pixel_aspect_y / pixel_aspect_x
    fit = sensor_fit
    if fit == 'AUTO':
        fit = 'HORIZONTAL' if width * pixel_aspect_x >= height * pixel_aspect_y else 'VERTICAL'
        sensor = sensor_width_mm
    else:
        sensor = sensor_width_mm if fit == 'HORIZONTAL' else sensor_height_mm
    view_pixels = width if fit == 'HORIZONTAL' else aspect * height
    fx = lens_mm / sensor * view_pixels
    fy = fx / aspect
    cx = width / 2.0 - shift_x * view_pixels
    cy = height / 2.0 + shift_y * view_pixels / aspect
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def world_to_camera(camera_matrix_world) -> np.ndarray:
    """(4, 4) world → OpenCV camera transform from a Blender camera's world matrix (scale removed)."""
    M = np.asarray(camera_matrix_world, np.float64).reshape(4, 4)
    R = M[:3, :3]
    U, _, Vt = np.linalg.svd(R)
    R = U @ Vt                                     # drop any scale on the camera object
    rigid = np.eye(4)
    rigid[:3, :3] = R
    rigid[:3, 3] = M[:3, 3]
    return BLENDER_TO_OPENCV @ np.linalg.inv(rigid)


def from_blender_camera(camera_object, scene) -> PinholeCamera:
    """The scene camera ``camera_object`` as rendered by ``scene`` (resolution, percentage, aspect).

    ValueError (an artist-readable message) for cameras this renderer cannot draw.
    """
    cam = camera_object.data
    if camera_object.type != 'CAMERA':
        raise ValueError(f"the active camera {camera_object.name!r} is not a camera object")
    if cam.type != 'PERSP':
        raise ValueError(f"camera {camera_object.name!r} is {cam.type.lower()}: EmoTalk3D Gaussians render "
                         "through perspective cameras only")
    r = scene.render
    width, height = render_size(r.resolution_x, r.resolution_y, r.resolution_percentage)
    K = intrinsics(cam.lens, cam.sensor_fit, cam.sensor_width, cam.sensor_height, cam.shift_x, cam.shift_y,
                   width, height, r.pixel_aspect_x, r.pixel_aspect_y)
    matrix = np.array(camera_object.matrix_world, np.float64)
    return PinholeCamera(K, world_to_camera(matrix), width, height, float(cam.clip_start), float(cam.clip_end))


def from_view_matrices(view_matrix, window_matrix, width: int, height: int,
                       near: float = 0.01, far: float = 1e4) -> PinholeCamera:
    """A 3D viewport's perspective view (``region_data.view_matrix`` and ``window_matrix``)
    as a pinhole camera drawing ``width`` x ``height`` pixels."""
    V = np.asarray(view_matrix, np.float64).reshape(4, 4)
    P = np.asarray(window_matrix, np.float64).reshape(4, 4)
    if abs(P[3, 3]) > 1e-9:
        raise ValueError("orthographic views are not drawn; switch the viewport to perspective")
    # OpenGL: x_ndc = (P00 x + P02 z) / -z, pixel u = (x_ndc + 1) W / 2, and y flips (rows go down)
    fx = P[0, 0] * width / 2.0
    fy = P[1, 1] * height / 2.0
    cx = (1.0 - P[0, 2]) * width / 2.0
    cy = (1.0 + P[1, 2]) * height / 2.0
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    return PinholeCamera(K, BLENDER_TO_OPENCV @ V, int(width), int(height), near, far)


__all__ = ["PinholeCamera", "intrinsics", "render_size", "world_to_camera", "from_blender_camera",
           "from_view_matrices"]
