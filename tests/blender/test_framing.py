"""Frame Head and the first placement of a new head, on real bpy 5.0 with the shipped demo
subject's mesh and Gaussians. Points are projected with Blender's own camera matrix
(``calc_matrix_camera``), not with the extension's pinhole."""
from __future__ import annotations

import math

import numpy as np
import pytest

from .conftest import bpy

from emotalk3d_addon.bridge import framing, mesh, placement, subjects

DEMO = subjects.BUNDLED_DIR / "demo"


def _demo_head(scene, location=(0.0, 0.0, 0.0)):
    from safetensors.numpy import load_file

    g = load_file(str(DEMO / "geometry.safetensors"))
    t = g["template_vertices"]
    head = mesh.build_head("demo", scene.collection, location, t, g["triangles"], g["uvs"],
                           np.zeros((1,) + t.shape, np.float32))
    head.emotalk3d_head.subject, head.emotalk3d_head.fingerprint = "demo", "test"
    return head


def _gaussians() -> np.ndarray:
    """(N, 3) centres of the demo's canonical Gaussians at least 10 % opaque (read here on its own)."""
    raw = (DEMO / "canonical.ply").read_bytes()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    lines = raw[:end].decode().splitlines()
    names = [l.split()[2] for l in lines if l.startswith("property float")]
    assert len(names) == sum(l.startswith("property") for l in lines)
    count = int(next(l for l in lines if l.startswith("element vertex")).split()[2])
    rows = np.frombuffer(raw[end:], "<f4", count=count * len(names)).reshape(count, len(names))
    opacity = 1 / (1 + np.exp(-rows[:, names.index("opacity")].astype(np.float64)))
    return rows[opacity > 0.1][:, :3].astype(np.float64)


def _head_points(head) -> np.ndarray:
    """World points that must be in the frame: every vertex, and the Gaussians from the chin up."""
    v = np.array([tuple(x.co) for x in head.data.vertices])
    g = _gaussians()
    local = np.concatenate([v, g[g[:, 2] >= v[:, 2].min()]])
    M = np.array(head.matrix_world)
    return local @ M[:3, :3].T + M[:3, 3]


def _blender_frame(scene, cam, points) -> np.ndarray:
    """(N, 2) positions as fractions of the frame (x right, y down from the top-left), by Blender's matrices."""
    r = scene.render
    w = int(r.resolution_x * r.resolution_percentage / 100)
    h = int(r.resolution_y * r.resolution_percentage / 100)
    P = np.array(cam.calc_matrix_camera(bpy.context.evaluated_depsgraph_get(), x=w, y=h,
                                        scale_x=r.pixel_aspect_x, scale_y=r.pixel_aspect_y))
    V = np.array(cam.matrix_world.inverted())
    clip = np.c_[points, np.ones(len(points))] @ (P @ V).T
    assert (clip[:, 3] > 0).all()                                   # all in front of the camera
    ndc = clip[:, :2] / clip[:, 3:4]
    return np.c_[(ndc[:, 0] + 1) / 2, (1 - ndc[:, 1]) / 2]


RESOLUTIONS = {"16:9": (1920, 1080), "9:16": (1080, 1920), "1:1": (1000, 1000), "2.39:1": (2390, 1000)}


def test_frame_head_fits_the_whole_head_with_headroom_at_every_aspect_and_fit(scene):
    head = _demo_head(scene)
    scene.emotalk3d.head = head
    assert scene.camera is None
    assert bpy.ops.emotalk3d.frame_head() == {'FINISHED'}
    cam = scene.camera
    assert cam is not None and cam.name in scene.objects and cam.data.type == 'PERSP'   # made one
    cam.data.sensor_width, cam.data.sensor_height = 36.0, 24.0
    cam.data.shift_y = 0.05                                         # an artist's shift is honoured
    points = _head_points(head)
    for label, (w, h) in RESOLUTIONS.items():
        for fit in ('AUTO', 'HORIZONTAL', 'VERTICAL'):
            scene.render.resolution_x, scene.render.resolution_y = w, h
            cam.data.sensor_fit = fit
            assert bpy.ops.emotalk3d.frame_head() == {'FINISHED'}
            bpy.context.view_layer.update()
            assert bpy.data.objects.get("EmoTalk3D Camera.001") is None       # no second camera
            uv = _blender_frame(scene, cam, points)
            where = f"{label} {fit}"
            tol = 2e-3
            assert uv[:, 1].min() >= framing.HEADROOM - tol, where          # room above the hair
            assert uv[:, 1].max() <= 1 - framing.FOOTROOM + tol, where
            assert uv[:, 0].min() >= framing.SIDE - tol and uv[:, 0].max() <= 1 - framing.SIDE + tol, where
            # as close as the margins allow: the head touches them on one axis
            tight_v = abs(uv[:, 1].min() - framing.HEADROOM) < tol and abs(uv[:, 1].max() - 1 + framing.FOOTROOM) < tol
            tight_h = abs(uv[:, 0].min() - framing.SIDE) < tol and abs(uv[:, 0].max() - 1 + framing.SIDE) < tol
            assert tight_v or tight_h, where
            assert abs(uv[:, 1].min() - framing.HEADROOM) < tol, where      # the hair at the headroom line
            if w > h:
                assert uv[:, 1].max() - uv[:, 1].min() > 0.5, where        # a close-up, not a speck
            # level: the camera looks straight at the face (-Y), its up is the head's up
            view = np.array(cam.matrix_world.to_3x3().col[2])
            assert view @ np.array([0.0, -1.0, 0.0]) == pytest.approx(1.0, abs=1e-6)


def test_frame_head_on_an_orthographic_camera_says_so_and_changes_nothing(scene):
    head = _demo_head(scene)
    scene.emotalk3d.head = head
    cam = bpy.data.objects.new("Ortho", bpy.data.cameras.new("Ortho"))
    scene.collection.objects.link(cam)
    cam.data.type = 'ORTHO'
    scene.camera = cam
    before = tuple(cam.matrix_world.translation)
    with pytest.raises(RuntimeError, match="perspective"):
        bpy.ops.emotalk3d.frame_head()
    assert tuple(cam.matrix_world.translation) == before and len(bpy.data.cameras) == 1


def _world_box(points):
    return points.min(axis=0), points.max(axis=0)


def test_a_new_head_in_the_factory_scene_lands_clear_of_the_cube_in_view_and_facing_the_camera(addon):
    bpy.ops.wm.read_homefile(use_empty=False, use_factory_startup=True)
    scene = bpy.context.scene
    cube, cam = scene.objects["Cube"], scene.camera
    cube_before, cam_before = cube.matrix_world.copy(), cam.matrix_world.copy()
    head = _demo_head(scene, scene.cursor.location)                # inside the Cube
    found = placement.place_new_head(head, scene)
    bpy.context.view_layer.update()
    assert found.moved_from == ("Cube",)
    assert cube.matrix_world == cube_before and cam.matrix_world == cam_before     # nothing else moved
    assert head.location.z == pytest.approx(scene.cursor.location.z)                # level with the cursor
    # clear of the Cube by half a head, counting the Gaussians (hair, neck, shoulders)
    g = _gaussians()
    local = np.concatenate([np.array([tuple(v.co) for v in head.data.vertices]), g])
    M = np.array(head.matrix_world)
    lo, hi = _world_box(local @ M[:3, :3].T + M[:3, 3])
    size = (local.max(0) - local.min(0)).max()
    gap = np.maximum(np.array([-1.0, -1.0, -1.0]) - hi, lo - np.array([1.0, 1.0, 1.0])).max()
    assert gap >= placement.CLEARANCE * size - 1e-6
    # wholly in the default camera's frame, and the camera sees the face, not the Cube
    uv = _blender_frame(scene, cam, local @ M[:3, :3].T + M[:3, 3])
    assert (uv > 0).all() and (uv < 1).all()
    depsgraph = bpy.context.evaluated_depsgraph_get()
    origin = cam.matrix_world.translation
    for target in (np.array(tuple(p.center)) @ M[:3, :3].T + M[:3, 3] for p in list(head.data.polygons)[::300]):
        direction = (mathutils_vector(target) - origin).normalized()
        hit, _, _, _, ob, _ = scene.ray_cast(depsgraph, origin, direction)
        assert hit and ob.name == head.name
    # facing the camera: the face's -Y points at it (about +Z only)
    face = np.array(head.matrix_world.to_3x3().col[1]) * -1
    to_cam = np.array(origin - head.matrix_world.translation)
    to_cam[2] = 0
    assert face @ (to_cam / np.linalg.norm(to_cam)) == pytest.approx(1.0, abs=1e-6)
    assert head.rotation_euler.x == 0 and head.rotation_euler.y == 0


def mathutils_vector(a):
    from mathutils import Vector

    return Vector(tuple(float(x) for x in a))


def test_a_new_head_at_a_clear_cursor_stays_there_and_without_a_camera_is_not_turned(scene):
    bpy.ops.mesh.primitive_cube_add(size=2.0, location=(0.0, 0.0, 0.0))
    scene.cursor.location = (4.0, 1.0, 0.5)
    head = _demo_head(scene, scene.cursor.location)
    found = placement.place_new_head(head, scene)
    assert found.moved_from == () and tuple(head.location) == pytest.approx((4.0, 1.0, 0.5))
    assert tuple(head.rotation_euler) == (0.0, 0.0, 0.0)
    # at the Cube, without a camera: moved along X (the nearer side), clear, still facing -Y
    scene.cursor.location = (0.0, 0.0, 0.0)
    bpy.context.view_layer.update()
    other = _demo_head(scene, scene.cursor.location)
    found = placement.place_new_head(other, scene)
    assert found.moved_from == ("Cube",) and abs(other.location.x) > 1.0
    assert other.location.y == 0.0 and other.location.z == 0.0 and other.rotation_euler.z == 0.0


def test_a_room_around_the_camera_does_not_push_the_head_out(scene):
    bpy.ops.mesh.primitive_cube_add(size=20.0, location=(0.0, 0.0, 0.0))           # the room
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    scene.collection.objects.link(cam)
    cam.location, cam.rotation_euler = (0.0, -3.0, 0.0), (math.pi / 2, 0.0, 0.0)
    scene.camera = cam
    bpy.context.view_layer.update()
    head = _demo_head(scene, (0.3, 0.0, 0.0))
    found = placement.place_new_head(head, scene)
    assert found.moved_from == () and tuple(head.location) == pytest.approx((0.3, 0.0, 0.0))
    assert abs(head.rotation_euler.z) > 0.05                        # turned to the camera at (0, -3)


def test_the_head_extent_reads_the_centres_the_backend_reads():
    """Blender's side reads the canonical PLY with the backend's own (torch-free) parser: the
    centres it keeps are exactly read_ply's at least 10 % opaque."""
    import torch

    from emotalk3d_addon.backend.appearance.ply import read_ply
    from emotalk3d_addon.bridge import head_extent

    gs = read_ply(DEMO / "canonical.ply")
    want = gs.means[torch.sigmoid(gs.opacity_logits) > head_extent.MIN_OPACITY].numpy()
    got = head_extent.gaussian_centres(DEMO)
    assert got is not None and got.shape == want.shape and len(got) > 1000
    np.testing.assert_array_equal(got, want)
