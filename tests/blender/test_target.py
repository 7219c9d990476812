"""A target character in real Blender: a mesh that is not the subject's, with ARKit shape
keys under other spellings, driven by the demo subject's performance. Its jawOpen follows
the lips, its smile is higher for happy than for sad, a missing key is reported once,
strengths re-write the keys without the backend, blinks are movable keys, undo removes the
generation and a broken run changes nothing."""
from __future__ import annotations

import numpy as np
import pytest

from .conftest import bpy, setup_scene, snapshot

# the character's key names: ARKit names under the spellings exports use
SPELLINGS = {"jawOpen": "ARKit_jawOpen", "mouthSmileLeft": "mouthSmile_L", "mouthSmileRight": "mouthSmile_R",
             "browInnerUp": "blendShape.browInnerUp", "mouthFrownLeft": "Mouth_Frown.L"}
MISSING = "noseSneerRight"          # moved by the performance, but the character has no key for it


def _character(name="Character"):
    """A 20 x 20 grid (not the subject's mesh) with one shape key per ARKit name but MISSING."""
    from emotalk3d_addon.backend.arkit.names import ARKIT_NAMES

    bpy.ops.mesh.primitive_grid_add(x_subdivisions=20, y_subdivisions=20, size=0.2)
    ob = bpy.context.active_object
    ob.name = name
    ob.shape_key_add(name="Basis")
    n = len(ob.data.vertices)
    rng = np.random.default_rng(0)
    for arkit in ARKIT_NAMES:
        if arkit == MISSING:
            continue
        kb = ob.shape_key_add(name=SPELLINGS.get(arkit, arkit), from_mix=False)
        co = np.empty(n * 3, np.float32)
        kb.points.foreach_get("co", co)
        kb.points.foreach_set("co", co + rng.normal(scale=0.002, size=co.size).astype(np.float32))
    return ob


def _curve(act, key_name):
    from emotalk3d_addon.bridge import compat

    slot = act.slots[0] if compat.has_slotted_actions() and len(act.slots) else None
    for fc in compat.action_fcurves(act, slot):
        if fc.data_path == f'key_blocks["{bpy.utils.escape_identifier(key_name)}"].value':
            co = np.empty(len(fc.keyframe_points) * 2, np.float32)
            fc.keyframe_points.foreach_get("co", co)
            return co.reshape(-1, 2)
    return None


@pytest.fixture
def demo_clip():
    from emotalk3d_addon.backend.subject import resolve_subject

    return resolve_subject("demo") / "demo_clip.wav"


def _generate(scene, clip, emotion):
    s = setup_scene(scene, "demo", clip, start=1, fps=25)
    s.emotion = emotion
    result = bpy.ops.emotalk3d.generate()
    return s, result


def test_a_character_is_driven_through_its_own_key_names(scene, demo_clip):
    ob = _character()
    s = scene.emotalk3d
    s.target = ob
    mapped = {item.arkit: item.key for item in s.arkit_map}
    assert mapped["jawOpen"] == "ARKit_jawOpen" and mapped["mouthSmileLeft"] == "mouthSmile_L"
    assert mapped["mouthFrownLeft"] == "Mouth_Frown.L" and mapped[MISSING] == ""
    assert sum(1 for v in mapped.values() if v) == 51
    before = {"objects": sorted(o.name for o in bpy.data.objects), "meshes": len(bpy.data.meshes)}
    ob.data.shape_keys.key_blocks["eyeLookUpLeft"].value = 0.7       # left over from another Action
    s, result = _generate(scene, demo_clip, "happy")
    assert result == {'FINISHED'}
    act = s.last_action
    # a mapped shape the performance leaves still (the demo rig has no eye look) is held at 0
    # by one key, so nothing from before shows through and playback mixes no such key
    still = _curve(act, "eyeLookUpLeft")
    assert still.shape == (1, 2) and still[0, 1] == 0.0
    scene.frame_set(12)
    assert ob.data.shape_keys.key_blocks["eyeLookUpLeft"].value == 0.0
    assert act.emotalk3d.target == ob.name and ob.data.shape_keys.animation_data.action == act
    assert sorted(o.name for o in bpy.data.objects) == before["objects"]      # no head was added
    assert len(bpy.data.meshes) == before["meshes"]
    from emotalk3d_addon.operators.generate import LAST_REPORT

    assert MISSING in LAST_REPORT["message"] and LAST_REPORT["level"] == "WARNING"
    # the jaw follows the subject's lips (the backend's own performance of the same clip)
    from emotalk3d_addon.backend.performance.service import Performance
    from emotalk3d_addon.backend.protocol.messages import EmotionSpec, PerformRequest

    truth = Performance().perform(PerformRequest("demo", str(demo_clip), (25, 1), EmotionSpec.constant("happy"),
                                                 device="cpu"))
    lm = truth.loaded.subject.geometry.landmarks
    shown = truth.shape_key_vertices()
    aperture = np.linalg.norm(shown[:, lm["upper_lip"]] - shown[:, lm["lower_lip"]], axis=1)
    jaw = _curve(act, "ARKit_jawOpen")
    assert jaw.shape[0] == truth.track.num_frames and jaw[0, 0] == 1.0
    assert np.corrcoef(jaw[:, 1], aperture)[0, 1] > 0.6
    # on the clip's bilabials (p, b, m: the synthesiser's own phone times) the lips close: in
    # ARKit terms the jaw's opening less mouthClose, which shuts the lips over an open jaw
    from emotalk3d_addon.backend.speech.phones import is_bilabial, openness
    from emotalk3d_addon.backend.tools.lipsync import read_phones

    opening = jaw[:, 1] - _curve(act, "mouthClose")[:, 1]
    phones = read_phones(demo_clip.with_name("demo_clip.phones.txt"))
    at = lambda t: min(int(round(t * 25)), len(opening) - 1)
    closures = [opening[max(0, at(a) - 1):at(b) + 2].min() for a, b, ph in phones if is_bilabial(ph)]
    vowels = [opening[at((a + b) / 2)] for a, b, ph in phones if openness(ph) >= 0.5]
    assert len(closures) >= 5 and len(vowels) >= 5 and np.mean(closures) < 0.5 * np.median(vowels)
    happy_smile = _curve(act, "mouthSmile_L")[:, 1].mean()
    # strengths re-write the keys without the backend
    s.strength_jaw = 0.5
    np.testing.assert_allclose(_curve(act, "ARKit_jawOpen")[:, 1], 0.5 * jaw[:, 1], atol=1e-6)
    assert _curve(act, "eyeLookUpLeft").shape == (1, 2)             # a still shape keeps its one key
    s.strength_jaw = 1.0
    # sad: a lower smile
    s2, result = _generate(scene, demo_clip, "sad")
    assert result == {'FINISHED'} and s2.last_action != act
    assert _curve(s2.last_action, "mouthSmile_L")[:, 1].mean() < happy_smile - 0.3
    assert act.name in bpy.data.actions                      # the earlier performance is kept


def test_blinks_are_sparse_keys_and_undo_removes_the_generation(scene, demo_clip):
    ob = _character()
    s = setup_scene(scene, "demo", demo_clip, start=1, fps=25)
    s.target, s.blinks = ob, True
    bpy.ops.ed.undo_push(message="character ready")
    before = snapshot()
    assert bpy.ops.emotalk3d.generate('EXEC_DEFAULT', True) == {'FINISHED'}
    blink = _curve(bpy.context.scene.emotalk3d.last_action, "eyeBlinkLeft")
    assert blink is not None and len(blink) % 3 == 0 and set(np.round(blink[:, 1], 6)) <= {0.0, 1.0}
    assert 0 < len(blink) < 30
    bpy.ops.ed.undo()
    assert snapshot() == before


def test_a_subject_without_arkit_shapes_cannot_drive_a_character(scene, trained_subject, speech):
    ob = _character()
    s = setup_scene(scene, trained_subject, speech)
    s.target = ob
    before = snapshot()
    with pytest.raises(RuntimeError, match="no ARKit shapes"):
        bpy.ops.emotalk3d.generate()
    assert snapshot() == before


def test_the_emotion_strength_blends_from_the_neutral_performance(scene, demo_clip):
    ob = _character()
    s = setup_scene(scene, "demo", demo_clip, start=1, fps=25)
    s.target, s.emotion = ob, "happy"
    assert bpy.ops.emotalk3d.generate() == {'FINISHED'}
    act = s.last_action
    happy = _curve(act, "mouthSmile_L")[:, 1].copy()
    s.strength_emotion = 0.0                                    # the speech alone
    neutral = _curve(act, "mouthSmile_L")[:, 1].copy()
    s.strength_emotion = 0.5
    half = _curve(act, "mouthSmile_L")[:, 1]
    assert neutral.mean() < happy.mean() - 0.3
    np.testing.assert_allclose(half, (neutral + happy) / 2, atol=1e-5)
    s.strength_emotion, s.strength_jaw = 1.0, 2.0                # above 1: the sliders widen, nothing clips
    jaw = _curve(act, "ARKit_jawOpen")[:, 1]
    kb = ob.data.shape_keys.key_blocks["ARKit_jawOpen"]
    assert jaw.max() > 1.0 and kb.slider_max >= jaw.max()
    s.strength_jaw = 1.0


def test_a_performance_made_at_emotion_strength_0_still_has_the_emotion_curves(scene, demo_clip):
    ob = _character()
    s = setup_scene(scene, "demo", demo_clip, start=1, fps=25)
    s.target, s.emotion, s.strength_emotion = ob, "surprised", 0.0
    assert bpy.ops.emotalk3d.generate() == {'FINISHED'}
    act = s.last_action
    s.strength_emotion = 1.0                                   # the surprise the speech alone lacks
    brow = _curve(act, "blendShape.browInnerUp")
    assert brow is not None and brow[:, 1].mean() > 0.3


def test_a_fresh_factory_scene_shows_the_head_and_frame_head_aims_at_it(addon, trained_subject, speech):
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    bpy.ops.wm.read_homefile(use_empty=False, use_factory_startup=True)      # the Cube at the cursor
    scene = bpy.context.scene
    bpy.context.preferences.addons["emotalk3d_addon"].preferences.device = "cpu"
    setup_scene(scene, trained_subject, speech)
    assert bpy.ops.emotalk3d.generate() == {'FINISHED'}
    head, cube = scene.emotalk3d.head, scene.objects["Cube"]

    def box(ob):
        c = np.array([tuple(ob.matrix_world @ Vector(v)) for v in ob.bound_box])
        return c.min(0), c.max(0)

    bpy.context.view_layer.update()
    (hl, hh), (cl, ch) = box(head), box(cube)
    assert not ((hl < ch).all() and (cl < hh).all())               # the head is clear of the Cube
    assert bpy.ops.emotalk3d.frame_head() == {'FINISHED'}
    bpy.context.view_layer.update()
    centre = Vector(tuple((hl + hh) / 2))
    uv = world_to_camera_view(scene, scene.camera, centre)
    assert abs(uv.x - 0.5) < 0.05 and abs(uv.y - 0.5) < 0.05 and uv.z > 0
    top = world_to_camera_view(scene, scene.camera, Vector((centre.x, centre.y, hh[2])))
    assert 0.7 < top.y <= 0.9 + 1e-3                                # the top at or under the 10 % headroom line


def test_cancel_leaves_the_character_and_its_keys_as_they_were(scene, demo_clip):
    import time

    from emotalk3d_addon.operators.generate import GenerateSession

    ob = _character()
    s = setup_scene(scene, "demo", demo_clip, start=1, fps=25)
    s.target = ob
    before = snapshot()
    values = [kb.value for kb in ob.data.shape_keys.key_blocks]
    session = GenerateSession.from_context(bpy.context, debug_delay=60).start()
    deadline = time.monotonic() + 120
    while "debug delay" not in session.job.message and time.monotonic() < deadline:
        time.sleep(0.02)
    session.cancel()
    result, level, message = session.finish(bpy.context)
    assert result == {'CANCELLED'} and "nothing was changed" in message
    assert snapshot() == before and ob.data.shape_keys.animation_data is None
    assert [kb.value for kb in ob.data.shape_keys.key_blocks] == values


def test_every_shape_key_the_mapping_leaves_unused_is_reported_with_its_reason(scene):
    """Keys that differ only in case, two spellings of one name, near misses, names ARKit has
    not, a driven key and a muted one: each is named with its reason; none is dropped quietly."""
    from emotalk3d_addon.bridge import arkit_target

    bpy.ops.mesh.primitive_plane_add(size=0.2)
    ob = bpy.context.active_object
    ob.shape_key_add(name="Basis")
    for name in ("JawOpen", "jawOpen", "mouthSmile_L", "mouthSmileLeft", "jawopen_L", "Fcl_MTH_A",
                 "cheekPuff", "tongueOut"):
        ob.shape_key_add(name=name, from_mix=False)
    fc = ob.data.shape_keys.key_blocks["cheekPuff"].driver_add("value")     # a bone or slider drives it
    fc.driver.expression = "0.25"
    ob.data.shape_keys.key_blocks["tongueOut"].mute = True
    s = scene.emotalk3d
    s.target = ob                                                  # maps the keys (refresh_map)
    mapped = {item.arkit: item.key for item in s.arkit_map}
    assert mapped["jawOpen"] == "jawOpen" and mapped["mouthSmileLeft"] == "mouthSmileLeft"
    assert mapped["cheekPuff"] == "" and mapped["tongueOut"] == "tongueOut"     # driven: left to the artist
    notes = {n.key: n for n in arkit_target.map_notes(s, ob)}
    assert set(notes) == {"Basis", "JawOpen", "mouthSmile_L", "jawopen_L", "Fcl_MTH_A", "cheekPuff", "tongueOut"}
    kinds = {k: n.kind for k, n in notes.items()}
    assert kinds == {"Basis": "reference", "JawOpen": "case_duplicate", "mouthSmile_L": "duplicate",
                     "jawopen_L": "near_miss", "Fcl_MTH_A": "no_match", "cheekPuff": "driven", "tongueOut": "muted"}
    assert "only in upper and lower case" in notes["JawOpen"].reason and "driver" in notes["cheekPuff"].reason
    assert "muted" in notes["tongueOut"].reason and notes["jawopen_L"].arkit == "jawOpen"
    lines = arkit_target.report_lines(list(notes.values()))
    assert lines[0].startswith("6 shape keys") and len(lines) == 7                # the Basis means no ARKit name
    assert all(any(f"'{k}'" in line for line in lines) for k in notes if k != "Basis")
    if hasattr(s, arkit_target.NOTES_PROP):                       # kept for the panel
        assert [(n.key, n.kind) for n in s.arkit_notes] == [(n.key, n.kind) for n in arkit_target.map_notes(s, ob)]
    # mapped by hand, the driven key is used but still cannot show the performance
    next(item for item in s.arkit_map if item.arkit == "cheekPuff").key = "cheekPuff"
    note = next(n for n in arkit_target.map_notes(s, ob) if n.key == "cheekPuff")
    assert note.kind == "driven" and "plays cheekPuff" in note.reason
    assert arkit_target.refresh_map(s, ob)["cheekPuff"] == "cheekPuff"          # a hand choice is kept
    fc.mute = True                                                  # a muted driver sets nothing
    assert arkit_target.driven_keys(ob) == set()


def test_a_key_whose_name_holds_quotes_is_driven(scene, demo_clip):
    """A shape key named with a double quote and a backslash, mapped by hand: its F-curve path
    resolves (the name is escaped as Blender escapes it) and playback moves the key."""
    ob = _character()
    odd = 'jaw "open" \\ v2'
    ob.data.shape_keys.key_blocks["ARKit_jawOpen"].name = odd
    s = scene.emotalk3d
    s.target = ob
    next(item for item in s.arkit_map if item.arkit == "jawOpen").key = odd
    s, result = _generate(scene, demo_clip, "neutral")
    assert result == {'FINISHED'}
    jaw = _curve(s.last_action, odd)
    assert jaw is not None and jaw[:, 1].max() > 0.05
    frame = int(jaw[:, 1].argmax())
    scene.frame_set(int(jaw[frame, 0]))
    assert ob.data.shape_keys.key_blocks[odd].value == pytest.approx(jaw[frame, 1], abs=1e-5)
