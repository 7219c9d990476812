"""A new Action with one F-curve per basis shape key, written in bulk.

``keyframe_points.add(F)`` + ``foreach_set("co")`` + ``foreach_set("interpolation")``
per curve (hundreds of times faster than ``keyframe_insert``). On 4.4+ the action is
slotted (a ``KEY`` slot, one layer, one keyframe strip, its channelbag); on 4.2 the
legacy ``action.fcurves``.
"""
from __future__ import annotations

import bpy
import numpy as np

from . import compat

LINEAR = 1          # Keyframe.interpolation enum value
GROUP = "EmoTalk3D"


def data_path(key_name: str) -> str:
    return f'key_blocks["{key_name}"].value'


def write_curves(fcurves_new, names: list[str], coefficients: np.ndarray, frame_start: float) -> list:
    """One linear F-curve per name with ``coefficients[:, k]`` at frames frame_start + f."""
    num_frames = coefficients.shape[0]
    co = np.empty((num_frames, 2), np.float32)
    co[:, 0] = float(frame_start) + np.arange(num_frames, dtype=np.float64)
    interpolation = np.full(num_frames, LINEAR, np.int32)
    curves = []
    for k, name in enumerate(names):
        fc = fcurves_new(data_path(name))
        fc.keyframe_points.add(num_frames)
        co[:, 1] = coefficients[:, k]
        fc.keyframe_points.foreach_set("co", co.ravel())
        fc.keyframe_points.foreach_set("interpolation", interpolation)
        fc.update()
        curves.append(fc)
    return curves


def new_shape_key_action(key: bpy.types.Key, name: str, names: list[str], coefficients: np.ndarray,
                         frame_start: float):
    """(action, slot): a new Action animating ``key``'s shape keys; slot is None on 4.2."""
    coefficients = np.ascontiguousarray(coefficients, np.float32)
    if coefficients.ndim != 2 or coefficients.shape[1] != len(names):
        raise ValueError(f"coefficients must be (F, {len(names)}), got {coefficients.shape}")
    action = bpy.data.actions.new(name)
    try:
        if compat.has_slotted_actions():
            slot = action.slots.new(id_type='KEY', name=key.name)
            bag = compat.channelbag(action, slot, ensure=True)
            group = bag.groups.new(GROUP) if hasattr(bag, "groups") else None

            def fcurves_new(path):
                fc = bag.fcurves.new(path, index=0)
                if group is not None:
                    fc.group = group
                return fc
        else:  # Blender 4.2 - 4.3
            slot = None
            action.id_root = 'KEY'

            def fcurves_new(path):
                return action.fcurves.new(path, index=0, action_group=GROUP)

        write_curves(fcurves_new, names, coefficients, frame_start)
        action.use_frame_range = True
        last = float(frame_start) + max(coefficients.shape[0] - 1, 1)
        action.frame_start, action.frame_end = float(frame_start), last
        action.use_fake_user = True          # earlier generations stay in the file
    except Exception:
        bpy.data.actions.remove(action)
        raise
    return action, slot


def rewrite_shape_key_action(action, slot, names: list[str], coefficients: np.ndarray, frame_start: float) -> bool:
    """Replace the keys of an existing generated action in place (auto-update); False if it does not fit."""
    curves = {fc.data_path: fc for fc in compat.action_fcurves(action, slot)}
    if set(curves) != {data_path(n) for n in names}:
        return False
    coefficients = np.ascontiguousarray(coefficients, np.float32)
    num_frames = coefficients.shape[0]
    co = np.empty((num_frames, 2), np.float32)
    co[:, 0] = float(frame_start) + np.arange(num_frames)
    interpolation = np.full(num_frames, LINEAR, np.int32)
    for k, name in enumerate(names):
        fc = curves[data_path(name)]
        points = fc.keyframe_points
        if len(points) != num_frames:
            points.clear()
            points.add(num_frames)
        co[:, 1] = coefficients[:, k]
        points.foreach_set("co", co.ravel())
        points.foreach_set("interpolation", interpolation)
        fc.update()
    action.frame_start, action.frame_end = float(frame_start), float(frame_start) + max(num_frames - 1, 1)
    return True


def read_curves(action, slot, names: list[str]) -> np.ndarray:
    """(F, K) keyframe values of the action's curves (for checks and round trips)."""
    curves = {fc.data_path: fc for fc in compat.action_fcurves(action, slot)}
    cols = []
    for name in names:
        fc = curves[data_path(name)]
        co = np.empty(len(fc.keyframe_points) * 2, np.float32)
        fc.keyframe_points.foreach_get("co", co)
        cols.append(co[1::2])
    return np.stack(cols, axis=1)
