"""A subject's ARKit-52 shapes: displacement fields on its topology (an optional bundle section)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .names import ARKIT_NAMES

ARKIT_FILE = "arkit.safetensors"


@dataclass(frozen=True)
class ArkitBasis:
    """shapes (52, V, 3) float32 metres per unit weight, in Apple's order; present (52,) bool:
    the shapes the subject's rig can make (the others are all zero and never solved for)."""

    shapes: np.ndarray
    present: np.ndarray

    def __post_init__(self) -> None:
        shapes = np.ascontiguousarray(self.shapes, np.float32)
        present = np.asarray(self.present, bool)
        if shapes.ndim != 3 or shapes.shape[0] != len(ARKIT_NAMES) or shapes.shape[2] != 3:
            raise ValueError(f"ARKit shapes must have shape (52, V, 3), got {shapes.shape}")
        if present.shape != (len(ARKIT_NAMES),):
            raise ValueError(f"present must have shape (52,), got {present.shape}")
        if np.abs(shapes[~present]).max(initial=0.0) > 0.0:
            raise ValueError("an absent ARKit shape must be all zero")
        object.__setattr__(self, "shapes", shapes)
        object.__setattr__(self, "present", present)

    @property
    def absent_names(self) -> list[str]:
        return [n for n, p in zip(ARKIT_NAMES, self.present) if not p]

    def section(self) -> dict:
        """The manifest's ``arkit`` section."""
        return {"file": ARKIT_FILE, "names": list(ARKIT_NAMES), "absent": self.absent_names}
