"""Cameras for rendering: named views orbiting the subject, and cameras from requests.

Named views for ``render --view`` are cameras orbiting the subject at head height.

``front`` looks at the face (camera on -Y, subject space); ``yaw:DEG`` turns the camera
about +Z by DEG degrees toward the subject's left (+X); ``left`` = yaw:45, ``right`` = yaw:-45.
Target, distance and field of view come from the subject's default view (its training
cameras), so every view frames the head like the capture did.
"""
from __future__ import annotations

import math

import torch

from ..errors import InputError
from ..protocol.messages import CameraSpec
from ..raster.camera import Camera, intrinsics, look_at

NAMED_YAW = {"front": 0.0, "left": 45.0, "right": -45.0}


def parse_view(view: str) -> float:
    """Yaw in degrees for front | left | right | yaw:DEG."""
    if view in NAMED_YAW:
        return NAMED_YAW[view]
    if view.startswith("yaw:"):
        try:
            yaw = float(view[4:])
        except ValueError:
            yaw = math.nan
        if math.isfinite(yaw):
            return yaw
    raise InputError(f"view must be front, left, right or yaw:DEG, got {view!r}")


def orbit_camera(defaults: dict, view: str = "front", width: int | None = None,
                 height: int | None = None) -> Camera:
    """The camera of a named view; width/height default to the subject's capture size."""
    yaw = math.radians(parse_view(view))
    w = int(defaults["width"] if width is None else width)
    h = int(defaults["height"] if height is None else height)
    if w <= 0 or h <= 0 or w > 16384 or h > 16384:
        raise InputError(f"image size must be 1..16384 pixels, got {w}x{h}")
    tx, ty, tz = defaults["target"]
    d = defaults["distance"]
    eye = (tx + d * math.sin(yaw), ty - d * math.cos(yaw), tz)
    return Camera(intrinsics(w, h, defaults["fov_x_deg"]), look_at(eye, (tx, ty, tz), up=(0.0, 0.0, 1.0)), w, h)


def raster_camera(spec: CameraSpec) -> Camera:
    """The rasteriser's camera for a validated ``protocol.CameraSpec``."""
    K = torch.tensor(spec.K, dtype=torch.float64).reshape(3, 3).float()
    w2c = torch.tensor(spec.world_to_camera, dtype=torch.float64).reshape(4, 4).float()
    return Camera(K, w2c, spec.width, spec.height, spec.near, spec.far)
