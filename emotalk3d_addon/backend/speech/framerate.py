"""Time bases: speech features at 50 Hz -> one feature vector per frame, and tracks moved
between two frame rates (the rate a subject's models were trained at, and the scene's)."""
from __future__ import annotations

from fractions import Fraction

import torch

FEATURE_HOP_S = 0.02


def sample_rows(rows: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Rows of ``rows`` (T, ...) linearly interpolated at fractional row ``positions`` (N,),
    clamped to [0, T - 1] -> (N, ...)."""
    if rows.shape[0] == 0:
        raise ValueError("cannot sample an empty track")
    pos = positions.to(torch.float64).clamp(0, rows.shape[0] - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=rows.shape[0] - 1)
    w = (pos - lo).to(rows.dtype).reshape((-1,) + (1,) * (rows.ndim - 1)).to(rows.device)
    lo, hi = lo.to(rows.device), hi.to(rows.device)
    return rows[lo] * (1 - w) + rows[hi] * w


def features_to_frames(features: torch.Tensor, num_frames: int, fps: Fraction, *,
                       centre_offset_s: float) -> torch.Tensor:
    """Linearly interpolate (T, D) features at 50 Hz to (num_frames, D) at ``fps``.

    Feature k is centred at ``0.02 k + centre_offset_s`` seconds (the encoder's
    ``centre_offset_s``: 0.0125 for HuBERT, 0 for Whisper). Frame f is sampled at its
    start time f / fps; times beyond the first/last feature centre take the nearest feature.
    """
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"features must be (T, D) with T > 0, got {tuple(features.shape)}")
    t = torch.arange(num_frames, dtype=torch.float64) / float(fps)
    return sample_rows(features, (t - centre_offset_s) / FEATURE_HOP_S)


def frame_positions(num_frames: int, fps: Fraction, source_fps: Fraction) -> torch.Tensor:
    """(num_frames,) float64: where frame f at ``fps`` (its start, f / fps seconds) falls in
    a track at ``source_fps``, in that track's frames."""
    return torch.arange(num_frames, dtype=torch.float64) * (float(source_fps) / float(fps))
