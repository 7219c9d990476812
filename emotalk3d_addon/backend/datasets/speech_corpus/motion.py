"""Rig motion of a recording of several utterances: visemes from the synthesiser's phone
times, and an emotion state that changes between utterances.

The emotion state is a per-frame 8-way weight vector + intensity: each utterance's emotion
holds from the middle of the pause before it to the middle of the pause after it, ramps in
from neutral at the start, and every change is smoothed over ``TRANSITION_S``. Expressions
and the emotion's effect on articulation (jaw scale, lip spread) follow that state, as in
the multi-view generator (``synthetic/expressions.py``).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...emotions import EMOTIONS, NUM_EMOTIONS
from ..synthetic.expressions import ARTICULATION, EXPRESSIONS, ramp
from ..synthetic.head import RIG_VERSION
from ..synthetic.sentences import PROSODY, prosody
from ..synthetic.speech import Phoneme
from ..synthetic.visemes import viseme_track

TRANSITION_S = 0.3


@dataclass(frozen=True)
class Segment:
    """One utterance inside a recording (seconds from the recording's start)."""

    start: float
    end: float
    emotion: str
    intensity: float


def emotion_state(segments: list[Segment], times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (F, 8) weights summing to 1 and (F,) intensity for ``segments``."""
    f = times.size
    weights = np.zeros((f, NUM_EMOTIONS), np.float64)
    intensity = np.zeros(f, np.float64)
    bounds = [0.5 * (a.end + b.start) for a, b in zip(segments[:-1], segments[1:])]
    edges = [-np.inf] + bounds + [np.inf]
    for seg, lo, hi in zip(segments, edges[:-1], edges[1:]):
        inside = (times >= lo) & (times < hi)
        weights[inside, EMOTIONS.index(seg.emotion)] = 1.0
        intensity[inside] = 0.0 if seg.emotion == "neutral" else seg.intensity
    # smooth every change, then let the first emotion ramp in from neutral
    hop = float(times[1] - times[0]) if f > 1 else 1.0
    width = max(1, int(round(TRANSITION_S / hop)))
    kernel = np.hanning(width + 2)[1:-1]
    kernel /= kernel.sum()
    pad = lambda x: np.pad(x, ((width, width),) + ((0, 0),) * (x.ndim - 1), mode="edge")
    weights = np.stack([np.convolve(pad(weights[:, k]), kernel, "same")[width:-width]
                        for k in range(NUM_EMOTIONS)], 1)
    intensity = np.convolve(pad(intensity), kernel, "same")[width:-width]
    intensity *= ramp(times)
    weights /= weights.sum(1, keepdims=True)
    return weights.astype(np.float32), np.clip(intensity, 0, 1).astype(np.float32)


def recording_params(phones: list[Phoneme], times: np.ndarray, weights: np.ndarray, intensity: np.ndarray,
                     rng: np.random.Generator, variation: float = 0.1) -> dict[str, np.ndarray]:
    """Per-frame rig parameters: visemes shaped by the emotion state, plus expressions."""
    speech = viseme_track(phones, times)
    level = weights * intensity[:, None]                              # (F, 8) emotion x intensity
    jaw_scale = 1.0 + level @ np.array([ARTICULATION[e][0] - 1.0 for e in EMOTIONS])
    spread_bias = level @ np.array([ARTICULATION[e][1] for e in EMOTIONS])
    loud = 1.0 + level @ np.array([prosody(e, 1.0)["amplitude"] / PROSODY["neutral"]["amplitude"] - 1.0
                                   for e in EMOTIONS])
    params = {k: v.copy() for k, v in speech.items()}
    params["jaw"] = params["jaw"] * 1.15 * jaw_scale * (0.85 + 0.15 * np.minimum(loud, 1.6))
    params["spread"] = params["spread"] + spread_bias
    for k, emotion in enumerate(EMOTIONS):
        if not np.any(level[:, k] > 1e-4):
            continue
        for name, w in EXPRESSIONS[emotion].items():
            scale = 1.0 + variation * rng.standard_normal()
            phase, speed = rng.uniform(0, 2 * np.pi), rng.uniform(0.3, 0.8)
            drift = 1.0 + 0.5 * variation * np.sin(2 * np.pi * speed * times + phase)
            params[name] = params.get(name, 0.0) + np.clip(w * level[:, k] * scale * drift, 0.0, 1.5)
    return params


def animate(phones: list[Phoneme], segments: list[Segment], frames: int, fps: float, model,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The rig's face motion of a recording: (F, V, 3) float16 displacement from the
    template (metres) and (F, 9) float32 emotion state (8 weights + intensity)."""
    times = np.arange(frames) / fps
    weights, intensity = emotion_state(segments, times)
    params = recording_params(phones, times, weights, intensity, rng)
    motion = (model.pose_face(params, frames) - model.face_template[None]).astype(np.float16)
    return motion, np.concatenate([weights, intensity[:, None]], 1).astype(np.float32)


def motion_rng(seed: int) -> np.random.Generator:
    """The random stream of a recording's expression variation: its own, apart from the
    streams of text, prosody and augmentation, so animating again draws the same."""
    return np.random.default_rng([seed, 2])


def animate_recording(folder: Path, meta: dict, motion_seed: int, model) -> dict:
    """(Re)write ``motion.npy`` and ``emotion.npy`` of the corpus recording in ``folder`` from
    its meta (phones, utterances, fps, frames); returns the meta with ``rig`` (the rig's
    version) and ``motion_seed``. The arrays are replaced atomically, the meta last, so an
    interrupted run leaves the old version number and is animated again."""
    phones = [Phoneme(float(a), float(b), p) for a, b, p in meta["phones"]]
    segments = [Segment(u["start"], u["end"], u["emotion"], u["intensity"]) for u in meta["utterances"]]
    motion, emotion = animate(phones, segments, int(meta["frames"]), meta["fps"], model, motion_rng(motion_seed))
    folder = Path(folder)
    for name, array in (("motion.npy", motion), ("emotion.npy", emotion)):
        with open(folder / (name + ".tmp"), "wb") as f:
            np.save(f, array)
        os.replace(folder / (name + ".tmp"), folder / name)
    meta = meta | {"rig": RIG_VERSION, "motion_seed": int(motion_seed)}
    (folder / "meta.json.tmp").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    os.replace(folder / "meta.json.tmp", folder / "meta.json")
    return meta


def is_animated_by_current_rig(meta: dict) -> bool:
    """Whether a recording's motion was made by this rig version."""
    return meta.get("rig") == RIG_VERSION
