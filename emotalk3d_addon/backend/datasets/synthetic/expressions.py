"""Emotion expressions as rig parameters, per-sequence emotion tracks.

Each emotion (SPEC 2.1 order) is a set of rig weights at full intensity, loosely
following FACS action units: brows (AU1, AU2, AU4), lids (AU5, AU7), cheeks (AU6),
lip corners (AU12, AU14, AU15), upper lip and nose (AU9, AU10), lip stretch and
press (AU20, AU24), jaw drop (AU26). Intensity scales them (mild 0.5, strong 1.0).
"""
from __future__ import annotations

import numpy as np

from ...emotions import EMOTIONS

EXPRESSIONS: dict[str, dict[str, float]] = {
    "neutral": {},
    "angry": dict(brow_down=1.0, eye_wide=0.25, eye_squint=0.45, press=0.75, nose_wrinkle=0.25,
                  frown=0.25),
    "contempt": dict(smile_l=0.8, press=0.3, eye_squint=0.2, brow_down=0.1),
    "disgusted": dict(nose_wrinkle=1.0, upper_lip_raise=0.85, brow_down=0.6, frown=0.4,
                      cheek_raise=0.35, eye_squint=0.35),
    "fear": dict(brow_inner_up=1.0, brow_outer_up=0.45, brow_down=0.35, eye_wide=1.0, stretch=0.9,
                 jaw=0.12),
    "happy": dict(smile_l=1.0, smile_r=1.0, cheek_raise=0.9, eye_squint=0.4, spread=0.25, jaw=0.05),
    "sad": dict(brow_inner_up=0.95, brow_down=0.2, frown=0.95, eye_squint=0.25, press=0.2),
    "surprised": dict(brow_inner_up=1.0, brow_outer_up=1.0, eye_wide=1.0, jaw=0.45, round=0.15),
}
assert tuple(EXPRESSIONS) == EMOTIONS

# how the emotion changes speech articulation (jaw opening scale, lip spread bias)
ARTICULATION = {
    "neutral": (1.0, 0.0), "angry": (1.15, 0.1), "contempt": (0.8, 0.0), "disgusted": (0.85, 0.0),
    "fear": (1.05, 0.15), "happy": (1.1, 0.2), "sad": (0.7, 0.0), "surprised": (1.15, 0.0),
}


def ramp(times: np.ndarray, start: float = 0.1, length: float = 0.3) -> np.ndarray:
    """0 before ``start``, smooth rise to 1 over ``length`` seconds."""
    t = np.clip((np.asarray(times, np.float64) - start) / length, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def expression_track(emotion: str, intensity: float, times: np.ndarray, rng: np.random.Generator,
                     variation: float = 0.1) -> dict[str, np.ndarray]:
    """Per-frame rig weights of an emotion: intensity x ramp, with small per-sequence
    variation of each weight and a slow drift, so no two sequences are identical."""
    r = ramp(times)
    out = {}
    for name, w in EXPRESSIONS[emotion].items():
        scale = 1.0 + variation * rng.standard_normal()
        phase, speed = rng.uniform(0, 2 * np.pi), rng.uniform(0.3, 0.8)
        drift = 1.0 + 0.5 * variation * np.sin(2 * np.pi * speed * times + phase)
        out[name] = np.clip(w * intensity * scale * r * drift, 0.0, 1.5)
    return out
