"""Pinhole camera in OpenCV axes (x right, y down, z forward) and helpers to build one."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Camera:
    """A pinhole camera.

    ``K`` is the (3, 3) intrinsic matrix in pixels (pixel centres at +0.5, so a centred
    camera has ``cx = width / 2``); ``world_to_camera`` the (4, 4) rigid transform from world
    to OpenCV camera axes. Gaussians with camera-space z < ``near`` or > ``far`` are culled.
    """

    K: torch.Tensor
    world_to_camera: torch.Tensor
    width: int
    height: int
    near: float = 0.01
    far: float = 1e10

    def __post_init__(self) -> None:
        if tuple(self.K.shape) != (3, 3):
            raise ValueError(f"Camera.K must be (3, 3), got {tuple(self.K.shape)}")
        if tuple(self.world_to_camera.shape) != (4, 4):
            raise ValueError(f"Camera.world_to_camera must be (4, 4), got {tuple(self.world_to_camera.shape)}")
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise ValueError(f"Camera size must be positive, got {self.width}x{self.height}")
        if not 0 < self.near < self.far:
            raise ValueError(f"need 0 < near < far, got near={self.near}, far={self.far}")

    @property
    def center(self) -> torch.Tensor:
        """Camera centre in world coordinates, (3,)."""
        R = self.world_to_camera[:3, :3]
        t = self.world_to_camera[:3, 3]
        return -(R.transpose(0, 1) @ t)

    def to(self, device=None, dtype=None) -> "Camera":
        """The same camera with K and world_to_camera moved/cast."""
        return Camera(self.K.to(device=device, dtype=dtype), self.world_to_camera.to(device=device, dtype=dtype),
                      self.width, self.height, self.near, self.far)


def intrinsics(width: int, height: int, fov_x_deg: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Centred pinhole K with square pixels and horizontal field of view ``fov_x_deg``."""
    if not 0.0 < fov_x_deg < 180.0:
        raise ValueError(f"fov_x_deg must be in (0, 180), got {fov_x_deg}")
    f = 0.5 * width / math.tan(math.radians(fov_x_deg) / 2.0)
    return torch.tensor([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]], dtype=dtype)


def look_at(eye, target, up=(0.0, 1.0, 0.0), dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """World-to-camera (4, 4) in OpenCV axes for a camera at ``eye`` looking at ``target``.

    ``up`` is the world direction that appears upwards in the image (camera -y).
    """
    eye = torch.as_tensor(eye, dtype=torch.float64).reshape(3)
    target = torch.as_tensor(target, dtype=torch.float64).reshape(3)
    up = torch.as_tensor(up, dtype=torch.float64).reshape(3)
    forward = target - eye
    if float(forward.norm()) == 0.0:
        raise ValueError("look_at: eye and target coincide")
    forward = forward / forward.norm()
    right = torch.linalg.cross(forward, up)
    if float(right.norm()) < 1e-12:
        raise ValueError("look_at: up is parallel to the viewing direction")
    right = right / right.norm()
    down = torch.linalg.cross(forward, right)
    R = torch.stack([right, down, forward])  # rows: camera axes in world coordinates
    M = torch.eye(4, dtype=torch.float64)
    M[:3, :3] = R
    M[:3, 3] = -(R @ eye)
    return M.to(dtype)
