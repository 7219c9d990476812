"""The per-frame emotion track: from the artist's keys, from speech (``utterance_emotion``),
or both.

Frames are 0-based indices into the performance (frame 0 starts with the audio).
Between two keys the weights and the intensity are linearly interpolated; before the
first key and after the last one the nearest key holds. Needs no PyTorch: Blender's side
reads keys files through it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..emotions import NUM_EMOTIONS, check_intensity, one_hot
from ..errors import InputError
from ..protocol.messages import EmotionKey, EmotionSpec, parse_keys


@dataclass(frozen=True)
class EmotionTrack:
    """weights (F, 8) float32 rows summing to 1; intensity (F,) float32 in [0, 1]."""

    weights: np.ndarray
    intensity: np.ndarray

    @property
    def num_frames(self) -> int:
        return int(self.weights.shape[0])


def constant_track(emotion: str, intensity: float, num_frames: int) -> EmotionTrack:
    """One emotion at one intensity for every frame."""
    w = np.tile(one_hot(emotion), (num_frames, 1))
    return EmotionTrack(w, np.full(num_frames, check_intensity(intensity), np.float32))


def track_from_keys(keys: list[EmotionKey], num_frames: int) -> EmotionTrack:
    """Interpolate keys to (F, 8) weights and (F,) intensity."""
    if not keys:
        raise InputError("no emotion keys given")
    keys = sorted(keys, key=lambda k: k.frame)
    frames = np.array([k.frame for k in keys], np.float64)
    points = np.stack([one_hot(k.emotion) for k in keys])
    levels = np.array([check_intensity(k.intensity) for k in keys], np.float64)
    t = np.arange(num_frames, dtype=np.float64)
    weights = np.stack([np.interp(t, frames, points[:, e]) for e in range(NUM_EMOTIONS)], axis=1)
    intensity = np.interp(t, frames, levels)
    return EmotionTrack(weights.astype(np.float32), intensity.astype(np.float32))


def read_keys_json(path: str | Path) -> list[EmotionKey]:
    """KEYS.json: ``[{"frame": f, "emotion": name, "intensity": x}, ...]`` (``protocol.parse_keys``)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"keys file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"keys file {path} is not valid JSON: {exc}") from None
    return parse_keys(data, f"keys file {path}")


def blend_keys_with_speech(keyed: EmotionTrack, speech: EmotionTrack, key_frames: list[float],
                           reach: float) -> EmotionTrack:
    """Emotion from speech fills the gaps between keys.

    Each key pins the emotion at its frame; its influence falls off linearly to zero
    ``reach`` frames away, and the speech track holds wherever no key reaches. Weights
    stay convex combinations (rows sum to 1).
    """
    num_frames = keyed.num_frames
    t = np.arange(num_frames, dtype=np.float64)
    alpha = np.zeros(num_frames, np.float64)
    reach = max(float(reach), 1e-6)
    for k in key_frames:
        np.maximum(alpha, np.clip(1.0 - np.abs(t - float(k)) / reach, 0.0, 1.0), out=alpha)
    a = alpha[:, None]
    weights = a * keyed.weights + (1.0 - a) * speech.weights
    intensity = alpha * keyed.intensity + (1.0 - alpha) * speech.intensity
    return EmotionTrack(weights.astype(np.float32), intensity.astype(np.float32))


def emotion_track(spec: EmotionSpec, num_frames: int, from_speech: Callable[[], EmotionTrack]) -> EmotionTrack:
    """The (F, 8) emotion track ``spec`` asks for; ``from_speech`` gives the extractor's track
    (called only when the spec needs it)."""
    if spec.mode == "constant":
        return constant_track(spec.emotion, spec.intensity, num_frames)
    if spec.mode == "speech":
        return from_speech()
    keyed = track_from_keys(list(spec.keys), num_frames)
    if not spec.fill_from_speech:
        return keyed
    return blend_keys_with_speech(keyed, from_speech(), [k.frame for k in spec.keys], spec.reach)
