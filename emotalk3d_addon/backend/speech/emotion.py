"""Emotion extractor: a transformer context network over speech features (SPEC 2.2).

Predicts, per animation frame, an 8-way emotion distribution and an intensity in [0, 1].
The network has no absolute position: order comes from a depthwise temporal convolution
(relative positions) and each frame attends only to frames within ``context`` of it, so a
frame's output depends on the features within ``receptive_field`` frames of it and on
nothing else. Long clips run in windows that overlap by twice that reach and keep only
their cores, so every frame is computed with its whole neighbourhood, exactly as in one
pass over the clip: where the window grid falls does not matter. The output is smoothed
over ``smooth`` frames.

The features themselves are another matter: Whisper's encoder adds its own absolute
position and attends over its whole 30 s window, so the same speech encoded at another
place of a longer file gives other features (``performance/emotion_track.py`` hears
each utterance on its own for that reason).
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
    def predict_frames(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(F, D) features -> weights (F, 8) summing to 1, intensity (F,), on the CPU, unsmoothed."""
        weights, intensity = self._windowed(features.to(self.norm.weight.device))
        return weights.float().cpu(), intensity.float().cpu()

    @torch.inference_mode()
    def predict_track(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(F, D) features -> weights (F, 8) summing to 1, intensity (F,), windowed and smoothed."""
        weights, intensity = self._windowed(features)
        smoothed = moving_average(torch.cat([weights, intensity[:, None]], 1), self.config.smooth)
        weights = smoothed[:, :NUM_EMOTIONS]
        return weights / weights.sum(1, keepdim=True), smoothed[:, NUM_EMOTIONS]

    @property
    def receptive_field(self) -> int:
        """Frames either side of a frame that its output depends on (attention reach per
        layer plus the half-width of the order convolution)."""
        return self.config.layers * self.config.context + (self.config.conv_kernel | 1) // 2

    def _windowed(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(F, D) -> softmax weights (F, 8) and intensity (F,), unsmoothed. Windows of at
        least ``config.window`` frames whose cores tile the clip, each core with
        ``receptive_field`` frames of context either side: identical to one pass."""
        frames, reach = features.shape[0], self.receptive_field
        core = max(self.config.window - 2 * reach, reach, 1)
        if frames <= core + 2 * reach:
            logits, intensity = self(features[None])
            return logits[0].softmax(-1), intensity[0]
        weights = torch.empty(frames, NUM_EMOTIONS, device=features.device)
        intensity = torch.empty(frames, device=features.device)
        for start in range(0, frames, core):
            stop = min(start + core, frames)
            lo, hi = max(0, start - reach), min(frames, stop + reach)
            logits, inten = self(features[None, lo:hi])
            weights[start:stop] = logits[0, start - lo:stop - lo].softmax(-1)
            intensity[start:stop] = inten[0, start - lo:stop - lo]
        return weights, intensity
