"""Speech features at 50 Hz -> one feature vector per animation frame."""
from __future__ import annotations

from fractions import Fraction

import torch

# HuBERT frame k sees samples [320k, 320k + 400) at 16 kHz: its centre is at 0.02 k + 0.0125 s.
FEATURE_HOP_S = 0.02
FEATURE_CENTRE_OFFSET_S = 0.0125


def features_to_frames(features: torch.Tensor, num_frames: int, fps: Fraction) -> torch.Tensor:
    """Linearly interpolate (T, D) features at 50 Hz to (num_frames, D) at ``fps``.

    Frame f is sampled at its start time f / fps; times beyond the first/last feature
    centre take the nearest feature.
    """
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"features must be (T, D) with T > 0, got {tuple(features.shape)}")
    t = torch.arange(num_frames, dtype=torch.float64) / float(fps)
    pos = ((t - FEATURE_CENTRE_OFFSET_S) / FEATURE_HOP_S).clamp(0, features.shape[0] - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=features.shape[0] - 1)
    w = (pos - lo).to(features.dtype).unsqueeze(1).to(features.device)
    lo, hi = lo.to(features.device), hi.to(features.device)
    return features[lo] * (1 - w) + features[hi] * w
