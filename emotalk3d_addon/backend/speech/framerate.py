"""Speech features at 50 Hz -> one feature vector per animation frame."""
from __future__ import annotations

from fractions import Fraction

import torch

FEATURE_HOP_S = 0.02


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
    pos = ((t - centre_offset_s) / FEATURE_HOP_S).clamp(0, features.shape[0] - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=features.shape[0] - 1)
    w = (pos - lo).to(features.dtype).unsqueeze(1).to(features.device)
    lo, hi = lo.to(features.device), hi.to(features.device)
    return features[lo] * (1 - w) + features[hi] * w
