"""Frame rates and frame counts, exact for NTSC rates.

A performance at ``fps`` for audio of ``duration`` seconds has
``F = ceil(duration * fps)`` frames; frame ``f`` starts at ``f / fps`` seconds.
NTSC rates typed as 23.976, 29.97 or 59.94 mean 24000/1001, 30000/1001, 60000/1001.
"""
from __future__ import annotations

from fractions import Fraction

from .errors import InputError

NTSC = {Fraction("23.976"): Fraction(24000, 1001),      # typed rate -> the exact NTSC rate
        Fraction("29.97"): Fraction(30000, 1001),
        Fraction("47.952"): Fraction(48000, 1001),
        Fraction("59.94"): Fraction(60000, 1001)}
MAX_FPS = 1000


def parse_fps(value: float | str | Fraction) -> Fraction:
    """A frame rate as an exact Fraction (frames per second); InputError if not usable."""
    try:
        fps = value if isinstance(value, Fraction) else Fraction(str(value)).limit_denominator(1_000_000)
    except (ValueError, ZeroDivisionError):
        raise InputError(f"frame rate must be a positive number, got {value!r}") from None
    fps = NTSC.get(fps, fps)
    if not 0 < fps <= MAX_FPS:
        raise InputError(f"frame rate must be in (0, {MAX_FPS}], got {value!r}")
    return fps


def frame_count(num_samples: int, sample_rate: int, fps: Fraction) -> int:
    """F = ceil(num_samples / sample_rate * fps), computed exactly."""
    n = Fraction(num_samples, sample_rate) * fps
    return -(-n.numerator // n.denominator)


def frame_times(num_frames: int, fps: Fraction) -> "list[float]":
    """Start time of each frame, seconds."""
    return [float(Fraction(f) / fps) for f in range(num_frames)]
