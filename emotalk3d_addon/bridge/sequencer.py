"""Sound strips: find, add, and read their timing (strips on 4.4+, sequences on 4.2).

A dialogue strip Generate adds is marked as the extension's (a custom property holding the
file and the strip's state when it was placed), so a later Generate with other audio can
tell it from the artist's own strips: an untouched one of ours is removed, one the artist
has edited since is muted, and a strip the artist made is never changed.
"""
from __future__ import annotations

import json
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


def free_channel_at(scene, channel: int, frame_start: float, frame_end: float) -> bool:
    """Whether no strip in ``channel`` overlaps [frame_start, frame_end)."""
    return not any(strip.channel == channel and strip.frame_final_start < frame_end
                   and strip.frame_final_end > frame_start for strip in compat.all_strips(scene))


def add_sound_strip(scene, path: str, frame_start: int, num_frames: int, name: str | None = None):
    """A sound strip for ``path`` at ``frame_start`` in a free channel (the editor is created if needed).

    ``path`` may be an audio file or a video container (MP4, MOV, MKV, WebM): the strip plays
    its audio. The strip is at most ``num_frames`` long: Blender takes a Matroska/WebM file's
    length from the container, which can run past the audio (the video's end)."""
    sed = scene.sequence_editor or scene.sequence_editor_create()
    channel = free_channel(scene, frame_start, frame_start + max(1, num_frames))
    label = name or os.path.splitext(os.path.basename(path))[0] or "speech"
    strip = compat.top_strips(sed).new_sound(label, path, channel, int(frame_start))
    if num_frames > 0 and strip.frame_final_duration > num_frames:
        strip.frame_final_duration = int(num_frames)
    return strip


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


# --------------------------------------------------------------------------- the extension's dialogue strips

MARK = "emotalk3d_dialogue"
"""Custom property on a sound strip Generate added: {"audio", "frame_start", "state", "muted"}."""


def _state(strip) -> str:
    """What an artist's edit would change: name, file, channel, placement, trim, volume, mute.
    (The file by its name: a project folder moved with its .blend is no edit.)"""
    return json.dumps([strip.name, os.path.basename(strip_audio_path(strip)), int(strip.channel),
                       float(strip.frame_start), int(strip.frame_final_start), int(strip.frame_final_end),
                       float(getattr(strip, "volume", 1.0)), bool(strip.mute)])


def mark_ours(strip, audio: str) -> None:
    """Record that Generate placed ``strip`` for ``audio`` (call after its last change)."""
    strip[MARK] = {"audio": os.path.normpath(audio), "frame_start": float(strip.frame_start),
                   "state": _state(strip), "muted": 0}


def is_ours(strip) -> bool:
    return strip is not None and strip.get(MARK) is not None


def is_untouched(strip) -> bool:
    """Ours, and exactly as Generate left it."""
    return is_ours(strip) and str(strip[MARK].get("state", "")) == _state(strip)


def find_dialogue(scene, name: str, audio: str, frame_start: float):
    """The strip a performance followed: by ``name``, else our strip for ``audio`` at ``frame_start``
    (found again after the artist renamed it); None when it is gone."""
    strip = find_strip(scene, name)
    if strip is not None and strip.type == 'SOUND':
        return strip
    want = os.path.normpath(bpy.path.abspath(audio)) if audio else ""
    for strip in sound_strips(scene):
        mark = strip.get(MARK)
        if mark is not None and want and str(mark.get("audio", "")) == want \
                and float(mark.get("frame_start", -1e9)) == float(frame_start):
            return strip
    return None


def retire(scene, strip) -> str:
    """Stop an old dialogue strip of ours: removed when untouched, muted when the artist edited it
    (their edits stay, unmuting brings it back). Returns "removed" or "muted"."""
    if not is_ours(strip):
        raise ValueError(f"{strip.name!r} is not a strip the extension added")
    if is_untouched(strip):
        remove_strip(scene, strip)
        return "removed"
    mark = strip[MARK]
    strip.mute = True
    mark["muted"] = 1
    return "muted"


def revive(strip) -> bool:
    """Unmute a strip of ours that an earlier Generate muted (it is the dialogue again)."""
    if not is_ours(strip) or not int(strip[MARK].get("muted", 0)):
        return False
    strip.mute = False
    strip[MARK]["muted"] = 0
    return True
