"""Checks when a .blend is opened: a missing subject or audio file is a warning, never an error.

The head, its shape keys and every generated action are saved in the file and keep
playing; only re-generating needs the subject bundle and the audio again.
"""
from __future__ import annotations

import os
import sys

import bpy
from bpy.app.handlers import persistent

from . import sequencer, subjects

_WARNINGS: dict[str, list[str]] = {}


def check_scene(scene, dirs) -> list[str]:
    s = getattr(scene, "emotalk3d", None)
    if s is None:
        return []
    out = []
    if s.subject and subjects.resolve(s.subject, dirs) is None:
        out.append(f"Subject '{s.subject}' was not found (add its library folder in Preferences); "
                   "the saved performance still plays")
    if s.audio_source == 'FILE' and s.audio_file and not os.path.isfile(bpy.path.abspath(s.audio_file)):
        out.append(f"Audio file not found: {s.audio_file}")
    if s.audio_source == 'STRIP' and s.strip:
        strip = sequencer.find_strip(scene, s.strip)
        if strip is None:
            out.append(f"Sound strip '{s.strip}' is missing")
        elif not os.path.isfile(sequencer.strip_audio_path(strip)):
            out.append(f"Audio of strip '{s.strip}' not found: {sequencer.strip_audio_path(strip)}")
    return out


def check_all() -> dict[str, list[str]]:
    from .. import preferences

    dirs = preferences.current_settings().library_dirs()
    _WARNINGS.clear()
    for scene in bpy.data.scenes:
        found = check_scene(scene, dirs)
        if found:
            _WARNINGS[scene.name] = found
            for text in found:
                print(f"EmoTalk3D warning ({scene.name}): {text}", file=sys.stderr)
    return dict(_WARNINGS)


def for_scene(scene) -> list[str]:
    return _WARNINGS.get(scene.name, [])


@persistent
def on_load_pre(*_args) -> None:
    """Another file replaces this one: a running generation was for a scene that is going away."""
    from . import jobs

    job = jobs.active_job()
    if job is not None and not job.finished:
        print("EmoTalk3D: a file was opened while generating; the generation was cancelled", file=sys.stderr)
        job.cancel()


@persistent
def on_load_post(*_args) -> None:
    from . import auto

    auto.reset()
    try:
        check_all()
    except Exception as exc:  # noqa: BLE001 - a check must never break loading a file
        print(f"EmoTalk3D warning: could not check the file: {exc}", file=sys.stderr)


def register() -> None:
    if on_load_post not in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.append(on_load_post)
    if on_load_pre not in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.append(on_load_pre)


def unregister() -> None:
    if on_load_post in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(on_load_post)
    if on_load_pre in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(on_load_pre)
    _WARNINGS.clear()
