"""Whisper's audio encoder and its log-mel front end, in plain PyTorch.

Inference needs only these two pieces of Whisper, so they are written here instead of
importing a model library (whose import alone costs seconds of a cold start). Tensor names
follow the usual Whisper encoder layout (``conv1``, ``conv2``, ``embed_positions``,
``layers.N.self_attn.q_proj`` ..., ``layer_norm``), so converted weights load by name:

    16 kHz samples, zero-padded to 30 s
      -> log-mel (B, mel_bins, 3000): 25 ms Hann frames every 10 ms, Slaney mel filters,
         log10, floored at (peak - 8), then (x + 4) / 4
      -> conv 3 + GELU, conv 3 stride 2 + GELU, + learned positions   (B, 1500, d_model)
      -> pre-norm transformer layers (self-attention, GELU MLP), final LayerNorm
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 30 * SAMPLE_RATE    # Whisper always encodes 30 s
N_FFT = 400                          # 25 ms frames
HOP = 160                            # 10 ms hop -> 3000 mel frames per window


@dataclass(frozen=True)
class WhisperEncoderConfig:
    """Sizes of a Whisper encoder. positions: output frames per 30 s window (1500, 50 Hz)."""

    d_model: int
    layers: int
    heads: int
    ffn_dim: int
    mel_bins: int = 80
    positions: int = WINDOW_SAMPLES // (2 * HOP)


class _SelfAttention(nn.Module):
    def __init__(self, d_model: int, heads: int):
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model {d_model} is not divisible by {heads} heads")
        self.heads = heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, frames, width = x.shape
        head_dim = width // self.heads

        def split(t: torch.Tensor) -> torch.Tensor:     # (B, T, D) -> (B, H, T, D / H)
            return t.view(batch, frames, self.heads, head_dim).transpose(1, 2).contiguous()

        # The query is scaled before the product (as Whisper's weights were trained), not inside it.
        q = split(self.q_proj(x) * head_dim ** -0.5)
        out = F.scaled_dot_product_attention(q, split(self.k_proj(x)), split(self.v_proj(x)), scale=1.0)
        return self.out_proj(out.transpose(1, 2).reshape(batch, frames, width))


class _EncoderLayer(nn.Module):
    def __init__(self, config: WhisperEncoderConfig):
        super().__init__()
        self.self_attn = _SelfAttention(config.d_model, config.heads)
        self.self_attn_layer_norm = nn.LayerNorm(config.d_model)
        self.fc1 = nn.Linear(config.d_model, config.ffn_dim)
        self.fc2 = nn.Linear(config.ffn_dim, config.d_model)
        self.final_layer_norm = nn.LayerNorm(config.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.self_attn_layer_norm(x))
        return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))


class _Positions(nn.Module):
    """The learned position table, ``weight`` (positions, d_model); filled by the weights loaded."""

    def __init__(self, positions: int, d_model: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(positions, d_model), requires_grad=False)


class WhisperNet(nn.Module):
    """(B, mel_bins, 2 x positions) log-mel -> (B, positions, d_model) hidden states."""

    def __init__(self, config: WhisperEncoderConfig):
        super().__init__()
        self.config = config
        self.conv1 = nn.Conv1d(config.mel_bins, config.d_model, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(config.d_model, config.d_model, kernel_size=3, stride=2, padding=1)
        self.embed_positions = _Positions(config.positions, config.d_model)
        self.layers = nn.ModuleList(_EncoderLayer(config) for _ in range(config.layers))
        self.layer_norm = nn.LayerNorm(config.d_model)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        if mel.shape[-1] != 2 * self.config.positions:
            raise ValueError(f"Whisper encodes {2 * self.config.positions} mel frames (30 s), got {mel.shape[-1]}")
        x = F.gelu(self.conv2(F.gelu(self.conv1(mel)))).permute(0, 2, 1)
        x = x + self.embed_positions.weight
        for layer in self.layers:
            x = layer(x)
        return self.layer_norm(x)


# --------------------------------------------------------------------------- the front end


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear (3 mel per 200 Hz) below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, np.float64)
    log_step = math.log(6.4) / 27.0
    return np.where(hz < 1000.0, 3.0 * hz / 200.0,
                    15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / log_step)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, np.float64)
    log_step = math.log(6.4) / 27.0
    return np.where(mel < 15.0, 200.0 * mel / 3.0, 1000.0 * np.exp(log_step * (mel - 15.0)))


def mel_filters(mel_bins: int = 80, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(n_fft // 2 + 1, mel_bins) float64 triangular filters on Slaney's mel scale from 0 Hz to
    the Nyquist frequency, each scaled to unit area (Slaney normalisation)."""
    nyquist = sample_rate / 2.0
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(nyquist), mel_bins + 2))   # Hz
    bins = np.linspace(0.0, nyquist, n_fft // 2 + 1)                                      # Hz
    width = np.diff(edges)
    rising = (bins[:, None] - edges[None, :-2]) / width[:-1]
    falling = (edges[None, 2:] - bins[:, None]) / width[1:]
    triangles = np.maximum(0.0, np.minimum(rising, falling))
    return triangles * (2.0 / (edges[2:] - edges[:-2]))


class LogMel:
    """Whisper's log-mel front end: up to 30 s chunks of 16 kHz samples -> (B, mel_bins, 3000)."""

    def __init__(self, mel_bins: int = 80):
        self.filters = torch.from_numpy(mel_filters(mel_bins)).float().T.contiguous()   # (mel_bins, 201)
        self.window = torch.hann_window(N_FFT)

    def __call__(self, chunks: list[np.ndarray]) -> torch.Tensor:
        """(B, mel_bins, 3000) float32; each chunk is zero-padded to 30 s."""
        batch = np.zeros((len(chunks), WINDOW_SAMPLES), np.float32)
        for row, chunk in zip(batch, chunks):
            chunk = np.asarray(chunk, np.float32).reshape(-1)
            if chunk.size > WINDOW_SAMPLES:
                raise ValueError(f"a Whisper window holds at most 30 s, got {chunk.size / SAMPLE_RATE:.2f} s")
            row[:chunk.size] = chunk
        spectrum = torch.stft(torch.from_numpy(batch), N_FFT, HOP, window=self.window, return_complex=True)
        power = spectrum[..., :-1].abs() ** 2                           # (B, 201, 3000)
        log_mel = (self.filters @ power).clamp(min=1e-10).log10()
        peak = log_mel.amax(dim=(1, 2), keepdim=True)
        return (torch.maximum(log_mel, peak - 8.0) + 4.0) / 4.0
