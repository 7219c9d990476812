"""Auto-update: re-generate shortly after the emotion keys change (debounced).

A depsgraph handler compares the scene's emotion-key signature with the last one seen;
a change (re)arms a deadline ``DEBOUNCE_S`` later, so a burst of edits (dragging keys)
gives one re-generation. A timer then starts ``emotalk3d.generate`` with
``reuse_action`` so the last performance is rewritten in place instead of piling up
actions; with the speech features cached only S2GNet runs again.
"""
from __future__ import annotations

import time

import bpy
from bpy.app.handlers import persistent

from . import jobs, keys

DEBOUNCE_S = 0.4
_signatures: dict[str, tuple] = {}
_deadline: dict[str, float] = {}


def reset(scene=None) -> None:
    """Forget what was seen (a new file, auto-update switched on)."""
    if scene is None:
        _signatures.clear()
        _deadline.clear()
    else:
        _signatures[scene.name] = keys.signature(scene)
        _deadline.pop(scene.name, None)


def note_changes(scene, now: float | None = None) -> bool:
    """Arm the debounce when this scene's emotion keys changed; True when armed."""
    settings = getattr(scene, "emotalk3d", None)
    if settings is None or not settings.auto_update or settings.last_action is None:
        return False
    sig = keys.signature(scene)
    old = _signatures.get(scene.name)
    _signatures[scene.name] = sig
    if old is None or old == sig:
        return False
    _deadline[scene.name] = (time.monotonic() if now is None else now) + DEBOUNCE_S
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=DEBOUNCE_S)
    return True


def due(now: float | None = None) -> list[str]:
    now = time.monotonic() if now is None else now
    return [name for name, t in _deadline.items() if t <= now]


def tick(now: float | None = None):
    """Timer: start the re-generations whose deadline passed; return the next interval or None."""
    now = time.monotonic() if now is None else now
    job = jobs.active_job()
    if job is not None and not job.finished:
        return 0.25                      # wait for the running generation
    for name in due(now):
        _deadline.pop(name, None)
        scene = bpy.data.scenes.get(name)
        if scene is not None:
            _start(scene)
    if _deadline:
        return max(0.05, min(_deadline.values()) - now)
    return None


def _start(scene) -> None:
    wm = bpy.context.window_manager
    window = next((w for w in wm.windows if w.scene == scene), None) if wm is not None else None
    if window is None or bpy.app.background:
        with bpy.context.temp_override(scene=scene):
            bpy.ops.emotalk3d.generate('EXEC_DEFAULT', reuse_action=True)
        return
    with bpy.context.temp_override(window=window, scene=scene):
        bpy.ops.emotalk3d.generate('INVOKE_DEFAULT', reuse_action=True)


@persistent
def on_depsgraph_update(scene, depsgraph=None) -> None:
    try:
        note_changes(scene)
    except (ReferenceError, AttributeError):
        pass


def register() -> None:
    if on_depsgraph_update not in bpy.app.handlers.depsgraph_update_post:
        bpy.app.handlers.depsgraph_update_post.append(on_depsgraph_update)


def unregister() -> None:
    if on_depsgraph_update in bpy.app.handlers.depsgraph_update_post:
        bpy.app.handlers.depsgraph_update_post.remove(on_depsgraph_update)
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)
    reset()
