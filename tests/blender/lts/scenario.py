"""Run inside another Blender (bpy 4.5 or 4.2 LTS from its own venv): the panel's Generate
twice (frame range, the new file's strip replacing the old, one undo), video files' sound as
strips, generate headless with the demo subject, set up compositing on the 4.x compositor
(scene.node_tree), render through it, and print one JSON line of findings for
tests/blender/test_blender_lts.py to check.

    python scenario.py REPO_ROOT WORK_DIR
"""
import json
import math
import os
import sys

from boot import start

root, work, _, found = start()

import bpy  # noqa: E402
import addon_utils  # noqa: E402
from emotalk3d_addon import engine  # noqa: E402
from emotalk3d_addon.bridge import compat, compositing, headless  # noqa: E402



def dialogue(scene) -> list:
    """(file, muted, ours) of each sound strip."""
    from emotalk3d_addon.bridge import sequencer

    return sorted([os.path.basename(sequencer.strip_audio_path(s)), bool(s.mute), sequencer.is_ours(s)]
                  for s in sequencer.sound_strips(scene))


def panel_takes(audio: str) -> dict:
    """The panel's Generate (the operator), twice: the frame range after it, the second file's
    strip in place of the first's, and one undo back to the first take."""
    import wave

    take2 = os.path.join(work, "take2.wav")
    with wave.open(audio) as src, wave.open(take2, "wb") as dst:       # the clip twice over: a longer take
        dst.setparams(src.getparams())
        frames = src.readframes(src.getnframes())
        dst.writeframes(frames + frames)
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    scene = bpy.context.scene
    scene.render.fps, scene.frame_start, scene.frame_end = 25, 1, 10
    s = scene.emotalk3d
    s.subject, s.audio_source, s.audio_file, s.audio_start, s.emotion = "demo", 'FILE', audio, 1, "happy"
    bpy.ops.ed.undo_push(message="start")
    out = {"rc1": sorted(bpy.ops.emotalk3d.generate('EXEC_DEFAULT', True))}
    scene = bpy.context.scene
    act = scene.emotalk3d.last_action
    out["take1"] = {"range": [scene.frame_start, scene.frame_end], "frames": act.emotalk3d.num_frames,
                    "strips": dialogue(scene)}
    s = scene.emotalk3d
    s.audio_source, s.audio_file = 'FILE', take2
    bpy.ops.ed.undo_push(message="take 2 chosen")
    out["rc2"] = sorted(bpy.ops.emotalk3d.generate('EXEC_DEFAULT', True))
    scene = bpy.context.scene
    act = scene.emotalk3d.last_action
    out["take2"] = {"range": [scene.frame_start, scene.frame_end], "frames": act.emotalk3d.num_frames,
                    "strips": dialogue(scene), "actions": len(bpy.data.actions)}
    try:
        bpy.ops.ed.undo()
    except RuntimeError as exc:
        out["undo"] = {"error": str(exc)}
    else:
        scene = bpy.context.scene
        key = scene.emotalk3d.head.data.shape_keys
        out["undo"] = {"range": [scene.frame_start, scene.frame_end], "strips": dialogue(scene),
                       "playing": os.path.basename(key.animation_data.action.emotalk3d.audio),
                       "actions": len(bpy.data.actions)}
    return out


def video_strips(scene) -> dict:
    """Sound strips from the video files the test wrote (video 1 s longer than the speech)."""
    from emotalk3d_addon.bridge import sequencer

    scene.render.fps, scene.render.fps_base = 25, 1.0
    out = {}
    for name in sorted(os.listdir(work)):
        if name.startswith("video.") and sequencer.has_audio():
            strip = sequencer.add_sound_strip(scene, os.path.join(work, name), 1, 38)
            out[name] = strip.frame_final_duration
    return out


try:
    blend = os.path.join(work, "shot45.blend")
    audio = os.path.join(root, "emotalk3d_addon", "subjects", "demo", "demo_clip.wav")
    found["panel"] = panel_takes(audio)
    found["videos"] = video_strips(bpy.context.scene)
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    found["sequence_editor_before"] = bpy.context.scene.sequence_editor is not None
    found["generate_rc"] = headless.main(["generate", "--subject", "demo", "--audio", audio, "--emotion", "happy",
                                          "--save", blend])
    bpy.ops.wm.open_mainfile(filepath=blend)
    scene = bpy.context.scene
    head = scene.emotalk3d.head
    key = head.data.shape_keys
    act = key.animation_data.action
    found["audio"] = bool(getattr(bpy.app.build_options, "audaspace", True))
    found["sequence_editor"] = scene.sequence_editor is not None
    found["strips"] = len(compat.all_strips(scene))
    found["slotted"] = compat.has_slotted_actions()
    found["curves"] = sorted({fc.data_path for fc in compat.action_fcurves(act, act.slots[0] if found["slotted"] else None)})
    found["group_compositor"] = compositing.is_group_compositor()
    found["range"] = [scene.frame_start, scene.frame_end, act.emotalk3d.num_frames]

    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    scene.collection.objects.link(cam)
    cam.location, cam.rotation_euler = (0.08, -0.9, 0.1), (math.pi / 2, 0.0, 0.0)
    scene.camera = cam
    scene.render.engine = 'BLENDER_WORKBENCH'
    scene.render.resolution_x = scene.render.resolution_y = 96
    scene.render.resolution_percentage = 100
    scene.view_settings.view_transform = 'Standard'
    head.hide_render = True
    found["use_nodes_before"] = bool(scene.use_nodes)
    bpy.ops.emotalk3d.setup_compositing(mode='ALPHA_OVER')
    first = sorted(n.name for n in scene.node_tree.nodes), len(scene.node_tree.links)
    bpy.ops.emotalk3d.setup_compositing(mode='ALPHA_OVER')
    found["idempotent"] = first == (sorted(n.name for n in scene.node_tree.nodes), len(scene.node_tree.links))
    found["nodes"] = first[0]
    bpy.ops.wm.save_mainfile()

    # render frames 2-3 through the compositor, then frame 3 alone
    found["render_rc"] = headless.main(["render", blend, "--frames", "2-3", "--out", os.path.join(work, "anim")])
    found["render_alone_rc"] = headless.main(["render", blend, "--frames", "3", "--out", os.path.join(work, "alone")])
    found["last_render"] = {k: v for k, v in engine.LAST_RENDER.items() if k in ("ok", "error", "scene", "frame")}

    # a target character: the performance on its own ARKit-named shape keys
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    bpy.ops.mesh.primitive_grid_add(x_subdivisions=10, y_subdivisions=10, size=0.2)
    hero = bpy.context.active_object
    hero.name = "Hero"
    hero.shape_key_add(name="Basis")
    for name in ("ARKit_jawOpen", "mouthSmile_L", "mouthSmile_R", "browInnerUp"):
        kb = hero.shape_key_add(name=name, from_mix=False)
        kb.data[0].co.z += 0.01
    character = os.path.join(work, "hero.blend")
    bpy.ops.wm.save_as_mainfile(filepath=character)
    driven = os.path.join(work, "hero_driven.blend")
    found["target_rc"] = headless.main(["generate", "--open", character, "--target", "Hero", "--subject", "demo",
                                        "--audio", audio, "--emotion", "happy", "--save", driven])
    bpy.ops.wm.open_mainfile(filepath=driven)
    hero_act = bpy.data.objects["Hero"].data.shape_keys.animation_data.action
    slot = hero_act.slots[0] if compat.has_slotted_actions() else None
    jaw = [fc for fc in compat.action_fcurves(hero_act, slot) if fc.data_path == 'key_blocks["ARKit_jawOpen"].value']
    found["target"] = {"action_target": hero_act.emotalk3d.target,
                       "range": [bpy.context.scene.frame_start, bpy.context.scene.frame_end,
                                 hero_act.emotalk3d.num_frames],
                       "curves": sorted(fc.data_path for fc in compat.action_fcurves(hero_act, slot)),
                       "jaw_max": max(kp.co[1] for kp in jaw[0].keyframe_points) if jaw else None}

    bpy.ops.wm.open_mainfile(filepath=blend)
    scene = bpy.context.scene
    bpy.ops.emotalk3d.remove_compositing()
    found["after_remove"] = {"scenes": [s.name for s in bpy.data.scenes], "use_nodes": bool(scene.use_nodes),
                             "ours_left": [n.name for n in scene.node_tree.nodes if n.name.startswith("EmoTalk3D")]
                             if scene.node_tree else []}
finally:
    # the 4.5 wheel hangs at exit while a Python render engine that rendered is registered
    addon_utils.disable("emotalk3d_addon", default_set=False)
print("SCENARIO " + json.dumps(found))
sys.stdout.flush()
sys.stderr.flush()
# the 4.2 wheel crashes in its own teardown once any add-on has registered an EnumProperty
# with an items callback, even after unregistering it (a 12-line script with one such
# property does the same): leave without the teardown
os._exit(0)
