"""Everything survives save and reload; a subject missing on reload is a warning, not an error."""
from __future__ import annotations

import shutil

import numpy as np

from .conftest import bpy, evaluated, setup_scene, snapshot


def _state(scene):
    from emotalk3d_addon.bridge import action as action_mod
    from emotalk3d_addon.bridge import keys

    s = scene.emotalk3d
    act = s.last_action
    names = [kb.name for kb in s.head.data.shape_keys.key_blocks][1:]
    meta = act.emotalk3d
    return {"snapshot": snapshot(scene),
            "settings": (s.subject, s.audio_source, s.strip, s.emotion, round(s.intensity, 5), s.fill_from_speech,
                         s.push_to_nla),
            "keys": keys.scene_keys(scene, s, 1),
            "meta": (meta.generated, meta.subject, meta.audio, meta.fps_num, meta.fps_den, meta.num_frames,
                     meta.frame_start, meta.fingerprint),
            "head": (s.head.emotalk3d_head.subject, s.head.emotalk3d_head.fingerprint),
            "curves": action_mod.read_curves(act, act.slots[0], names),
            "frame_10": evaluated(s.head, 10), "frame_30": evaluated(s.head, 30)}


def test_save_reload_and_missing_subject(scene, trained_subject, speech, tmp_path):
    from emotalk3d_addon.bridge import checks

    subject = tmp_path / "library" / "tiny"
    shutil.copytree(trained_subject, subject)
    s = setup_scene(scene, subject, speech, start=1, fps=25)
    for frame, emotion in ((1, "sad"), (30, "surprised")):
        scene.frame_set(frame)
        s.emotion, s.intensity = emotion, 0.75
        bpy.ops.emotalk3d.key_emotion()
    assert bpy.ops.emotalk3d.generate() == {'FINISHED'}
    s.push_to_nla = True
    assert bpy.ops.emotalk3d.generate() == {'FINISHED'}       # a second performance, on the NLA
    s.push_to_nla = False
    before = _state(scene)
    assert len([a for a in bpy.data.actions if a.emotalk3d.generated]) == 2

    blend = tmp_path / "shot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    after = _state(bpy.context.scene)
    for k in ("snapshot", "settings", "keys", "meta", "head"):
        assert after[k] == before[k], k
    for k in ("curves", "frame_10", "frame_30"):
        np.testing.assert_array_equal(after[k], before[k])
    assert checks.for_scene(bpy.context.scene) == []

    shutil.rmtree(subject)                                  # the subject goes missing
    bpy.ops.wm.open_mainfile(filepath=str(blend))            # a warning, not an error
    warnings = checks.for_scene(bpy.context.scene)
    assert len(warnings) == 1 and "was not found" in warnings[0] and "still plays" in warnings[0]
    again = _state(bpy.context.scene)
    np.testing.assert_array_equal(again["frame_30"], before["frame_30"])
    import pytest

    with pytest.raises(RuntimeError, match="not found"):
        bpy.ops.emotalk3d.generate()
