"""The EmoTalk3D Gaussians render engine, its passes and the compositor set-up, on real bpy
with the shipped demo subject and a real worker (CPU rasteriser)."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .conftest import ADDON, ROOT, bpy

DEMO = ROOT / "emotalk3d_addon" / "subjects" / "demo"
SIZE = 128
LENS = 50.0
CAMERA_OFFSET = (0.08, -0.9, 0.1)      # off-centre, so a mirrored axis would show


def _add_camera(scene, head, offset=CAMERA_OFFSET):
    data = bpy.data.cameras.new("Cam")
    data.lens = LENS
    cam = bpy.data.objects.new("Cam", data)
    scene.collection.objects.link(cam)
    cam.location = (head.location.x + offset[0], head.location.y + offset[1], head.location.z + offset[2])
    cam.rotation_euler = (math.pi / 2, 0.0, 0.0)            # looking along +Y, at the face
    scene.camera = cam
    return cam


@pytest.fixture(scope="module")
def demo_blend(addon, tmp_path_factory) -> Path:
    """A shot: the demo subject performing its clip (happy), a camera, a Workbench main scene
    with a green world, the head hidden from the main render, compositing set up."""
    from emotalk3d_addon.bridge import headless

    out = tmp_path_factory.mktemp("shot") / "shot.blend"
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.python, prefs.encoder, prefs.device = "", "", "cpu"
    assert headless.main(["generate", "--subject", "demo", "--audio", str(DEMO / "demo_clip.wav"),
                          "--emotion", "happy", "--save", str(out)]) == 0
    bpy.ops.wm.open_mainfile(filepath=str(out))
    scene = bpy.context.scene
    head = scene.emotalk3d.head
    _add_camera(scene, head)
    scene.render.engine = 'BLENDER_WORKBENCH'
    scene.render.resolution_x = scene.render.resolution_y = SIZE
    scene.render.resolution_percentage = 100
    scene.view_settings.view_transform = 'Standard'
    scene.display.shading.background_type = 'WORLD' if hasattr(scene.display.shading, "background_type") else None
    if scene.world is None:
        scene.world = bpy.data.worlds.new("World")
    scene.world.color = (0.0, 1.0, 0.0)
    head.hide_render = True
    assert bpy.ops.emotalk3d.setup_compositing(mode='ALPHA_OVER') == {'FINISHED'}
    bpy.ops.wm.save_mainfile()
    return out


@pytest.fixture
def shot(demo_blend):
    bpy.ops.wm.open_mainfile(filepath=str(demo_blend))
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.python, prefs.encoder, prefs.device = "", "", "cpu"
    from emotalk3d_addon import engine

    engine.ERRORS.clear()
    return bpy.context.scene


def _tree(scene):
    from emotalk3d_addon.bridge import compositing

    return compositing.compositor_tree(scene)


def render_socket(scene, node_name: str, socket: str, tmp_path: Path) -> np.ndarray:
    """(H, W, 4) float32, rows top-down: the compositor output with ``node.socket`` routed to it
    (saved by Blender as a 32-bit EXR and read back)."""
    from emotalk3d_addon.bridge import compositing

    tree = _tree(scene)
    out = compositing.output_socket(tree, create=False)
    previous = [l.from_socket for l in tree.links if l.to_socket == out]
    for link in [l for l in tree.links if l.to_socket == out]:
        tree.links.remove(link)
    tree.links.new(tree.nodes[node_name].outputs[socket], out)
    try:
        bpy.ops.render.render(scene=scene.name)
        settings = scene.render.image_settings
        settings.file_format, settings.color_depth = 'OPEN_EXR', '32'
        path = tmp_path / f"{node_name}-{socket}.exr".replace(" ", "_")
        bpy.data.images["Render Result"].save_render(str(path), scene=scene)
    finally:
        for link in [l for l in tree.links if l.to_socket == out]:
            tree.links.remove(link)
        for sock in previous:
            tree.links.new(sock, out)
    img = bpy.data.images.load(str(path))
    try:
        w, h = img.size
        px = np.empty(w * h * 4, np.float32)
        img.pixels.foreach_get(px)
    finally:
        bpy.data.images.remove(img)
    return px.reshape(h, w, 4)[::-1]


def _gauss(scene, socket, tmp_path):
    return render_socket(scene, "EmoTalk3D Gaussians", socket, tmp_path)


def _pinhole(scene):
    from emotalk3d_addon.bridge import camera as camera_mod

    return camera_mod.from_blender_camera(scene.camera, scene)


def _centroid(alpha: np.ndarray) -> np.ndarray:
    ys, xs = np.mgrid[0:alpha.shape[0], 0:alpha.shape[1]]
    total = alpha.sum()
    return np.array([(xs * alpha).sum() / total, (ys * alpha).sum() / total]) + 0.5


def _head_points(scene) -> np.ndarray:
    from emotalk3d_addon.bridge import gaussian_frame

    head = scene.emotalk3d.head
    depsgraph = bpy.context.evaluated_depsgraph_get()
    local = gaussian_frame.shape_key_mix(head.data.shape_keys.evaluated_get(depsgraph), len(head.data.vertices))
    M = np.array(head.matrix_world)
    return local @ M[:3, :3].T + M[:3, 3]


def test_passes_put_the_head_where_the_camera_sees_it(shot, tmp_path):
    scene = shot
    from emotalk3d_addon import engine

    alpha = _gauss(scene, "Alpha", tmp_path)[..., 0]
    depth = _gauss(scene, "Depth", tmp_path)[..., 0]
    matte = _gauss(scene, "FaceMatte", tmp_path)[..., 0]
    assert engine.LAST_RENDER["ok"], engine.LAST_RENDER
    assert alpha.shape == (SIZE, SIZE) and 0.05 < alpha.mean() < 0.6

    pin = _pinhole(scene)
    points = _head_points(scene)
    projected = pin.project(points).mean(axis=0)
    # the camera sits right of and above the head: the head is left of and below the centre
    assert projected[0] < SIZE / 2 - 5 and projected[1] > SIZE / 2 + 5
    assert np.linalg.norm(_centroid(alpha) - projected) < 8.0

    cam_z = points @ pin.world_to_camera[2, :3] + pin.world_to_camera[2, 3]
    inside = alpha > 0.5
    assert cam_z.min() - 0.03 < np.median(depth[inside]) < cam_z.max() + 0.15
    assert (depth[alpha < 1e-6] >= 1e9).all()                       # Blender's Z background

    landmarks = json.loads((DEMO / "subject.json").read_text())["geometry"]["landmarks"]
    face = [landmarks[n] for n in ("nose_tip", "chin", "cheek_left", "cheek_right", "upper_lip")]
    px = np.floor(pin.project(points[face])).astype(int)
    assert (matte[px[:, 1], px[:, 0]] > 0.5).all()
    assert matte[alpha < 1e-6].max() == 0.0
    assert matte.sum() < alpha.sum()                                 # hair, neck: no face matte


def test_moving_the_object_or_the_camera_moves_the_render(shot, tmp_path):
    scene = shot
    pin = _pinhole(scene)
    z = float(np.median(_head_points(scene) @ pin.world_to_camera[2, :3] + pin.world_to_camera[2, 3]))
    base = _centroid(_gauss(scene, "Alpha", tmp_path)[..., 0])
    expected = pin.K[0, 0] * 0.05 / z

    head = scene.emotalk3d.head
    head.location.x += 0.05
    moved = _centroid(_gauss(scene, "Alpha", tmp_path)[..., 0])
    assert moved[0] - base[0] == pytest.approx(expected, abs=1.5)
    assert abs(moved[1] - base[1]) < 1.0

    head.location.x -= 0.05
    scene.camera.location.x += 0.05
    camera_moved = _centroid(_gauss(scene, "Alpha", tmp_path)[..., 0])
    assert camera_moved[0] - base[0] == pytest.approx(-expected, abs=1.5)

    scene.camera.location.x -= 0.05
    row = int(pin.project(np.array(head.matrix_world.translation)[None])[0, 1])  # through the object origin
    width = (_gauss(scene, "Alpha", tmp_path)[row, :, 0] > 0.5).sum()
    head.scale = (1.2, 1.2, 1.2)
    wider = (_gauss(scene, "Alpha", tmp_path)[row, :, 0] > 0.5).sum()
    assert wider / width == pytest.approx(1.2, abs=0.1)


def _cli_render(blend: Path, frames: str, out: Path, env_extra: dict | None = None):
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "emotalk3d_addon", "render", str(blend), "--frames", frames,
                           "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def _png(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path)).astype(np.int16)


def test_a_frame_alone_equals_the_same_frame_of_an_animation_render(demo_blend, tmp_path):
    """``-s 1 -e 3 -a`` against frame 3 alone, through the compositor, in fresh processes,
    with the .blend moved elsewhere (as a render farm does)."""
    farm = tmp_path / "farm"
    farm.mkdir()
    blend = farm / "shot.blend"
    shutil.copy(demo_blend, blend)
    run = _cli_render(blend, "1-3", tmp_path / "anim")
    assert run.returncode == 0, run.stderr[-2000:]
    alone = _cli_render(blend, "3", tmp_path / "alone")
    assert alone.returncode == 0, alone.stderr[-2000:]
    files = sorted(p.name for p in (tmp_path / "anim").iterdir())
    assert files == ["frame_0001.png", "frame_0002.png", "frame_0003.png"]
    a3, b3 = _png(tmp_path / "anim" / "frame_0003.png"), _png(tmp_path / "alone" / "frame_0003.png")
    assert a3.shape == (SIZE, SIZE, 4)
    assert np.array_equal(a3, b3)
    assert not np.array_equal(_png(tmp_path / "anim" / "frame_0001.png"), a3)   # the face moves


def test_compositor_output_layers_the_head_over_the_scene(shot, tmp_path):
    scene = shot
    alpha = _gauss(scene, "Alpha", tmp_path)[..., 0]
    background = render_socket(scene, "EmoTalk3D Scene", "Image", tmp_path)
    over = render_socket(scene, "EmoTalk3D Over", "Image", tmp_path)
    empty, solid = alpha < 1e-4, alpha > 0.99
    assert empty.sum() > 1000 and solid.sum() > 500
    np.testing.assert_allclose(over[empty][:, :3], background[empty][:, :3], atol=1e-4)
    assert background[empty][:, 1].mean() > 0.5 and background[empty][:, 0].mean() < 0.2   # green world
    gauss = _gauss(scene, "Image", tmp_path)
    np.testing.assert_allclose(gauss[..., 3], alpha, atol=1e-6)
    a = alpha[..., None]
    expected = gauss[..., :3] * a + background[..., :3] * (1.0 - a)       # straight alpha over
    np.testing.assert_allclose(over[..., :3], expected, atol=2e-3)
    assert np.abs(over[solid][:, :3] - background[solid][:, :3]).max() > 0.2


def test_set_up_twice_duplicates_nothing_and_remove_restores(shot):
    scene = shot
    from emotalk3d_addon.bridge import compositing

    def state():
        tree = _tree(scene)
        return (sorted(n.name for n in tree.nodes), len(tree.links), sorted(s.name for s in bpy.data.scenes),
                sorted(o.name for o in bpy.data.objects))

    first = state()
    assert bpy.ops.emotalk3d.setup_compositing(mode='ALPHA_OVER') == {'FINISHED'}
    assert state() == first
    assert bpy.ops.emotalk3d.setup_compositing(mode='Z_COMBINE') == {'FINISHED'}
    names = state()[0]
    assert "EmoTalk3D Z Combine" in names and "EmoTalk3D Over" not in names
    assert all(layer.use_pass_z for layer in scene.view_layers)
    assert bpy.ops.emotalk3d.setup_compositing(mode='Z_COMBINE') == {'FINISHED'}
    assert state()[0] == names
    gscene = scene.emotalk3d.gaussian_scene
    assert gscene.render.engine == "EMOTALK3D_GAUSSIANS" and gscene.camera == scene.camera

    assert bpy.ops.emotalk3d.remove_compositing() == {'FINISHED'}
    assert [s.name for s in bpy.data.scenes] == [scene.name]
    assert scene.emotalk3d.head is not None and scene.emotalk3d.head.name in scene.objects
    assert not any(layer.use_pass_z for layer in scene.view_layers)
    tree = compositing.compositor_tree(scene)
    assert tree is None or not any(n.name.startswith("EmoTalk3D") for n in tree.nodes)


def test_z_combine_puts_the_head_behind_nearer_geometry(shot, tmp_path):
    scene = shot
    assert bpy.ops.emotalk3d.setup_compositing(mode='Z_COMBINE') == {'FINISHED'}
    alpha = _gauss(scene, "Alpha", tmp_path)[..., 0]
    plain = render_socket(scene, "EmoTalk3D Z Combine", "Result", tmp_path)
    # a plane between the camera and the head's right half hides it
    cam = scene.camera
    bpy.ops.mesh.primitive_plane_add(size=0.3, location=(cam.location.x + 0.15, cam.location.y + 0.3,
                                                         cam.location.z), rotation=(math.pi / 2, 0, 0))
    occluded = render_socket(scene, "EmoTalk3D Z Combine", "Result", tmp_path)
    solid = alpha > 0.99
    right = np.zeros_like(solid)
    right[:, SIZE // 2 + 2:] = True
    left = np.zeros_like(solid)
    left[:, :SIZE // 2 - 20] = True
    assert (solid & left).sum() > 50 and (solid & right).sum() > 20
    np.testing.assert_allclose(occluded[solid & left], plain[solid & left], atol=1e-3)
    assert np.abs(occluded[solid & right] - plain[solid & right]).max(axis=-1).min() > 0.05


def test_render_errors_are_reported_not_crashes(shot, tmp_path):
    scene = shot
    from emotalk3d_addon import engine

    head = scene.emotalk3d.head
    head.emotalk3d_head.subject = "no-such-subject"
    alpha = _gauss(scene, "Alpha", tmp_path)[..., 0]
    assert engine.ERRORS and "no-such-subject" in engine.ERRORS[-1] and "not found" in engine.ERRORS[-1]
    assert alpha.max() == 0.0                                          # an empty frame, not garbage

    engine.ERRORS.clear()
    head.emotalk3d_head.subject = "demo"
    bpy.data.objects.remove(scene.camera)                              # the camera deleted
    with pytest.raises(RuntimeError, match="[Cc]amera"):
        bpy.ops.render.render(scene=scene.name)
    with pytest.raises(RuntimeError, match="[Cc]amera"):
        bpy.ops.render.render(scene=scene.emotalk3d.gaussian_scene.name)


def test_cli_render_of_a_file_with_a_missing_subject_exits_2(demo_blend, tmp_path):
    bpy.ops.wm.open_mainfile(filepath=str(demo_blend))
    bpy.context.scene.emotalk3d.head.emotalk3d_head.subject = "//missing/bundle"
    broken = tmp_path / "broken.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(broken), copy=True)
    run = _cli_render(broken, "1", tmp_path / "out")
    assert run.returncode == 2
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "missing/bundle" in last


def test_emotion_state_rides_in_the_action(shot):
    scene = shot
    from emotalk3d_addon.backend.emotions import EMOTIONS
    from emotalk3d_addon.bridge import emotion_state, gaussian_frame

    head = scene.emotalk3d.head
    key = head.data.shape_keys
    scene.frame_set(10)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    weights, intensity = emotion_state.state_of(key.evaluated_get(depsgraph))
    assert EMOTIONS[int(np.argmax(weights))] == "happy" and weights.max() == pytest.approx(1.0)
    assert intensity == pytest.approx(1.0)
    # the mix used for a hidden head equals Blender's own evaluation of the visible one
    head.hide_render = False
    bpy.context.view_layer.update()
    mix = gaussian_frame.shape_key_mix(key.evaluated_get(depsgraph), len(head.data.vertices))
    from emotalk3d_addon.bridge import mesh

    np.testing.assert_allclose(mix, mesh.evaluated_vertices(head, depsgraph), atol=1e-5)


def test_a_render_stopped_mid_frame_kills_only_the_worker(shot):
    """test_break (Esc) while the worker renders: no result, the worker ends, the next frame restarts it."""
    scene = shot
    from emotalk3d_addon import preferences
    from emotalk3d_addon.bridge import gaussian_frame, worker_client

    dirs = preferences.current_settings().library_dirs()
    depsgraph = bpy.context.evaluated_depsgraph_get()
    frame = gaussian_frame.head_frame(depsgraph, scene.emotalk3d.head, dirs, bpy.path.abspath, evaluated_mesh=False)
    client = worker_client.get_client(preferences.current_settings().python_path())
    client.ensure_started()
    pid = client.pid
    assert gaussian_frame.render_head(client, frame, _pinhole(scene), dirs, "cpu", should_stop=lambda: True) is None
    assert not client.alive
    passes = gaussian_frame.render_head(client, frame, _pinhole(scene), dirs, "cpu")
    assert client.alive and client.pid != pid and passes.combined.shape == (SIZE, SIZE, 4)
    first = passes.combined.copy()
    made = client.passes.created
    passes.release()
    passes.release()                             # once only: the buffer is in the pool once
    again = gaussian_frame.render_head(client, frame, _pinhole(scene), dirs, "cpu")
    other = gaussian_frame.render_head(client, frame, _pinhole(scene), dirs, "cpu")   # while `again` is held
    # the stopped call gave its buffer back; one buffer of this size serves frame after frame,
    # a second one only while the first is still held
    assert client.passes.created == made + 1
    np.testing.assert_array_equal(again.combined, first)
    np.testing.assert_array_equal(other.combined, first)
    again.release()
    other.release()


def _animation(gscene, out: Path, frames=(1, 4)) -> list[np.ndarray]:
    """Render ``gscene``'s frames as an animation into 16-bit PNGs; their pixels. (The main
    scene gets the range too: the Gaussian scene follows the main scene's range.)"""
    bpy.context.scene.frame_start, bpy.context.scene.frame_end = frames
    gscene.frame_start, gscene.frame_end = frames
    gscene.render.filepath = str(out / "f_")
    gscene.render.image_settings.file_format = 'PNG'
    gscene.render.image_settings.color_mode = 'RGBA'
    gscene.render.image_settings.color_depth = '16'
    bpy.ops.render.render(animation=True, scene=gscene.name)
    return [_png(p) for p in sorted(out.iterdir())]


def test_rendering_ahead_changes_no_pixel_and_is_used(shot, tmp_path):
    """An animation with render-ahead on equals the same animation with it off, pixel for
    pixel, and frames 2-4 came from calls sent ahead (the head moves frame to frame)."""
    from emotalk3d_addon import engine
    from emotalk3d_addon.bridge import render_ahead

    prefs = bpy.context.preferences.addons[ADDON].preferences
    gscene = shot.emotalk3d.gaussian_scene
    prefs.render_ahead = False
    off = _animation(gscene, tmp_path / "off")
    assert render_ahead.STATS.sent == 0
    prefs.render_ahead = True
    on = _animation(gscene, tmp_path / "on")
    stats = render_ahead.STATS
    assert (stats.sent, stats.hits, stats.misses, stats.stopped) == (3, 3, 0, "")
    assert engine.LAST_RENDER["rendered_ahead"] and not engine.LAST_RENDER["sent_ahead"]   # none past frame_end
    assert render_ahead.pending_frame() is None and not engine.ERRORS
    assert len(on) == len(off) == 4
    for a, b in zip(on, off):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(on[0], on[3])


def test_an_animated_camera_is_not_rendered_ahead_and_still_moves(shot, tmp_path):
    from emotalk3d_addon.bridge import render_ahead

    gscene = shot.emotalk3d.gaussian_scene
    cam = shot.camera
    cam.keyframe_insert("location", frame=1)
    cam.location.x += 0.05
    cam.keyframe_insert("location", frame=4)
    frames = _animation(gscene, tmp_path / "cam")
    assert render_ahead.STATS.sent == 0 and render_ahead.STATS.hits == 0
    assert len(frames) == 4 and not np.array_equal(frames[0], frames[3])


def test_inputs_other_than_predicted_discard_the_call_and_stop_rendering_ahead(shot):
    """``take`` with vertices that differ from the ones sent ahead: no call, one miss, no more
    sending in this render, and the discarded call's buffer back in the pool once it ends."""
    from emotalk3d_addon import preferences
    from emotalk3d_addon.bridge import gaussian_frame, render_ahead, worker_client

    scene = shot
    gscene = scene.emotalk3d.gaussian_scene
    scene.frame_start, scene.frame_end = gscene.frame_start, gscene.frame_end = 1, 10
    gscene.frame_set(3)
    dirs = preferences.current_settings().library_dirs()
    head = gscene.emotalk3d.head
    frame = gaussian_frame.head_frame(bpy.context.evaluated_depsgraph_get(), head, dirs, bpy.path.abspath,
                                      evaluated_mesh=False)
    client = worker_client.get_client(preferences.current_settings().python_path())
    render_ahead.reset()
    pin = _pinhole(gscene)
    assert render_ahead.start(client, gscene, head, frame, pin, dirs, "cpu")
    assert render_ahead.pending_frame() == 4
    gscene.frame_set(4)
    real = gaussian_frame.head_frame(bpy.context.evaluated_depsgraph_get(), head, dirs, bpy.path.abspath,
                                     evaluated_mesh=False)
    assert render_ahead.take(4, real, pin, dirs, "cuda") is None          # another device: a miss
    assert render_ahead.STATS.misses == 1 and render_ahead.STATS.stopped
    assert not render_ahead.start(client, gscene, head, real, pin, dirs, "cpu")
    passes = gaussian_frame.render_head(client, real, pin, dirs, "cpu")   # waits behind the discarded call
    made = client.passes.created
    passes.release()
    again = gaussian_frame.render_head(client, real, pin, dirs, "cpu")
    assert client.passes.created == made                                   # buffers came back, none new
    again.release()
    render_ahead.reset()
