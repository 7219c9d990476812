"""Write a finished generation into the scene, all in one operator step.

Order: the sound strip (file audio only), the head (first use), the Action, the
assignments, then the dialogue strip of the performance this one replaces (removed when it
is the extension's and untouched, muted when the artist edited it, never touched when the
artist made it) and the scene's frame range (widened to hold the whole performance).
Anything created is removed again if a step fails, so an error leaves the scene as it was;
one undo step removes a finished generation, old strip and frame range included.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import bpy
import numpy as np

from . import action as action_mod
from . import arkit_target
from . import compat, mesh, sequencer
from .errors import UserError
from .jobs import GenerateRequest, GenerationResult


@dataclass
class Applied:
    head: bpy.types.Object
    action: bpy.types.Action
    strip_name: str
    frame_start: float
    num_frames: int
    created_head: bool
    created_strip: bool
    reused_action: bool
    unmatched: list[str] = field(default_factory=list)   # ARKit shapes moved that the target has no key for
    frame_range: tuple[int, int] | None = None           # the scene's range when it had to be widened
    replaced_strip: str = ""                              # the previous dialogue strip of ours ...
    replaced_how: str = ""                                # ... "removed" or "muted"
    kept_strip: str = ""                                  # the artist's previous dialogue strip, left playing


def cover_frame_range(scene, frame_start: float, num_frames: int, exact: bool = False) -> tuple[int, int] | None:
    """Make the scene's range hold the performance's frames (``frame_start`` .. ``+ num_frames - 1``).

    Widened only: a range the artist set around the performance is kept, and a performance
    starting before the range moves its start back (playback and renders hold the first
    and the last word). ``exact``: the range becomes the performance's (a new file, headless).
    Frames are clamped to Blender's 0 .. 1048574. Returns the new (start, end), or None when
    nothing changed."""
    props = scene.bl_rna.properties
    lo, hi = int(props["frame_start"].hard_min), int(props["frame_end"].hard_max)
    first = min(max(lo, math.floor(frame_start)), hi)
    last = min(max(first, math.ceil(frame_start + max(1, num_frames) - 1)), hi)
    old = (scene.frame_start, scene.frame_end)
    new = (first, last) if exact else (min(old[0], first), max(old[1], last))
    if new == old:
        return None
    scene.frame_start = new[0]          # first: Blender keeps end >= start
    scene.frame_end = new[1]
    return new


def _active_action(key):
    """The generated Action playing on a shape-key datablock (not from the NLA), or None."""
    ad = key.animation_data if key is not None else None
    act = ad.action if ad is not None else None
    return act if act is not None and act.emotalk3d.generated else None


def _follows(strip_name: str, other_than) -> bool:
    """Whether a generated Action other than ``other_than`` still plays (active or in the NLA)
    following the strip ``strip_name``."""
    for key in bpy.data.shape_keys:
        ad = key.animation_data
        if ad is None:
            continue
        acts = [ad.action] + [s.action for track in ad.nla_tracks for s in track.strips]
        if any(a is not None and a != other_than and a.emotalk3d.generated and a.emotalk3d.strip == strip_name
               for a in acts):
            return True
    return False


def _replace_dialogue(scene, previous, strip, created_strip: bool, applied: "Applied") -> None:
    """The dialogue follows the performance: the strip the replaced Action followed stops playing."""
    if previous is None or previous == applied.action:
        return
    meta = previous.emotalk3d
    old = sequencer.find_dialogue(scene, meta.strip, meta.audio, meta.frame_start)
    if old is None or old == strip or old.mute or _follows(old.name, previous):
        return
    if not sequencer.is_ours(old):
        applied.kept_strip = old.name
        return
    name, channel = old.name, old.channel
    applied.replaced_how = sequencer.retire(scene, old)
    applied.replaced_strip = name
    if applied.replaced_how == "removed" and created_strip and strip.channel > channel \
            and sequencer.free_channel_at(scene, channel, strip.frame_final_start, strip.frame_final_end):
        strip.channel = channel              # the new dialogue takes the old one's place


def find_head(scene, settings, fingerprint: str, num_vertices: int, num_components: int):
    """The scene's head for this subject (settings.head first), or None."""
    candidates = [settings.head] if settings.head is not None else []
    candidates += [ob for ob in scene.objects if ob is not settings.head]
    for ob in candidates:
        if ob is None or ob.name not in scene.objects:
            continue
        info = ob.emotalk3d_head
        if info.fingerprint == fingerprint and mesh.head_matches(ob, num_vertices, num_components):
            return ob
    return None


def _collection(context, scene):
    layer = getattr(context, "view_layer", None) if context is not None else None
    if layer is not None and layer.active_layer_collection is not None and context.scene == scene:
        return layer.active_layer_collection.collection
    return scene.collection


def _remove_head(ob) -> None:
    me = ob.data
    key = me.shape_keys if me is not None else None
    bpy.data.objects.remove(ob)
    if me is not None and me.users == 0:
        bpy.data.meshes.remove(me)
    if key is not None:
        try:
            if key.users == 0:
                bpy.data.shape_keys.remove(key)   # freed with its mesh on most versions
        except ReferenceError:
            pass


def _describe(act, request: GenerateRequest, subject: dict, strip_name: str, frame_start: float, num_frames: int,
              result: GenerationResult) -> None:
    """What the generated Action records about itself (its panel, auto-update, farms)."""
    meta = act.emotalk3d
    meta.generated = True
    meta.subject, meta.fingerprint = request.subject_ref, subject["fingerprint"]
    meta.audio, meta.strip = request.audio, strip_name
    meta.fps_num, meta.fps_den = request.fps.numerator, request.fps.denominator
    meta.frame_start, meta.num_frames = frame_start, num_frames
    meta.emotion_mode = str(request.emotion.get("mode", ""))
    meta.basis_max_mm = float(result.info.get("basis_max_mm", 0.0))


def apply_generation(context, scene, request: GenerateRequest, result: GenerationResult) -> Applied:
    settings = scene.emotalk3d
    subject = result.subject
    coeffs = np.ascontiguousarray(result.coefficients, np.float32)
    num_frames, num_components = coeffs.shape
    names = mesh.key_names(num_components)
    created: list = []
    had_sequencer = scene.sequence_editor is not None
    old_range = (scene.frame_start, scene.frame_end)
    try:
        # 1. the sound strip (a Blender built without audio, like bpy 4.2 from PyPI, cannot hold
        #    one: the performance then starts at the start frame and the report says so)
        created_strip, strip = False, None
        if request.audio_is_file:
            strip = sequencer.find_strip_for_file(scene, request.audio, request.start_frame)
            if strip is None and sequencer.has_audio():      # without audio: no editor is made either
                try:
                    strip = sequencer.add_sound_strip(scene, request.audio, int(request.start_frame), num_frames)
                except RuntimeError as exc:
                    if not sequencer.is_no_audio_error(exc):
                        raise
                else:
                    created.append(("strip", strip))
                    created_strip = True
        else:
            strip = sequencer.find_strip(scene, request.strip)
            if strip is None:
                raise UserError(f"The sound strip {request.strip!r} was removed during generation")
        frame_start = float(strip.frame_start) if strip is not None else float(request.start_frame)
        strip_name = strip.name if strip is not None else ""

        if settings.target is not None:
            target = settings.target
            if not arkit_target.is_character(target) or target.name not in scene.objects:
                raise UserError(f"The target {target.name!r} is not a mesh with shape keys in this scene")
            if result.arkit is None:
                raise UserError(f"Subject {subject.get('name', '')!r} has no ARKit shapes, so it cannot drive "
                                f"{target.name!r}: clear the target, or choose a subject with ARKit shapes")
            last = settings.last_action
            if result.arkit_neutral is None:
                raise UserError(f"The target {target.name!r} was chosen while the performance was being made: "
                                "generate again")
            same = last is not None and last.emotalk3d.target == target.name and \
                last.emotalk3d.audio == request.audio and last.emotalk3d.frame_start == frame_start
            previous = _active_action(target.data.shape_keys)
            if request.reuse_action and same and arkit_target.reuse(last, result.arkit, settings, target,
                                                                    result.arkit_neutral):
                _describe(last, request, subject, strip_name, frame_start, num_frames, result)
                last.emotalk3d.arkit_rms_mm = float(result.info.get("arkit_rms_mm") or 0.0)
                applied = Applied(target, last, strip_name, frame_start, num_frames, False, created_strip, True)
                return _finish(scene, request, applied, None, strip, created_strip)
            act, slot, unmatched = arkit_target.write_target_action(
                target, result.arkit, frame_start, float(request.fps), settings, f"{request.audio_stem} ({target.name})",
                result.arkit_neutral)
            created.append(("action", act))
            _describe(act, request, subject, strip_name, frame_start, num_frames, result)
            act.emotalk3d.target = target.name
            act.emotalk3d.arkit_rms_mm = float(result.info.get("arkit_rms_mm") or 0.0)
            if request.push_to_nla:
                compat.nla_push(target.data.shape_keys, act, slot, frame_start, act.name)
            else:
                compat.assign_action(target.data.shape_keys, act, slot)
            settings.last_action = act
            if request.audio_is_file and strip is not None:
                settings.audio_source, settings.strip = 'STRIP', strip_name
            applied = Applied(target, act, strip_name, frame_start, num_frames, False, created_strip, False, unmatched)
            return _finish(scene, request, applied, previous, strip, created_strip)

        # 2. the head
        head = find_head(scene, settings, subject["fingerprint"], subject["num_vertices"], num_components)
        created_head = head is None
        if head is None:
            arr = result.subject_arrays
            head = mesh.build_head(subject.get("name") or "EmoTalk3D head", _collection(context, scene),
                                   scene.cursor.location, arr["template"], arr["triangles"], arr["uvs"],
                                   arr["components"])
            created.append(("head", head))
            mesh.place_clear(head, scene)
            info = head.emotalk3d_head
            info.subject, info.subject_name = request.subject_ref, str(subject.get("name", ""))
            info.fingerprint, info.num_components = subject["fingerprint"], num_components
        key = head.data.shape_keys
        previous = _active_action(key)

        # 3. the action (a new one, or the last one rewritten in place by auto-update)
        act, slot, reused = None, None, False
        last = settings.last_action
        if request.reuse_action and last is not None and last.emotalk3d.generated \
                and last.emotalk3d.fingerprint == subject["fingerprint"] and last.emotalk3d.audio == request.audio:
            slot = last.slots[0] if compat.has_slotted_actions() and len(last.slots) else None
            if action_mod.rewrite_shape_key_action(last, slot, names, coeffs, frame_start,
                                                   result.emotion, result.intensity):
                act, reused = last, True
        if act is None:
            act, slot = action_mod.new_shape_key_action(key, request.audio_stem, names, coeffs, frame_start,
                                                        result.emotion, result.intensity)
            created.append(("action", act))
        mesh.widen_sliders(key, names, coeffs)
        _describe(act, request, subject, strip_name, frame_start, num_frames, result)

        # 4. assignments (nothing below creates data)
        if not reused:
            if request.push_to_nla:
                compat.nla_push(key, act, slot, frame_start, act.name)
                ad = key.animation_data
                if ad.action is not None and ad.action.emotalk3d.generated:
                    ad.action = None
            else:
                compat.assign_action(key, act, slot)
        settings.head = head
        settings.last_action = act
        if request.audio_is_file and strip is not None:
            settings.audio_source, settings.strip = 'STRIP', strip_name
        applied = Applied(head, act, strip_name, frame_start, num_frames, created_head, created_strip, reused)
        return _finish(scene, request, applied, previous, strip, created_strip)
    except Exception:
        for kind, data in reversed(created):
            try:
                if kind == "action":
                    bpy.data.actions.remove(data)
                elif kind == "head":
                    _remove_head(data)
                elif kind == "strip":
                    sequencer.remove_strip(scene, data)
            except ReferenceError:
                pass
        if not had_sequencer and scene.sequence_editor is not None and not compat.all_strips(scene):
            scene.sequence_editor_clear()
        scene.frame_start, scene.frame_end = old_range
        raise


def _finish(scene, request: GenerateRequest, applied: Applied, previous, strip, created_strip: bool) -> Applied:
    """The last steps, after everything that can fail: the replaced take's dialogue, the range."""
    if previous is not None and not applied.reused_action and not request.push_to_nla:
        _replace_dialogue(scene, previous, strip, created_strip, applied)   # NLA takes keep their strips
    if created_strip:
        sequencer.mark_ours(strip, request.audio)
    elif strip is not None:
        sequencer.revive(strip)              # our strip, muted by an earlier Generate: the dialogue again
    applied.frame_range = cover_frame_range(scene, applied.frame_start, applied.num_frames,
                                            exact=request.exact_frame_range)
    return applied
