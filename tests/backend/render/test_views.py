import math

import pytest
import torch

from emotalk3d_addon.backend.errors import InputError
from emotalk3d_addon.backend.render.views import orbit_camera, parse_view

DEFAULTS = {"target": [0.0, 0.01, 0.02], "distance": 1.5, "fov_x_deg": 30.0, "width": 64, "height": 48}


def test_front_camera_looks_at_the_face_from_minus_y():
    cam = orbit_camera(DEFAULTS, "front")
    torch.testing.assert_close(cam.center, torch.tensor([0.0, 0.01 - 1.5, 0.02]), atol=1e-5, rtol=0)
    target = torch.tensor([0.0, 0.01, 0.02, 1.0])
    x, y, z = (cam.world_to_camera @ target)[:3]
    assert abs(x) < 1e-5 and abs(y) < 1e-5 and z == pytest.approx(1.5)
    up = cam.world_to_camera[:3, :3] @ torch.tensor([0.0, 0.0, 1.0])
    assert up[1] < -0.99          # world +Z is image up (OpenCV -y)
    assert (cam.width, cam.height) == (64, 48)
    assert cam.K[0, 0] == pytest.approx(32 / math.tan(math.radians(15)))


def test_named_views_and_yaw():
    assert parse_view("left") == 45 and parse_view("right") == -45 and parse_view("yaw:-12.5") == -12.5
    left = orbit_camera(DEFAULTS, "left").center
    assert left[0] > 0 and left[1] < 0.01                # the subject's left is +X
    side = orbit_camera(DEFAULTS, "yaw:90", 32, 32)
    torch.testing.assert_close(side.center, torch.tensor([1.5, 0.01, 0.02]), atol=1e-5, rtol=0)
    assert side.width == 32
    for bad in ("top", "yaw:", "yaw:abc", "yaw:nan"):
        with pytest.raises(InputError):
            parse_view(bad)
    with pytest.raises(InputError):
        orbit_camera(DEFAULTS, "front", 0, 10)
