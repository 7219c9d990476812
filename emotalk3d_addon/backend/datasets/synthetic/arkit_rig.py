"""The synthetic head's ARKit-52 shapes, made from its own rig (source tree only).

Each shape is the face mesh posed by a rig recipe minus the rest face (metres, on the
subject's tracked topology). The rig is symmetric for most controls, so a Left/Right pair
splits the symmetric displacement with a smooth mask across the midline (the two halves
sum to the whole). Shapes that combine with the jaw in ARKit's definition (``mouthClose``:
lips closed while the jaw hangs open; ``mouthFunnel``: rounded lips with the jaw a little
open) are posed on that jaw and measured from the jaw alone.

What the rig cannot do is marked absent and left zero, never faked: blinks, eye gaze, the
jaw sliding sideways or forward, the mouth shifting sideways, dimples, the upper-lip roll,
shrugs, lower-lip drop per side, cheek puff and the tongue.
"""
from __future__ import annotations

import numpy as np

from ...arkit.names import ARKIT_NAMES
from .model import HeadModel

MIDLINE_HALF_WIDTH = 0.008      # metres: the left/right split blends over +-8 mm around x = 0

# ARKit name -> (rig parameters at the pose, rig parameters of the pose it is measured from, side)
RECIPES: dict[str, tuple[dict[str, float], dict[str, float], str]] = {
    "jawOpen": ({"jaw": 1.0}, {}, ""),
    "mouthClose": ({"jaw": 0.5, "close": 1.0}, {"jaw": 0.5}, ""),
    "mouthPucker": ({"round": 1.0}, {}, ""),
    "mouthSmileLeft": ({"smile_l": 1.0}, {}, ""),
    "mouthSmileRight": ({"smile_r": 1.0}, {}, ""),
    "mouthFrownLeft": ({"frown": 1.0}, {}, "Left"),
    "mouthFrownRight": ({"frown": 1.0}, {}, "Right"),
    "mouthStretchLeft": ({"stretch": 1.0}, {}, "Left"),
    "mouthStretchRight": ({"stretch": 1.0}, {}, "Right"),
    "mouthPressLeft": ({"press": 1.0}, {}, "Left"),
    "mouthPressRight": ({"press": 1.0}, {}, "Right"),
    "mouthUpperUpLeft": ({"upper_lip_raise": 1.0}, {}, "Left"),
    "mouthUpperUpRight": ({"upper_lip_raise": 1.0}, {}, "Right"),
    "mouthRollLower": ({"fv": 1.0}, {}, ""),
    "browInnerUp": ({"brow_inner_up": 1.0}, {}, ""),
    "browOuterUpLeft": ({"brow_outer_up": 1.0}, {}, "Left"),
    "browOuterUpRight": ({"brow_outer_up": 1.0}, {}, "Right"),
    "browDownLeft": ({"brow_down": 1.0}, {}, "Left"),
    "browDownRight": ({"brow_down": 1.0}, {}, "Right"),
    "eyeWideLeft": ({"eye_wide": 1.0}, {}, "Left"),
    "eyeWideRight": ({"eye_wide": 1.0}, {}, "Right"),
    "eyeSquintLeft": ({"eye_squint": 1.0}, {}, "Left"),
    "eyeSquintRight": ({"eye_squint": 1.0}, {}, "Right"),
    "cheekSquintLeft": ({"cheek_raise": 1.0}, {}, "Left"),
    "cheekSquintRight": ({"cheek_raise": 1.0}, {}, "Right"),
    "noseSneerLeft": ({"nose_wrinkle": 1.0}, {}, "Left"),
    "noseSneerRight": ({"nose_wrinkle": 1.0}, {}, "Right"),
}


def side_weight(x: np.ndarray, side: str) -> np.ndarray:
    """(V,) share of a vertex at subject x (metres; the subject's left is +X) that belongs to
    ``side`` ("Left", "Right", or "" for both): a smoothstep across the midline."""
    if not side:
        return np.ones_like(x, dtype=np.float64)
    t = np.clip((np.asarray(x, np.float64) / MIDLINE_HALF_WIDTH + 1.0) / 2.0, 0.0, 1.0)
    left = t * t * (3.0 - 2.0 * t)
    return left if side == "Left" else 1.0 - left


def arkit_shapes(model: HeadModel | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(52, V, 3) float32 displacements (metres) in Apple's order and (52,) bool present."""
    model = model or HeadModel()

    def pose(params: dict[str, float]) -> np.ndarray:
        return model.pose_face({k: np.full(1, v) for k, v in params.items()}, 1)[0].astype(np.float64)

    rest = pose({})
    shapes = np.zeros((len(ARKIT_NAMES), rest.shape[0], 3), np.float32)
    present = np.zeros(len(ARKIT_NAMES), bool)
    for i, name in enumerate(ARKIT_NAMES):
        if name not in RECIPES:
            continue
        target, base, side = RECIPES[name]
        delta = pose(target) - (pose(base) if base else rest)
        shapes[i] = (delta * side_weight(rest[:, 0], side)[:, None]).astype(np.float32)
        present[i] = True
    return shapes, present
