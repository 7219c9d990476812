"""ARKit weights as Live Link Face's CSV (what Unreal, Maya and iClone importers read).

One row per frame: ``Timecode`` (``HH:MM:SS:FF.fff``, non-drop-frame at the nominal rate,
e.g. 30 for 29.97), ``BlendShapeCount`` (61: the 52 shapes and nine head and eye
rotations), the 52 weights in ARKit's index order (``names.LIVE_LINK_ORDER``, PascalCase),
then the rotations, written as 0 (a performance has no head or eye motion).
"""
from __future__ import annotations

import csv
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import InputError
from .names import ARKIT_NAMES, LIVE_LINK_EXTRA, LIVE_LINK_ORDER

HEADER = ("Timecode", "BlendShapeCount", *(n[0].upper() + n[1:] for n in LIVE_LINK_ORDER), *LIVE_LINK_EXTRA)
_TO_LIVE_LINK = np.array([ARKIT_NAMES.index(n) for n in LIVE_LINK_ORDER])


def timecode(frame: int, fps: Fraction) -> str:
    """``HH:MM:SS:FF.000`` of a 0-based frame at the nominal (rounded) rate of ``fps``."""
    nominal = max(1, round(float(fps)))
    seconds, ff = divmod(int(frame), nominal)
    minutes, ss = divmod(seconds, 60)
    hh, mm = divmod(minutes, 60)
    return f"{hh:02d}:{mm:02d}:{ss:02d}:{ff:02d}.000"


def write_csv(weights: np.ndarray, fps: Fraction, path: str | Path) -> Path:
    """(F, 52) weights in Apple's order (``names.ARKIT_NAMES``) -> a Live Link Face CSV."""
    w = np.asarray(weights, np.float64)
    if w.ndim != 2 or w.shape[1] != len(ARKIT_NAMES):
        raise InputError(f"ARKit weights must have shape (F, 52), got {w.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = ["0"] * len(LIVE_LINK_EXTRA)
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(HEADER)
        for i, row in enumerate(w[:, _TO_LIVE_LINK]):
            out.writerow([timecode(i, fps), len(HEADER) - 2, *(f"{v:.6f}" for v in row), *extra])
    return path


def read_csv(path: str | Path, fps: Fraction) -> np.ndarray:
    """A Live Link Face CSV -> (F, 52) float32 weights in Apple's order, one row per frame
    of ``fps`` counted from the first timecode (missing shape columns read as 0)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    if not rows or not rows[0] or rows[0][0] != "Timecode":
        raise InputError(f"{path} is not a Live Link Face CSV (its first column must be Timecode)")
    columns = {name.lower(): i for i, name in enumerate(rows[0])}
    nominal = max(1, round(float(fps)))
    frames, values = [], []
    for n, row in enumerate(rows[1:], start=2):
        try:
            hh, mm, ss, ff = row[0].split(":")
            frames.append(((int(hh) * 60 + int(mm)) * 60 + int(ss)) * nominal + int(float(ff)))
            values.append([float(row[columns[name.lower()]]) if name.lower() in columns else 0.0
                           for name in ARKIT_NAMES])
        except (ValueError, IndexError):
            raise InputError(f"{path}, line {n}: not a timecode and weights") from None
    out = np.zeros((max(frames) - min(frames) + 1 if frames else 0, len(ARKIT_NAMES)), np.float32)
    for frame, row in zip(frames, values):
        out[frame - min(frames)] = row
    return out
