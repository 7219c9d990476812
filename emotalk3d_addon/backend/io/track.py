"""VertexTrack: a predicted performance, and its TRACK.npz file format.

TRACK.npz holds ``vertices`` (F, V, 3) float32 metres (subject space), ``fps``,
``emotion`` (F, 8), ``intensity`` (F,), ``emotion_names`` (8), optionally ``coefficients``
(F, K) float32 motion-basis weights (the shape-key values) and, for a subject with ARKit
shapes, ``arkit`` (F, 52) float32 weights in [0, 1] with ``arkit_names`` (52, Apple's order).

A track ``emotalk3d predict`` writes is the performance itself: ``vertices`` are the subject's
template plus the basis mix of ``coefficients``, exactly what Blender's shape keys show, and the
ARKit weights are solved from those coefficients.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..arkit.names import ARKIT_NAMES
from ..emotions import EMOTIONS
from ..errors import InputError


@dataclass
class VertexTrack:
    vertices: np.ndarray     # (F, V, 3) float32, metres
    fps: Fraction
    emotion: np.ndarray      # (F, 8) float32
    intensity: np.ndarray    # (F,) float32
    arkit: np.ndarray | None = None   # (F, 52) float32 ARKit weights (Apple's order), when solved
    coefficients: np.ndarray | None = None   # (F, K) float32 motion-basis weights, when known

    @property
    def num_frames(self) -> int:
        return int(self.vertices.shape[0])

    def save_npz(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part.npz")
        np.savez(tmp, vertices=self.vertices.astype(np.float32), fps=np.float64(self.fps),
                 fps_fraction=np.array([self.fps.numerator, self.fps.denominator], np.int64),
                 emotion=self.emotion.astype(np.float32), intensity=self.intensity.astype(np.float32),
                 emotion_names=np.array(EMOTIONS),
                 **({} if self.coefficients is None else {"coefficients": self.coefficients.astype(np.float32)}),
                 **({} if self.arkit is None else {"arkit": self.arkit.astype(np.float32),
                                                   "arkit_names": np.array(ARKIT_NAMES)}))
        tmp.replace(path)
        return path

    @classmethod
    def load_npz(cls, path: str | Path) -> "VertexTrack":
        try:
            with np.load(path, allow_pickle=False) as data:
                vertices = data["vertices"].astype(np.float32)
                num, den = (int(x) for x in data["fps_fraction"]) if "fps_fraction" in data \
                    else Fraction(float(data["fps"])).limit_denominator(1001).as_integer_ratio()
                emotion, intensity = data["emotion"].astype(np.float32), data["intensity"].astype(np.float32)
                arkit = data["arkit"].astype(np.float32) if "arkit" in data else None
                coefficients = data["coefficients"].astype(np.float32) if "coefficients" in data else None
                if arkit is not None and ("arkit_names" not in data or
                                          [str(n) for n in data["arkit_names"]] != list(ARKIT_NAMES)):
                    raise ValueError("its arkit weights are not named in ARKit's order")
        except FileNotFoundError:
            raise InputError(f"track file not found: {path}") from None
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"{path} is not a valid TRACK.npz: {exc}") from None
        if vertices.ndim != 3 or vertices.shape[2] != 3 or emotion.shape != (vertices.shape[0], len(EMOTIONS)) \
                or intensity.shape != (vertices.shape[0],):
            raise InputError(f"{path} is not a valid TRACK.npz: inconsistent array shapes")
        if arkit is not None and arkit.shape != (vertices.shape[0], len(ARKIT_NAMES)):
            raise InputError(f"{path} is not a valid TRACK.npz: arkit must have shape (F, 52)")
        if coefficients is not None and (coefficients.ndim != 2 or coefficients.shape[0] != vertices.shape[0]):
            raise InputError(f"{path} is not a valid TRACK.npz: coefficients must have shape (F, K)")
        return cls(vertices, Fraction(num, den), emotion, intensity, arkit, coefficients)
