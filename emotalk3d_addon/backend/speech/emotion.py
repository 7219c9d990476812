"""Emotion extractor: a transformer context network over speech features (SPEC 2.2).

Predicts, per animation frame, an 8-way emotion distribution and an intensity in [0, 1].
Long clips are processed in overlapping windows cross-faded with a Hann ramp, so memory
and attention cost stay bounded whatever the length.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..emotions import NUM_EMOTIONS


@dataclass(frozen=True)
class EmotionConfig:
    feature_dim: int
    d_model: int = 128
    layers: int = 2
    heads: int = 4
    ff_dim: int = 256
    dropout: float = 0.1
    window: int = 256   # frames per inference window

    @classmethod
    def from_dict(cls, data: dict) -> "EmotionConfig":
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """(length, dim) float32 sinusoidal position table."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table


class EmotionExtractor(nn.Module):
    """(B, F, D) frame-rate features -> logits (B, F, 8) and intensity (B, F) in [0, 1]."""

    def __init__(self, config: EmotionConfig):
        super().__init__()
        self.config = config
        self.input = nn.Sequential(nn.Linear(config.feature_dim, config.d_model), nn.LayerNorm(config.d_model))
        layer = nn.TransformerEncoderLayer(config.d_model, config.heads, config.ff_dim, config.dropout,
                                           batch_first=True, norm_first=True)
        self.context = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.d_model)
        self.emotion_head = nn.Linear(config.d_model, NUM_EMOTIONS)
        self.intensity_head = nn.Linear(config.d_model, 1)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.input(features)
        x = x + sinusoidal_positions(x.shape[1], x.shape[2]).to(x)
        x = self.norm(self.context(x))
        return self.emotion_head(x), torch.sigmoid(self.intensity_head(x)).squeeze(-1)

    @torch.inference_mode()
    def predict_track(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(F, D) features -> weights (F, 8) summing to 1, intensity (F,), windowed."""
        frames, window = features.shape[0], self.config.window
        if frames <= window:
            logits, intensity = self(features[None])
            return logits[0].softmax(-1), intensity[0]
        hop = window // 2
        ramp = torch.hann_window(window, periodic=False, device=features.device).clamp_min(1e-3)
        weights = torch.zeros(frames, NUM_EMOTIONS, device=features.device)
        intensity = torch.zeros(frames, device=features.device)
        norm = torch.zeros(frames, device=features.device)
        starts = list(range(0, frames - window, hop)) + [frames - window]
        for start in starts:
            logits, inten = self(features[None, start:start + window])
            weights[start:start + window] += logits[0].softmax(-1) * ramp[:, None]
            intensity[start:start + window] += inten[0] * ramp
            norm[start:start + window] += ramp
        return weights / norm[:, None], intensity / norm
