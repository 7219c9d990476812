"""Emotion extractor: a transformer context network over speech features (SPEC 2.2).

Predicts, per animation frame, an 8-way emotion distribution and an intensity in [0, 1].
It hears the speech, not the position in the clip: there is no absolute position
anywhere. Order comes from a depthwise temporal convolution (relative positions), each
frame attends only to frames within ``context`` of it, and the output is smoothed over
``smooth`` frames, so the same audio gets the same emotion wherever it sits in a clip
(away from the first and last ``context`` frames of what surrounds it). Long clips are
processed in overlapping windows cross-faded with a Hann ramp, so memory stays bounded.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..emotions import NUM_EMOTIONS
from ..model_limits import MAX_MODEL_LAYERS


@dataclass(frozen=True)
class EmotionConfig:
    feature_dim: int
    d_model: int = 128
    layers: int = field(default=2, metadata={"max": MAX_MODEL_LAYERS})
    heads: int = 4
    ff_dim: int = 256
    dropout: float = field(default=0.1, metadata={"range": (0.0, 1.0)})   # [low, high)
    window: int = 256        # frames per inference window
    context: int = 50        # attention reaches this many frames either side (2 s at 25 fps)
    conv_kernel: int = 15    # frames of the depthwise convolution that gives order
    smooth: int = 13         # frames of the moving average over the predicted track

    @classmethod
    def from_dict(cls, data: dict) -> "EmotionConfig":
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)


def band_mask(length: int, context: int, device: torch.device) -> torch.Tensor:
    """(length, length) bool attention mask, True where attention is NOT allowed (|i - j| > context)."""
    i = torch.arange(length, device=device)
    return (i[:, None] - i[None, :]).abs() > context


def moving_average(x: torch.Tensor, frames: int) -> torch.Tensor:
    """(F, C) -> (F, C) centred moving average over ``frames`` (edges average what exists)."""
    if frames <= 1 or x.shape[0] < 2:
        return x
    kernel = torch.ones(x.shape[1], 1, frames, dtype=x.dtype, device=x.device)
    pad = frames // 2
    total = F.conv1d(x.T[None], kernel, padding=pad, groups=x.shape[1])[0, :, :x.shape[0]]
    count = F.conv1d(torch.ones(1, 1, x.shape[0], dtype=x.dtype, device=x.device),
                     kernel[:1], padding=pad)[0, 0, :x.shape[0]]
    return (total / count).T


class EmotionExtractor(nn.Module):
    """(B, F, D) frame-rate features -> logits (B, F, 8) and intensity (B, F) in [0, 1]."""

    def __init__(self, config: EmotionConfig):
        super().__init__()
        self.config = config
        self.input = nn.Sequential(nn.Linear(config.feature_dim, config.d_model), nn.LayerNorm(config.d_model))
        k = config.conv_kernel | 1           # odd, so the convolution is centred
        self.order = nn.Conv1d(config.d_model, config.d_model, k, padding=k // 2, groups=config.d_model)
        layer = nn.TransformerEncoderLayer(config.d_model, config.heads, config.ff_dim, config.dropout,
                                           batch_first=True, norm_first=True)
        self.context = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.d_model)
        self.emotion_head = nn.Linear(config.d_model, NUM_EMOTIONS)
        self.intensity_head = nn.Linear(config.d_model, 1)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.input(features)
        x = x + F.gelu(self.order(x.transpose(1, 2))).transpose(1, 2)
        mask = band_mask(x.shape[1], self.config.context, x.device)
        x = self.norm(self.context(x, mask=mask))
        return self.emotion_head(x), torch.sigmoid(self.intensity_head(x)).squeeze(-1)

    @torch.inference_mode()
    def predict_track(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(F, D) features -> weights (F, 8) summing to 1, intensity (F,), windowed and smoothed."""
        weights, intensity = self._windowed(features)
        smoothed = moving_average(torch.cat([weights, intensity[:, None]], 1), self.config.smooth)
        weights = smoothed[:, :NUM_EMOTIONS]
        return weights / weights.sum(1, keepdim=True), smoothed[:, NUM_EMOTIONS]

    def _windowed(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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
