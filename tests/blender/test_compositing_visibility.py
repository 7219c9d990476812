"""Set Up Compositing hides the head mesh from the scene's own render (Cycles, Workbench), casts
its shadow only when asked, and Remove Compositing puts its visibility back exactly: real
renders on bpy 5.0 (tiny images; the compositor is switched off for them, so only the main
scene renders and no Gaussian render starts)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from .conftest import bpy

from emotalk3d_addon.bridge import head_visibility, mesh, subjects

SIZE = (64, 36)


def _demo_head(scene):
    from safetensors.numpy import load_file

    g = load_file(str(subjects.BUNDLED_DIR / "demo" / "geometry.safetensors"))
    t = g["template_vertices"]
    head = mesh.build_head("demo", scene.collection, (0.0, 0.0, 0.0), t, g["triangles"], g["uvs"],
                           np.zeros((1,) + t.shape, np.float32))
    head.emotalk3d_head.subject, head.emotalk3d_head.fingerprint = "demo", "test"
    return head


def _shot(scene):
    """The head facing a camera, a wall behind it and a sun casting the head's shadow on the wall."""
    head = _demo_head(scene)
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    scene.collection.objects.link(cam)
    cam.location, cam.rotation_euler = (0.0, -1.2, -0.02), (math.pi / 2, 0.0, 0.0)
    scene.camera = cam
    bpy.ops.mesh.primitive_plane_add(size=3.0, location=(0.0, 0.15, 0.0), rotation=(math.pi / 2, 0.0, 0.0))
    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", 'SUN'))
    scene.collection.objects.link(sun)
    sun.rotation_euler = (math.radians(70), 0.0, math.radians(-20))      # from the front, above, the right
    sun.data.energy = 3.0
    if scene.world is None:
        scene.world = bpy.data.worlds.new("World")
    r = scene.render
    r.resolution_x, r.resolution_y = SIZE
    r.resolution_percentage = 100
    scene.view_settings.view_transform = 'Standard'
    scene.cycles.samples = 4
    scene.cycles.seed = 0
    scene.cycles.use_denoising = False
    scene.cycles.device = 'CPU'
    scene.emotalk3d.head = head
    return head


def _render(scene, tmp_path, name) -> np.ndarray:
    """(H, W, 3) floats in 0..1 of the scene's own render (compositor off)."""
    compositing = scene.render.use_compositing
    scene.render.use_compositing = False
    try:
        bpy.ops.render.render(scene=scene.name)
    finally:
        scene.render.use_compositing = compositing
    path = tmp_path / f"{name}.png"
    scene.render.image_settings.file_format = 'PNG'
    bpy.data.images["Render Result"].save_render(str(path), scene=scene)
    img = bpy.data.images.load(str(path))
    try:
        px = np.empty(img.size[0] * img.size[1] * 4, np.float32)
        img.pixels.foreach_get(px)
    finally:
        bpy.data.images.remove(img)
    return px.reshape(SIZE[1], SIZE[0], 4)[::-1, :, :3]


def _without_head(scene, head, tmp_path, name):
    """The reference: the same scene with the head disabled in renders."""
    before = head.hide_render
    head.hide_render = True
    try:
        return _render(scene, tmp_path, name)
    finally:
        head.hide_render = before


def test_set_up_compositing_hides_the_mesh_and_its_shadow_and_remove_restores(scene, tmp_path):
    head = _shot(scene)
    scene.render.engine = 'CYCLES'
    head.visible_glossy = False                          # an artist's own setting, to be kept
    flags_before = {n: getattr(head, n) for n in head_visibility.RAYS + ("hide_render",)}
    with_mesh = _render(scene, tmp_path, "with_mesh")
    empty = _without_head(scene, head, tmp_path, "empty")
    drawn = np.abs(with_mesh - empty).max(axis=-1) > 0.1
    assert drawn.sum() > 30                              # the mesh and its shadow show before

    # no modifier: disabled in renders (the engine's shape-key mix is the mesh's shape; render ahead works)
    assert bpy.ops.emotalk3d.setup_compositing(mode='ALPHA_OVER') == {'FINISHED'}
    assert head.hide_render and not head.visible_camera and not head.visible_shadow
    np.testing.assert_allclose(_render(scene, tmp_path, "hidden"), empty, atol=1.5 / 255)

    scene.emotalk3d.head_shadow = True                  # the artist asks for the shadow: rays
    assert not head.hide_render and head.visible_shadow and not head.visible_camera
    shadowed = _render(scene, tmp_path, "shadowed")
    assert (empty - shadowed).max() > 0.1                # the shadow on the wall
    assert (shadowed - empty).max() < 1.5 / 255          # nothing brighter: no grey face drawn
    scene.emotalk3d.head_shadow = False

    # a modifier that changes the shape: the mesh stays in the render (rays off), still unseen
    head.modifiers.new("Smooth", 'SMOOTH')
    assert bpy.ops.emotalk3d.setup_compositing(mode='ALPHA_OVER') == {'FINISHED'}       # Update
    assert not head.hide_render and not head.visible_camera and not head.visible_shadow
    np.testing.assert_allclose(_render(scene, tmp_path, "rays_off"), empty, atol=1.5 / 255)
    head.modifiers.remove(head.modifiers["Smooth"])

    assert bpy.ops.emotalk3d.remove_compositing() == {'FINISHED'}
    assert {n: getattr(head, n) for n in flags_before} == flags_before
    assert not head_visibility.is_hidden(head)
    np.testing.assert_allclose(_render(scene, tmp_path, "restored"), with_mesh, atol=1.5 / 255)


def test_workbench_ignores_ray_visibility_so_the_head_is_disabled_in_renders(scene, tmp_path):
    head = _shot(scene)
    head.modifiers.new("Smooth", 'SMOOTH')
    scene.render.engine = 'CYCLES'
    assert bpy.ops.emotalk3d.setup_compositing(mode='ALPHA_OVER') == {'FINISHED'}
    assert head.hide_render is False and head.visible_camera is False
    scene.render.engine = 'BLENDER_WORKBENCH'            # changed after the set-up: the render catches it
    hidden = _render(scene, tmp_path, "wb_hidden")
    assert head.hide_render is True
    empty = _without_head(scene, head, tmp_path, "wb_empty")
    np.testing.assert_allclose(hidden, empty, atol=1.5 / 255)
    assert bpy.ops.emotalk3d.remove_compositing() == {'FINISHED'}
    assert head.hide_render is False and head.visible_camera and head.visible_shadow
    with_mesh = _render(scene, tmp_path, "wb_with_mesh")
    assert (np.abs(with_mesh - empty).max(axis=-1) > 0.1).sum() > 30


def test_a_head_hidden_by_the_artist_stays_hidden_and_a_replaced_head_is_restored(scene):
    head = _shot(scene)
    head.hide_render = True
    scene.render.engine = 'CYCLES'
    assert bpy.ops.emotalk3d.setup_compositing(mode='ALPHA_OVER') == {'FINISHED'}
    other = _demo_head(scene)
    scene.emotalk3d.head = other
    assert bpy.ops.emotalk3d.setup_compositing(mode='ALPHA_OVER') == {'FINISHED'}      # Update
    assert not head_visibility.is_hidden(head) and head.visible_camera and head.hide_render is True
    assert head_visibility.is_hidden(other) and not other.visible_camera and other.hide_render
    assert bpy.ops.emotalk3d.remove_compositing() == {'FINISHED'}
    assert other.visible_camera and not other.hide_render and head.hide_render is True


def test_set_up_compositing_without_a_camera_names_frame_head(scene):
    head = _demo_head(scene)
    scene.emotalk3d.head = head
    with pytest.raises(RuntimeError, match="Frame Head"):
        bpy.ops.emotalk3d.setup_compositing(mode='ALPHA_OVER')
    assert scene.emotalk3d.gaussian_scene is None and not head_visibility.is_hidden(head)
