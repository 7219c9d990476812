"""The emotion state of a head at each frame, stored next to its shape keys.

A generation writes the per-frame emotion it used (8 weights in EMOTIONS order and the
intensity) as F-curves on two custom properties of the head's shape-key datablock, in
the same Action as the shape keys. So the state travels with the performance (NLA,
copies, saved files), the render engine reads it from the evaluated datablock at any
frame with no state carried between frames, and an artist may edit those curves too.
"""
from __future__ import annotations

import numpy as np

from ..backend.emotions import EMOTIONS

EMOTION_PROP = "emotalk3d_emotion"          # 8 floats, EMOTIONS order
INTENSITY_PROP = "emotalk3d_intensity"      # 1 float in [0, 1]
NEUTRAL = tuple(1.0 if name == "neutral" else 0.0 for name in EMOTIONS)


def emotion_path() -> str:
    return f'["{EMOTION_PROP}"]'


def intensity_path() -> str:
    return f'["{INTENSITY_PROP}"]'


def ensure_props(key) -> None:
    """Give a shape-key datablock the two properties (neutral, 0) so F-curves can drive them."""
    if EMOTION_PROP not in key.keys():
        key[EMOTION_PROP] = list(NEUTRAL)
    if INTENSITY_PROP not in key.keys():
        key[INTENSITY_PROP] = 0.0
    ui = getattr(key, "id_properties_ui", None)
    if ui is not None:
        ui(EMOTION_PROP).update(min=0.0, max=1.0, description="EmoTalk3D emotion weights (" + ", ".join(EMOTIONS) + ")")
        ui(INTENSITY_PROP).update(min=0.0, max=1.0, description="EmoTalk3D emotion intensity")


def curves(emotion: np.ndarray, intensity: np.ndarray) -> list[tuple[str, int, np.ndarray]]:
    """(data_path, index, values (F,)) for each emotion F-curve of a performance."""
    emotion = np.asarray(emotion, np.float32)
    intensity = np.asarray(intensity, np.float32).reshape(-1)
    if emotion.ndim != 2 or emotion.shape[1] != len(EMOTIONS) or emotion.shape[0] != intensity.shape[0]:
        raise ValueError(f"emotion must be (F, {len(EMOTIONS)}) with intensity (F,), got {emotion.shape}, "
                         f"{intensity.shape}")
    out = [(emotion_path(), i, emotion[:, i]) for i in range(len(EMOTIONS))]
    out.append((intensity_path(), 0, intensity))
    return out


def is_emotion_path(data_path: str) -> bool:
    return data_path in (emotion_path(), intensity_path())


def state_of(key_eval) -> tuple[np.ndarray, float]:
    """(weights (8,) float32 summing to 1, intensity) from an evaluated shape-key datablock.

    Missing properties, or weights that sum to zero, mean neutral."""
    if key_eval is None:
        return state_from(None, None)
    return state_from(key_eval.get(EMOTION_PROP), key_eval.get(INTENSITY_PROP))


def state_from(raw_emotion, raw_intensity) -> tuple[np.ndarray, float]:
    """``state_of`` on the two properties' raw values (None when a property is missing)."""
    weights = np.asarray(NEUTRAL, np.float32)
    intensity = 0.0
    if raw_emotion is not None and len(raw_emotion) == len(EMOTIONS):
        w = np.clip(np.asarray(list(raw_emotion), np.float32), 0.0, None)
        if np.isfinite(w).all() and w.sum() > 1e-6:
            weights = w / w.sum()
    if raw_intensity is not None and np.isfinite(float(raw_intensity)):
        intensity = float(np.clip(float(raw_intensity), 0.0, 1.0))
    return weights, intensity


__all__ = ["EMOTION_PROP", "INTENSITY_PROP", "NEUTRAL", "ensure_props", "curves", "is_emotion_path", "state_of", "state_from",
           "emotion_path", "intensity_path"]
