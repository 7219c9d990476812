"""A new Action with one F-curve per basis shape key (and the emotion state's), written in bulk.

``keyframe_points.add(F)`` + ``foreach_set("co")`` + ``foreach_set("interpolation")``
per curve (hundreds of times faster than ``keyframe_insert``). On 4.4+ the action is
slotted (a ``KEY`` slot, one layer, one keyframe strip, its channelbag); on 4.2 the
legacy ``action.fcurves``.
"""
from __future__ import annotations

import bpy
import numpy as np

from . import compat, emotion_state

LINEAR = 1          # Keyframe.interpolation enum value
GROUP = "EmoTalk3D"


def data_path(key_name: str) -> str:
    """The F-curve path of a shape key's value (the name escaped as Blender escapes it: a key
    named with a double quote or a backslash still resolves)."""
    return f'key_blocks["{bpy.utils.escape_identifier(key_name)}"].value'


def fill_curve(fc, values: np.ndarray, frame_start: float) -> None:
    """Linear keys ``values`` (F,) at frames frame_start + f, replacing the curve's keys."""
    num_frames = values.shape[0]
    co = np.empty((num_frames, 2), np.float32)
    co[:, 0] = float(frame_start) + np.arange(num_frames, dtype=np.float64)
    co[:, 1] = values
    points = fc.keyframe_points
    if len(points) != num_frames:
        points.clear()
        points.add(num_frames)
    points.foreach_set("co", co.ravel())
    points.foreach_set("interpolation", np.full(num_frames, LINEAR, np.int32))
    fc.update()


def curve_specs(names: list[str], coefficients: np.ndarray, emotion=None, intensity=None) -> list:
    """(data_path, index, values (F,)) for every curve of a performance: one per shape key,
    then the emotion state's when given."""
    specs = [(data_path(name), 0, coefficients[:, k]) for k, name in enumerate(names)]
    if emotion is not None:
        specs += emotion_state.curves(emotion, intensity)
    return specs


def write_curves(fcurves_new, specs: list, frame_start: float) -> list:
    """One linear F-curve per (data_path, index, values) spec, keys at frames frame_start + f."""
    curves = []
    for path, index, values in specs:
        fc = fcurves_new(path, index)
        fill_curve(fc, np.ascontiguousarray(values, np.float32), frame_start)
        curves.append(fc)
    return curves


def new_shape_key_action(key: bpy.types.Key, name: str, names: list[str], coefficients: np.ndarray,
                         frame_start: float, emotion: np.ndarray | None = None, intensity: np.ndarray | None = None):
    """(action, slot): a new Action animating ``key``'s shape keys (and, given (F, 8) ``emotion``
    and (F,) ``intensity``, its emotion state); slot is None on 4.2."""
    coefficients = np.ascontiguousarray(coefficients, np.float32)
    if coefficients.ndim != 2 or coefficients.shape[1] != len(names):
        raise ValueError(f"coefficients must be (F, {len(names)}), got {coefficients.shape}")
    specs = curve_specs(names, coefficients, emotion, intensity)
    if emotion is not None:
        emotion_state.ensure_props(key)
    action = bpy.data.actions.new(name)
    try:
        if compat.has_slotted_actions():
            slot = action.slots.new(id_type='KEY', name=key.name)
            bag = compat.channelbag(action, slot, ensure=True)
            group = bag.groups.new(GROUP) if hasattr(bag, "groups") else None

            def fcurves_new(path, index):
                fc = bag.fcurves.new(path, index=index)
                if group is not None:
                    fc.group = group
                return fc
        else:  # Blender 4.2 - 4.3
            slot = None
            action.id_root = 'KEY'

            def fcurves_new(path, index):
                return action.fcurves.new(path, index=index, action_group=GROUP)

        write_curves(fcurves_new, specs, frame_start)
        action.use_frame_range = True
        last = float(frame_start) + max(coefficients.shape[0] - 1, 1)
        action.frame_start, action.frame_end = float(frame_start), last
        action.use_fake_user = True          # earlier generations stay in the file
    except Exception:
        bpy.data.actions.remove(action)
        raise
    return action, slot


def rewrite_shape_key_action(action, slot, names: list[str], coefficients: np.ndarray, frame_start: float,
                             emotion: np.ndarray | None = None, intensity: np.ndarray | None = None) -> bool:
    """Replace the keys of an existing generated action in place (auto-update); False if it does not fit."""
    coefficients = np.ascontiguousarray(coefficients, np.float32)
    specs = curve_specs(names, coefficients, emotion, intensity)
    curves = {(fc.data_path, fc.array_index): fc for fc in compat.action_fcurves(action, slot)}
    if set(curves) != {(path, index) for path, index, _ in specs}:
        return False
    for path, index, values in specs:
        fill_curve(curves[(path, index)], np.ascontiguousarray(values, np.float32), frame_start)
    num_frames = coefficients.shape[0]
    action.frame_start, action.frame_end = float(frame_start), float(frame_start) + max(num_frames - 1, 1)
    return True


def read_curves(action, slot, names: list[str]) -> np.ndarray:
    """(F, K) keyframe values of the action's curves (for checks and round trips)."""
    curves = {fc.data_path: fc for fc in compat.action_fcurves(action, slot)
               if not emotion_state.is_emotion_path(fc.data_path)}
    cols = []
    for name in names:
        fc = curves[data_path(name)]
        co = np.empty(len(fc.keyframe_points) * 2, np.float32)
        fc.keyframe_points.foreach_get("co", co)
        cols.append(co[1::2])
    return np.stack(cols, axis=1)
