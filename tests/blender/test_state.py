"""Blender state an artist can be in while generating: no camera, a deleted or renamed head,
a removed sound strip, playback, two generations at once, cancel at each stage, undo and
redo, saving and opening files mid-run. The scene is never left half-written."""
from __future__ import annotations

import time

import pytest

from .conftest import bpy, setup_scene, snapshot


def _session(**extra):
    from emotalk3d_addon.operators.generate import GenerateSession

    return GenerateSession.from_context(bpy.context, **extra)


def _wait_for(session, text: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in session.job.message and not session.finished and time.monotonic() < deadline:
        time.sleep(0.02)
    assert text in session.job.message, session.job.message


def _finish(session, timeout: float = 120.0):
    session.job.join(timeout)
    assert session.finished
    return session.finish(bpy.context)


def test_generate_needs_no_camera_and_adds_none(scene, trained_subject, speech):
    setup_scene(scene, trained_subject, speech)
    assert scene.camera is None
    assert bpy.ops.emotalk3d.generate() == {'FINISHED'}
    assert scene.camera is None and not any(ob.type == 'CAMERA' for ob in bpy.data.objects)


def test_deleted_head_is_rebuilt_and_renamed_head_is_reused(scene, trained_subject, speech):
    s = setup_scene(scene, trained_subject, speech)
    assert bpy.ops.emotalk3d.generate() == {'FINISHED'}
    head = s.head
    head.name = "Hero"
    assert bpy.ops.emotalk3d.generate() == {'FINISHED'}
    assert s.head.name == "Hero" and len([o for o in bpy.data.objects if o.type == 'MESH']) == 1
    bpy.data.objects.remove(head)
    assert bpy.ops.emotalk3d.generate() == {'FINISHED'}
    assert s.head is not None and s.head.name in scene.objects
    assert s.head.data.shape_keys.animation_data.action == s.last_action


def test_head_deleted_while_generating(scene, trained_subject, speech):
    s = setup_scene(scene, trained_subject, speech)
    assert bpy.ops.emotalk3d.generate() == {'FINISHED'}
    session = _session(debug_delay=1.0).start()
    _wait_for(session, "debug delay")
    bpy.data.objects.remove(s.head)
    result, level, message = _finish(session)
    assert result == {'FINISHED'}, message
    assert s.head is not None and s.head.name in scene.objects and s.last_action == session.applied.action


def test_strip_removed_before_or_during_generation(scene, trained_subject, speech):
    from emotalk3d_addon.bridge import sequencer

    s = setup_scene(scene, trained_subject, speech)
    assert bpy.ops.emotalk3d.generate() == {'FINISHED'}          # now follows its sound strip
    assert s.audio_source == 'STRIP'
    strip = sequencer.find_strip(scene, s.strip)
    session = _session(debug_delay=1.0).start()
    _wait_for(session, "debug delay")
    sequencer.remove_strip(scene, strip)
    before = snapshot()
    result, level, message = _finish(session)
    assert result == {'CANCELLED'} and level == 'ERROR' and "removed during generation" in message
    assert snapshot() == before
    with pytest.raises(RuntimeError, match="No sound strip named"):
        bpy.ops.emotalk3d.generate()
    assert snapshot() == before


def test_frames_change_during_generation_as_in_playback(scene, trained_subject, speech):
    setup_scene(scene, trained_subject, speech)
    scene.frame_end = 250
    session = _session(debug_delay=0.5).start()
    frame = 1
    while not session.finished:
        frame = frame % 250 + 1
        scene.frame_set(frame)                                    # the timeline keeps playing
        time.sleep(0.01)
    result, _, message = session.finish(bpy.context)
    assert result == {'FINISHED'}, message
    assert scene.frame_current == frame                          # generation does not move the playhead
    assert scene.emotalk3d.head.data.shape_keys.animation_data.action is not None


def test_two_generations_at_once(scene, trained_subject, speech):
    from emotalk3d_addon.bridge import jobs

    setup_scene(scene, trained_subject, speech)
    first = _session(debug_delay=1.0).start()
    _wait_for(first, "debug delay")
    with pytest.raises(jobs.UserError, match="already running"):
        _session()
    with pytest.raises(RuntimeError, match="already running"):
        bpy.ops.emotalk3d.generate()
    result, _, message = _finish(first)
    assert result == {'FINISHED'}, message
    assert len([a for a in bpy.data.actions if a.emotalk3d.generated]) == 1


@pytest.mark.parametrize("stage", ["at once", "starting the backend", "mid-request", "result arrived"])
def test_cancel_at_every_stage_changes_nothing(scene, trained_subject, speech, stage):
    from emotalk3d_addon.bridge import worker_client

    setup_scene(scene, trained_subject, speech)
    if stage == "starting the backend":
        worker_client.shutdown_client()                          # the next job starts a worker
    before = snapshot()
    session = _session(debug_delay=1.0 if stage == "mid-request" else 0.0).start()
    if stage == "starting the backend":
        _wait_for(session, "Starting the backend")
    elif stage == "mid-request":
        _wait_for(session, "debug delay")
    elif stage == "result arrived":
        session.job.join(120)
        assert session.job.state == "done"
    session.cancel()
    result, level, message = session.finish(bpy.context)
    if stage == "result arrived":
        # Esc after the result arrived (between two timer ticks): it is written whole, as one step
        assert result == {'FINISHED'}, message
        assert bpy.context.scene.emotalk3d.last_action is not None
    else:
        assert result == {'CANCELLED'} and "nothing was changed" in message
        assert snapshot() == before
    assert bpy.ops.emotalk3d.generate() == {'FINISHED'}          # and the next one works


def test_undo_and_redo_a_generation(scene, trained_subject, speech):
    setup_scene(scene, trained_subject, speech)
    bpy.ops.ed.undo_push(message="before")
    before = snapshot()
    assert bpy.ops.emotalk3d.generate('EXEC_DEFAULT', True) == {'FINISHED'}
    after = snapshot()
    bpy.ops.ed.undo()
    assert snapshot() == before
    bpy.ops.ed.redo()
    assert snapshot() == after
    s = bpy.context.scene.emotalk3d
    assert s.head.data.shape_keys.animation_data.action == s.last_action


def test_save_mid_run_then_open_another_file(scene, trained_subject, speech, tmp_path):
    setup_scene(scene, trained_subject, speech)
    session = _session(debug_delay=1.0).start()
    _wait_for(session, "debug delay")
    saved = tmp_path / "mid.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(saved))            # saving while the worker runs
    result, _, message = _finish(session)
    assert result == {'FINISHED'}, message
    bpy.ops.wm.open_mainfile(filepath=str(saved))
    reopened = snapshot()
    assert reopened["actions"] == [] and reopened["objects"] == []      # nothing half-written was saved

    # opening a file while generating cancels the generation: it was for a scene that is gone
    setup_scene(bpy.context.scene, trained_subject, speech)
    session = _session(debug_delay=5.0).start()
    _wait_for(session, "debug delay")
    bpy.ops.wm.open_mainfile(filepath=str(saved))
    result, level, message = _finish(session)
    assert result == {'CANCELLED'} and snapshot() == reopened


def test_scene_removed_while_generating(scene, trained_subject, speech):
    other = bpy.data.scenes.new("Other")
    setup_scene(other, trained_subject, speech)
    from emotalk3d_addon.bridge import jobs
    from emotalk3d_addon.operators.generate import GenerateSession
    from emotalk3d_addon.preferences import current_settings

    session = GenerateSession(jobs.build_request(other, current_settings(), debug_delay=1.0)).start()
    _wait_for(session, "debug delay")
    bpy.data.scenes.remove(other)
    before = snapshot()
    result, level, message = _finish(session)
    assert result == {'CANCELLED'} and "removed or renamed" in message
    assert snapshot() == before
