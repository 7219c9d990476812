"""Frame rates and frame alignment (pure Python: testable without Blender).

Blender's effective frame rate is ``render.fps / render.fps_base``; NTSC rates are stored
as fps 24/30/60 with fps_base 1.001 (a float32, 1.00100004...), so the base is snapped to
a small fraction before dividing: 24 / 1.001 is exactly 24000/1001.
"""
from __future__ import annotations

from fractions import Fraction

from ..backend.errors import InputError
from ..backend.timebase import parse_fps


def effective_fps(fps: int, fps_base: float = 1.0) -> Fraction:
    """Exact frames per second of a scene (``render.fps``, ``render.fps_base``)."""
    if fps <= 0 or not fps_base > 0:
        raise ValueError(f"invalid frame rate {fps} / {fps_base}")
    base = Fraction(float(fps_base)).limit_denominator(10_000)
    return Fraction(int(fps)) / base


def parse_rate(value: str | float | Fraction) -> Fraction:
    """A typed rate ("29.97", 25, "30000/1001") as an exact Fraction; NTSC spellings snapped
    (the backend's own rule, ``timebase.parse_fps``); ValueError when unusable."""
    try:
        return parse_fps(value)
    except InputError as exc:
        raise ValueError(str(exc)) from None


def scene_rate_settings(rate: Fraction) -> tuple[int, float]:
    """(render.fps, render.fps_base) that give ``rate`` (NTSC as N / 1.001)."""
    if rate.denominator == 1:
        return int(rate), 1.0
    ntsc = rate * Fraction(1001, 1000)
    if ntsc.denominator == 1:
        return int(ntsc), 1.001
    fps = max(1, round(float(rate)))
    return fps, float(fps / rate)


def as_pair(rate: Fraction) -> list[int]:
    """[numerator, denominator] for the worker protocol."""
    return [rate.numerator, rate.denominator]


def performance_frames(strip_start: float, num_frames: int) -> list[float]:
    """Scene frame of each performance frame: frame 0 starts with the audio at the strip's start."""
    return [float(strip_start) + f for f in range(num_frames)]


def to_performance_frame(scene_frame: float, strip_start: float) -> float:
    """0-based performance frame (the backend's key frames) of a scene frame."""
    return float(scene_frame) - float(strip_start)
