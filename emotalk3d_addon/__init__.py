"""EmoTalk3D for Blender: register()/unregister() only.

Importing this package never imports bpy or torch, so the backend
(``emotalk3d_addon.backend``) stays usable on machines without Blender.
"""
from __future__ import annotations


def register() -> None:
    from . import operators, panels

    operators.register()
    panels.register()


def unregister() -> None:
    from . import operators, panels

    panels.unregister()
    operators.unregister()
