"""Render ahead: in an animation render, the worker renders the next frame while Blender
composites, writes and advances this one.

Blender's own work between two ``RenderEngine.render`` calls (the compositor, the image
file, the frame change) takes as long as the worker's frame at film sizes, and the worker
would sit idle through it. So once a frame's passes are back, ``start`` predicts the next
frame's inputs and sends them; at the next frame ``take`` hands that call over only when
the frame's real inputs, read from Blender as always, are identical to the predicted ones
(vertices bit for bit, matrices, emotion, camera, size, subject, device). A result
therefore never depends on rendering ahead: a miss discards the call, renders the frame
as usual, and stops rendering ahead until the next render starts.

A prediction is made only where it is exact:

* the head is hidden from the render (its vertices are the shape-key mix,
  ``gaussian_frame.shape_key_mix``; an evaluated, visible head would need Blender's
  evaluation of the next frame);
* the head, the camera and their parents have no animation, drivers or constraints, the
  camera's data is not animated and no marker switches cameras;
* the shape-key datablock is animated by its active Action alone (no drivers, no NLA
  strips, full influence), on key values and the emotion state only; the next frame's
  values are its F-curves evaluated there;
* no time remapping.

An animation render is one whose frames follow each other (``follows``; Blender's
``is_animation`` is False for a scene rendered as a compositor input), so a still render
never sends a frame ahead. State is module-wide (the engine instance may differ per
frame), reset when a render starts, and guarded by a lock: Blender renders on its own thread.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import compat, emotion_state
from .camera import PinholeCamera
from .gaussian_frame import FrameCall, HeadFrame, hidden_from_render, shape_key_mix, submit_head

KEY_VALUE_PREFIX = 'key_blocks["'
KEY_VALUE_SUFFIX = '"].value'


@dataclass
class _Ahead:
    frame_number: int
    signature: tuple
    vertices: np.ndarray            # (V, 3) float32, the predicted vertices
    call: FrameCall


@dataclass
class Stats:
    """What rendering ahead did since ``reset`` (for the render report, tests and benches)."""

    sent: int = 0
    hits: int = 0
    misses: int = 0
    stopped: str = ""               # why rendering ahead stopped in this render ("" while it runs)


_lock = threading.RLock()
_pending: _Ahead | None = None
_last_rendered: tuple[str, int] | None = None       # (scene, frame) this render rendered last
STATS = Stats()


def follows(scene) -> bool:
    """Note that ``scene`` renders its current frame now; True when this render's previous
    frame was the one before it (by the scene's frame step): an animation render. Blender
    tells an engine so only where it renders the scene itself, not as a compositor input."""
    global _last_rendered
    number = int(scene.frame_current)
    with _lock:
        last, _last_rendered = _last_rendered, (scene.name, number)
    return last == (scene.name, number - max(1, int(scene.frame_step)))


def signature(frame: HeadFrame, camera: PinholeCamera, dirs: list[Path], device: str, linear: bool) -> tuple:
    """Everything a frame's render depends on apart from its vertices."""
    return (frame.subject_path, camera.spec(), np.asarray(frame.object_to_world, np.float64).tobytes(),
            np.asarray(frame.emotion, np.float32).tobytes(), float(frame.intensity),
            tuple(str(d) for d in dirs), str(device), bool(linear))


def take(frame_number: int, frame: HeadFrame, camera: PinholeCamera, dirs: list[Path], device: str,
         linear: bool = True) -> FrameCall | None:
    """The call sent ahead for exactly this frame and these inputs, or None. A pending call
    that differs is discarded and rendering ahead stops for this render."""
    global _pending
    with _lock:
        ahead, _pending = _pending, None
    if ahead is None:
        return None
    if (ahead.frame_number == frame_number and ahead.signature == signature(frame, camera, dirs, device, linear)
            and ahead.vertices.shape == frame.vertices.shape and np.array_equal(ahead.vertices, frame.vertices)):
        STATS.hits += 1
        return ahead.call
    ahead.call.discard()
    STATS.misses += 1
    STATS.stopped = f"frame {frame_number}'s inputs were not the predicted ones"
    return None


def start(client, scene, head, frame: HeadFrame, camera: PinholeCamera, dirs: list[Path], device: str,
          linear: bool = True) -> bool:
    """Send the frame after ``scene.frame_current`` ahead when it can be predicted exactly
    (see the module docstring); True when sent."""
    global _pending
    if STATS.stopped:
        return False
    next_number = scene.frame_current + max(1, int(scene.frame_step))
    if next_number > scene.frame_end:
        return False
    predicted = predict(scene, head, frame, next_number)
    if predicted is None:
        return False
    call = submit_head(client, predicted, camera, dirs, device, linear)
    with _lock:
        old, _pending = _pending, _Ahead(next_number, signature(predicted, camera, dirs, device, linear),
                                         predicted.vertices, call)
    if old is not None:
        old.call.discard()
    STATS.sent += 1
    return True


def discard() -> None:
    """Drop a pending call (the render ended or was cancelled)."""
    global _pending
    with _lock:
        ahead, _pending = _pending, None
    if ahead is not None:
        ahead.call.discard()


def reset() -> None:
    """A new render starts: nothing pending, rendering ahead allowed again."""
    global STATS, _last_rendered
    discard()
    with _lock:
        _last_rendered = None
    STATS = Stats()


def pending_frame() -> int | None:
    with _lock:
        return None if _pending is None else _pending.frame_number


# --------------------------------------------------------------------------- prediction


def predict(scene, head, frame: HeadFrame, next_number: int) -> HeadFrame | None:
    """``frame`` moved to frame ``next_number`` by the head's shape-key Action, or None where
    the next frame cannot be predicted exactly."""
    if not hidden_from_render(head) or scene.camera is None:
        return None
    render = scene.render
    if render.frame_map_old != render.frame_map_new:
        return None
    if any(marker.camera is not None for marker in scene.timeline_markers):
        return None
    if not (_rigid_and_still(head) and _rigid_and_still(scene.camera) and _unanimated(scene.camera.data)):
        return None
    key = head.data.shape_keys
    if key is None:
        return frame if _unanimated(head.data) else None
    if not key.use_relative or not _unanimated(head.data):
        return None
    values = _key_values_at(key, next_number)
    if values is None:
        return None
    blocks, raw_emotion, raw_intensity = values
    current_emotion, current_intensity = key.get(emotion_state.EMOTION_PROP), key.get(emotion_state.INTENSITY_PROP)
    if raw_emotion:
        base = list(current_emotion) if current_emotion is not None else list(emotion_state.NEUTRAL)
        if len(base) != len(emotion_state.NEUTRAL):
            return None
        for index, value in raw_emotion.items():
            base[index] = value
        current_emotion = base
    if raw_intensity is not None:
        current_intensity = raw_intensity
    weights, intensity = emotion_state.state_from(current_emotion, current_intensity)
    vertices = shape_key_mix(key, len(head.data.vertices), blocks)
    return HeadFrame(frame.head_name, frame.subject_path, vertices, frame.object_to_world, weights, intensity)


def _key_values_at(key, frame_number: int):
    """({block name: value}, {emotion index: value}, intensity or None) of the shape-key
    datablock's active Action at ``frame_number``; None when anything else animates it."""
    ad = key.animation_data
    if ad is None:
        return {}, {}, None
    if len(ad.drivers) or any(not track.mute for track in ad.nla_tracks):
        return None
    if ad.action is None:
        return {}, {}, None
    if ad.action_influence != 1.0 or ad.action_blend_type != 'REPLACE':
        return None
    blocks: dict[str, float] = {}
    emotion: dict[int, float] = {}
    intensity = None
    names = set(key.key_blocks.keys())
    for fc in compat.id_fcurves(key):
        if fc.mute:
            continue
        path = fc.data_path
        value = float(fc.evaluate(frame_number))
        if path.startswith(KEY_VALUE_PREFIX) and path.endswith(KEY_VALUE_SUFFIX):
            name = path[len(KEY_VALUE_PREFIX):-len(KEY_VALUE_SUFFIX)]
            if name not in names:                # an escaped name: resolve it as Blender would
                return None
            blocks[name] = value
        elif path == emotion_state.emotion_path():
            emotion[fc.array_index] = value
        elif path == emotion_state.intensity_path():
            intensity = value
        else:
            return None
    return blocks, emotion, intensity


def _unanimated(id_data) -> bool:
    ad = getattr(id_data, "animation_data", None)
    return ad is None or (ad.action is None and not len(ad.drivers) and not len(ad.nla_tracks))


def _rigid_and_still(ob) -> bool:
    """No animation, drivers or constraints on ``ob`` and its parents."""
    while ob is not None:
        if not _unanimated(ob) or len(ob.constraints):
            return False
        if ob.parent_type != 'OBJECT':
            return False
        ob = ob.parent
    return True


__all__ = ["Stats", "STATS", "follows", "signature", "take", "start", "discard", "reset", "predict",
           "pending_frame"]
