"""Closing the mouth of a performance in silence, in the motion basis, without touching the eyes.

The motion basis components move the whole face at once, so a gate on components would take
expression with it (measured on the demo subject, 1 s of silence before its clip, gating the
components whose motion lies mostly in the mouth region: lips still 1-4 mm apart and up to
6 mm of the brows and lids moved). Instead each frame is moved in vertex space, its mouth and
jaw region toward the template (the subject's neutral rest face, lips together), and the
least-squares basis mix of that is taken. Both steps are linear, so for a gate ``g`` (1 free,
0 closed) the coefficients become ``c - (1 - g) * (M @ c)`` with one (K, K) matrix ``M`` per
subject (the projection of the basis motion weighted by the mouth region): exact at ``g = 1``.
On the demo subject in silence this leaves the lips at most 0.4 mm apart and moves the eyes and
brows at most 0.8 mm (of 3 mm of a happy expression; 0.15 of 11 mm for surprised).

The mouth region: weight 1 below ``FULL_ABOVE`` mouth widths above the lips' centre, falling
(smoothstep) to 0 at ``NONE_ABOVE`` mouth widths above it (subject space: +Z up), so the
lips, jaw and chin close while the eyes and brows keep the emotion.
"""
from __future__ import annotations

import numpy as np

from ..subject import Subject

FULL_ABOVE = 0.25      # mouth widths above the lips' centre: the region's weight is 1 below this ...
NONE_ABOVE = 0.8       # ... and 0 above this (the nose's base and the eyes stay out)


def mouth_region(template: np.ndarray, landmarks: dict[str, int]) -> np.ndarray:
    """(V,) float32 weights in [0, 1] of the mouth and jaw region of a (V, 3) template (metres,
    +Z up), placed by the four lip landmarks (upper_lip, lower_lip, mouth_left, mouth_right)."""
    t = np.asarray(template, np.float64)
    lips = [t[landmarks[k]] for k in ("upper_lip", "lower_lip", "mouth_left", "mouth_right")]
    centre = np.mean(lips, axis=0)
    width = float(np.linalg.norm(lips[2] - lips[3]))
    if not width > 0:
        raise ValueError("the mouth corners coincide: the subject's mouth landmarks cannot place the mouth")
    x = np.clip(((t[:, 2] - centre[2]) / width - FULL_ABOVE) / (NONE_ABOVE - FULL_ABOVE), 0.0, 1.0)
    return (1.0 - x * x * (3.0 - 2.0 * x)).astype(np.float32)


class MouthClosure:
    """A subject's mouth closure in basis coefficients (the module above)."""

    def __init__(self, components: np.ndarray, region: np.ndarray):
        """components (K, V, 3) of the motion basis; region (V,) weights of the mouth."""
        k = components.shape[0]
        basis = np.asarray(components, np.float64).reshape(k, -1)                 # (K, D)
        weighted = basis * np.repeat(np.asarray(region, np.float64), 3)[None]     # (K, D)
        self.matrix = np.linalg.solve(basis @ basis.T, weighted @ basis.T) if k else np.zeros((0, 0))

    @classmethod
    def of(cls, subject: Subject) -> "MouthClosure":
        g = subject.geometry
        return cls(subject.basis.components, mouth_region(g.template, g.landmarks))

    def apply(self, coefficients: np.ndarray, gate: np.ndarray) -> np.ndarray:
        """(F, K) coefficients with the mouth closed by ``1 - gate`` ((F,) in [0, 1], 1 free):
        (F, K) float32; frames with gate 1 are returned unchanged."""
        c = np.asarray(coefficients, np.float64)
        g = np.asarray(gate, np.float64)
        if g.shape != (c.shape[0],):
            raise ValueError(f"gate must have shape ({c.shape[0]},), got {g.shape}")
        out = np.array(coefficients, np.float32, copy=True)
        shut = np.flatnonzero(g < 1.0)
        if shut.size:
            closed = c[shut] - (1.0 - g[shut])[:, None] * (c[shut] @ self.matrix.T)
            out[shut] = closed.astype(np.float32)
        return out
