"""Blender operators (thin: read properties, call the worker through ``bridge``, write results)."""
from __future__ import annotations

from . import backend_ops, generate, render_ops, scene_ops, target_ops

CLASSES: tuple[type, ...] = (generate.CLASSES + scene_ops.CLASSES + backend_ops.CLASSES + render_ops.CLASSES
                             + target_ops.CLASSES)


def register() -> None:
    import bpy

    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    import bpy

    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
