"""The eight emotion categories and emotion states (SPEC 2.1).

An emotion state is an 8-way weight vector summing to 1 plus an intensity in [0, 1]
(mild ~ 0.5, strong = 1.0), so keys can blend.
"""
from __future__ import annotations

import numpy as np

from .errors import InputError

EMOTIONS: tuple[str, ...] = (
    "neutral", "angry", "contempt", "disgusted", "fear", "happy", "sad", "surprised",
)
NUM_EMOTIONS = len(EMOTIONS)
CONDITION_DIM = NUM_EMOTIONS + 1  # weights (8) + intensity (1)
MILD, STRONG = 0.5, 1.0


def emotion_index(name: str) -> int:
    """Index of an emotion name (case-insensitive); InputError for unknown names."""
    key = name.strip().lower()
    if key not in EMOTIONS:
        raise InputError(f"unknown emotion {name!r}; choose one of: {', '.join(EMOTIONS)}")
    return EMOTIONS.index(key)


def one_hot(name: str) -> np.ndarray:
    """(8,) float32 weights with 1 at ``name``."""
    w = np.zeros(NUM_EMOTIONS, np.float32)
    w[emotion_index(name)] = 1.0
    return w


def check_intensity(value: float) -> float:
    """Intensity as float in [0, 1]; InputError otherwise."""
    x = float(value)
    if not np.isfinite(x) or not 0.0 <= x <= 1.0:
        raise InputError(f"intensity must be a number in [0, 1], got {value!r}")
    return x


def condition(weights: np.ndarray, intensity: np.ndarray) -> np.ndarray:
    """Per-frame network condition from an emotion track: (F, 8), (F,) -> (F, 9) float32.

    Intensity blends toward neutral: at intensity I the non-neutral weights are scaled
    by I and the remainder goes to neutral, so "happy at 0" equals "neutral", and
    neutral is the same at any intensity. The 9th entry is the effective intensity
    I * (1 - w_neutral).
    """
    w = np.asarray(weights, np.float32)
    i = np.asarray(intensity, np.float32)[:, None]
    blended = w * i
    blended[:, 0] = 1.0 - blended[:, 1:].sum(axis=1)
    effective = i[:, 0] * (1.0 - w[:, 0])
    return np.concatenate([blended, effective[:, None]], axis=1).astype(np.float32)
