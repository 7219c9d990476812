"""Blender cameras and viewports as OpenCV pinhole cameras, checked against Blender's own projection."""
from __future__ import annotations

import math

import numpy as np
import pytest

from .conftest import bpy

from emotalk3d_addon.bridge import camera as camera_mod


def _camera(scene, lens=50.0, fit='AUTO', shift=(0.0, 0.0), location=(0.3, -2.0, 0.4),
            rotation=(math.radians(80), 0.0, math.radians(10))):
    data = bpy.data.cameras.new("Cam")
    data.lens, data.sensor_fit = lens, fit
    data.sensor_width, data.sensor_height = 36.0, 24.0
    data.shift_x, data.shift_y = shift
    ob = bpy.data.objects.new("Cam", data)
    scene.collection.objects.link(ob)
    ob.location, ob.rotation_euler = location, rotation
    scene.camera = ob
    bpy.context.view_layer.update()
    return ob


def _blender_pixels(scene, cam, points, width, height) -> np.ndarray:
    """Pixel coordinates (x right, y down) by Blender's world_to_camera_view."""
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    out = []
    for p in points:
        v = world_to_camera_view(scene, cam, Vector(p))
        out.append((v.x * width, (1.0 - v.y) * height))
    return np.array(out)


CASES = [
    dict(res=(320, 240), pct=100, aspect=(1, 1), fit='AUTO', shift=(0.0, 0.0), lens=50.0),
    dict(res=(240, 320), pct=100, aspect=(1, 1), fit='AUTO', shift=(0.1, -0.05), lens=35.0),
    dict(res=(400, 200), pct=50, aspect=(1, 1), fit='VERTICAL', shift=(0.0, 0.2), lens=85.0),
    dict(res=(300, 300), pct=100, aspect=(2, 1), fit='HORIZONTAL', shift=(-0.15, 0.0), lens=24.0),
    dict(res=(320, 180), pct=75, aspect=(1, 1.5), fit='AUTO', shift=(0.05, 0.05), lens=60.0),
]


@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_intrinsics_project_like_blender(scene, case):
    r = scene.render
    r.resolution_x, r.resolution_y = case["res"]
    r.resolution_percentage = case["pct"]
    r.pixel_aspect_x, r.pixel_aspect_y = case["aspect"]
    cam = _camera(scene, lens=case["lens"], fit=case["fit"], shift=case["shift"])
    pin = camera_mod.from_blender_camera(cam, scene)
    assert (pin.width, pin.height) == camera_mod.render_size(*case["res"], case["pct"])
    rng = np.random.default_rng(0)
    points = rng.uniform(-0.5, 0.5, (40, 3)) + np.array([0.0, 0.0, 0.3])
    ours = pin.project(points)
    theirs = _blender_pixels(scene, cam, points, pin.width, pin.height)
    np.testing.assert_allclose(ours, theirs, atol=1e-3 * max(pin.width, pin.height))
    # in front of the camera means positive OpenCV z
    cam_z = points @ pin.world_to_camera[2, :3] + pin.world_to_camera[2, 3]
    assert (cam_z > 0).all()


def test_world_to_camera_is_rigid_and_drops_camera_scale(scene):
    cam = _camera(scene)
    reference = camera_mod.world_to_camera(np.array(cam.matrix_world))
    cam.scale = (2.0, 2.0, 2.0)
    bpy.context.view_layer.update()
    scaled = camera_mod.world_to_camera(np.array(cam.matrix_world))
    np.testing.assert_allclose(scaled, reference, atol=1e-6)
    R = reference[:3, :3]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-9)
    assert np.linalg.det(R) == pytest.approx(1.0)


def test_viewport_matrices_give_the_cameras_pinhole(scene):
    """A camera's own view and projection matrices (what a viewport looking through it
    uses) reproduce the intrinsics of the render camera."""
    r = scene.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = 320, 240, 100
    cam = _camera(scene, shift=(0.05, -0.1))
    depsgraph = bpy.context.evaluated_depsgraph_get()
    window = cam.calc_matrix_camera(depsgraph, x=320, y=240)
    view = cam.matrix_world.inverted()
    viewport = camera_mod.from_view_matrices(view, window, 320, 240)
    render = camera_mod.from_blender_camera(cam, scene)
    np.testing.assert_allclose(viewport.K, render.K, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(viewport.world_to_camera, render.world_to_camera, atol=1e-5)


def test_orthographic_and_non_cameras_are_refused_with_a_message(scene):
    cam = _camera(scene)
    cam.data.type = 'ORTHO'
    with pytest.raises(ValueError, match="perspective"):
        camera_mod.from_blender_camera(cam, scene)
    with pytest.raises(ValueError, match="orthographic"):
        camera_mod.from_view_matrices(np.eye(4), np.diag([1.0, 1.0, -0.1, 1.0]), 10, 10)
