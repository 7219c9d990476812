"""Emotion keys (frame, emotion, intensity) -> a per-frame emotion track.

Frames are 0-based indices into the performance (frame 0 starts with the audio).
Between two keys the weights and the intensity are linearly interpolated; before the
first key and after the last one the nearest key holds.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .emotions import NUM_EMOTIONS, check_intensity, one_hot
from .errors import InputError


@dataclass(frozen=True)
class EmotionKey:
    frame: float
    emotion: str
    intensity: float


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
    """KEYS.json: ``[{"frame": f, "emotion": name, "intensity": x}, ...]``."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"keys file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"keys file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, list) or not data:
        raise InputError(f"keys file {path} must hold a non-empty JSON list of keys")
    keys = []
    for n, item in enumerate(data):
        if not isinstance(item, dict) or set(item) - {"frame", "emotion", "intensity"} or \
                not {"frame", "emotion"} <= set(item):
            raise InputError(f"keys file {path}: key {n} must be an object with 'frame', 'emotion' "
                             "and optionally 'intensity'")
        frame, emotion, intensity = item["frame"], item["emotion"], item.get("intensity", 1.0)
        if isinstance(frame, bool) or not isinstance(frame, (int, float)) or not np.isfinite(frame) \
                or frame < 0:
            raise InputError(f"keys file {path}: key {n} has an invalid frame {frame!r}")
        if not isinstance(emotion, str):
            raise InputError(f"keys file {path}: key {n} has an invalid emotion {emotion!r}")
        if isinstance(intensity, bool) or not isinstance(intensity, (int, float)):
            raise InputError(f"keys file {path}: key {n} has an invalid intensity {intensity!r}")
        one_hot(emotion)
        keys.append(EmotionKey(float(frame), emotion.strip().lower(), check_intensity(intensity)))
    return keys
