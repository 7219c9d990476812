"""Sound strips: find, add, and read their timing (strips on 4.4+, sequences on 4.2)."""
from __future__ import annotations

import os

import bpy

from . import compat


def strip_audio_path(strip) -> str:
    """Absolute path of a sound strip's file ('' for other strips)."""
    sound = getattr(strip, "sound", None)
    if sound is None:
        return ""
    return os.path.normpath(bpy.path.abspath(sound.filepath, library=sound.library))


def sound_strips(scene) -> list:
    return [s for s in compat.all_strips(scene) if s.type == 'SOUND']


def find_strip(scene, name: str):
    if not name:
        return None
    for strip in compat.all_strips(scene):
        if strip.name == name:
            return strip
    return None


def find_strip_for_file(scene, path: str, frame_start: float | None = None):
    """A sound strip playing ``path`` (starting at ``frame_start`` when given), or None."""
    want = os.path.normpath(bpy.path.abspath(path))
    for strip in sound_strips(scene):
        if strip_audio_path(strip) == want and (frame_start is None or float(strip.frame_start) == float(frame_start)):
            return strip
    return None


def free_channel(scene, frame_start: float, frame_end: float) -> int:
    """The lowest channel with no strip overlapping [frame_start, frame_end)."""
    busy = set()
    for strip in compat.all_strips(scene):
        if strip.frame_final_start < frame_end and strip.frame_final_end > frame_start:
            busy.add(strip.channel)
    channel = 1
    while channel in busy:
        channel += 1
    return channel


def add_sound_strip(scene, path: str, frame_start: int, num_frames: int, name: str | None = None):
    """A sound strip for ``path`` at ``frame_start`` in a free channel (the editor is created if needed)."""
    sed = scene.sequence_editor or scene.sequence_editor_create()
    channel = free_channel(scene, frame_start, frame_start + max(1, num_frames))
    label = name or os.path.splitext(os.path.basename(path))[0] or "speech"
    return compat.top_strips(sed).new_sound(label, path, channel, int(frame_start))


def has_audio() -> bool:
    """Whether this Blender can hold sound strips (built with Audaspace; bpy 4.2 from PyPI is not)."""
    return bool(getattr(bpy.app.build_options, "audaspace", True))


def is_no_audio_error(exc: BaseException) -> bool:
    """True for the error of a Blender built without audio support (Audaspace)."""
    return "audaspace" in str(exc).lower()


def remove_strip(scene, strip) -> None:
    sed = scene.sequence_editor
    if sed is None:
        return
    sound = getattr(strip, "sound", None)
    compat.top_strips(sed).remove(strip)
    if sound is not None and sound.users == 0:
        bpy.data.sounds.remove(sound)
