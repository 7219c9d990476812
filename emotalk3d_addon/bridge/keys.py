"""The keyframed emotion and intensity (scene properties) -> the backend's emotion spec.

The scene's ``emotalk3d.emotion`` (enum, values 0-7 in the backend's order) and
``emotalk3d.intensity`` F-curves are read at every frame where either has a key; frames
become 0-based performance frames relative to the sound strip's start. Without keys,
the current values hold for the whole clip (or, with "emotion from speech", the
extractor's track is used everywhere).
"""
from __future__ import annotations

from ..backend.emotions import EMOTIONS
from ..backend.protocol.messages import EmotionKey, EmotionSpec
from . import compat

EMOTION_PATH = "emotalk3d.emotion"
INTENSITY_PATH = "emotalk3d.intensity"


def emotion_curves(scene):
    return compat.find_fcurve(scene, EMOTION_PATH), compat.find_fcurve(scene, INTENSITY_PATH)


def key_frames(scene) -> list[float]:
    frames: set[float] = set()
    for fc in emotion_curves(scene):
        if fc is not None:
            frames.update(float(kp.co[0]) for kp in fc.keyframe_points)
    return sorted(frames)


def scene_keys(scene, settings, strip_start: float) -> list[dict]:
    """[{frame, emotion, intensity}] with frames relative to ``strip_start``."""
    fc_e, fc_i = emotion_curves(scene)
    keys = []
    for frame in key_frames(scene):
        if fc_e is not None:
            index = min(max(int(round(fc_e.evaluate(frame))), 0), len(EMOTIONS) - 1)
            emotion = EMOTIONS[index]
        else:
            emotion = settings.emotion
        intensity = float(fc_i.evaluate(frame)) if fc_i is not None else float(settings.intensity)
        keys.append({"frame": frame - float(strip_start), "emotion": emotion,
                     "intensity": min(max(intensity, 0.0), 1.0)})
    return keys


def emotion_spec(scene, settings, strip_start: float) -> dict:
    """The worker's ``emotion`` parameter for this scene (``EmotionSpec``'s wire form)."""
    keys = scene_keys(scene, settings, strip_start)
    if keys:
        spec = EmotionSpec.keyed([EmotionKey(k["frame"], k["emotion"], k["intensity"]) for k in keys],
                                 bool(settings.fill_from_speech), float(settings.fill_reach))
    elif settings.fill_from_speech:
        spec = EmotionSpec.speech()
    else:
        spec = EmotionSpec.constant(settings.emotion, float(settings.intensity))
    return spec.to_dict()


def signature(scene) -> tuple:
    """Changes whenever an emotion or intensity key is added, moved, removed or edited."""
    out = []
    for fc in emotion_curves(scene):
        if fc is None:
            out.append(None)
            continue
        out.append(tuple((round(float(kp.co[0]), 4), round(float(kp.co[1]), 5)) for kp in fc.keyframe_points))
    return tuple(out)


def insert_key(scene, frame: float | None = None) -> None:
    """Key the scene's current emotion and intensity at ``frame`` (default: the current frame)."""
    settings = scene.emotalk3d
    frame = float(scene.frame_current if frame is None else frame)
    settings.keyframe_insert("emotion", frame=frame)
    settings.keyframe_insert("intensity", frame=frame)
    fc_e, _ = emotion_curves(scene)
    if fc_e is not None:
        for kp in fc_e.keyframe_points:
            kp.interpolation = 'CONSTANT'
