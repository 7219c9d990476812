"""S2GNet: speech features + per-frame emotion state -> vertex displacements (SPEC 2.3).

Follows FaceXHuBERT: a 2-layer GRU (hidden 256) over frame-rate-matched audio features,
its output multiplied by an embedding of the condition, and a zero-initialised linear
head regressing per-vertex displacements from the subject's template mesh. The condition
here is per frame (emotion weights (8) + intensity (1)), so keys can change mid-clip.
Besides FaceXHuBERT's multiplicative embedding, the condition also adds a (zero-initialised)
shift to the GRU states: a held expression (raised brows, a frown) is a constant offset
that a product with speech-driven states alone learns only slowly.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..emotions import CONDITION_DIM
from ..model_limits import MAX_MODEL_LAYERS
from ..speech.framerate import sample_rows


@dataclass(frozen=True)
class S2GConfig:
    feature_dim: int
    num_vertices: int
    hidden: int = 256
    layers: int = field(default=2, metadata={"max": MAX_MODEL_LAYERS})
    bidirectional: bool = False
    condition_dim: int = CONDITION_DIM

    @classmethod
    def from_dict(cls, data: dict) -> "S2GConfig":
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)


class S2GNet(nn.Module):
    """(B, F, D) features, (B, F, 9) condition -> (B, F, V, 3) displacements, metres."""

    def __init__(self, config: S2GConfig):
        super().__init__()
        self.config = config
        self.gru = nn.GRU(config.feature_dim, config.hidden, config.layers, batch_first=True,
                          bidirectional=config.bidirectional)
        width = config.hidden * (2 if config.bidirectional else 1)
        self.condition = nn.Linear(config.condition_dim, width)
        self.condition_shift = nn.Linear(config.condition_dim, width)
        self.head = nn.Linear(width, config.num_vertices * 3)
        if self.head.weight.is_meta:
            # Laid out on the meta device (shapes only, e.g. to check a bundle): there are no
            # values to set, and a random fill there would load PyTorch's compiler for nothing.
            return
        with torch.no_grad():
            # Start as identity modulation (embedding ~ 1) and predict the template (zero head).
            self.condition.weight.normal_(0.0, 0.02)
            self.condition.bias.fill_(1.0)
            self.condition_shift.weight.zero_()
            self.condition_shift.bias.zero_()
            self.head.weight.zero_()
            self.head.bias.zero_()

    def hidden_states(self, features: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """(B, F, W) conditioned GRU states."""
        states, _ = self.gru(features)
        return states * self.condition(condition) + self.condition_shift(condition)

    def forward(self, features: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        states = self.hidden_states(features, condition)
        return self.head(states).unflatten(-1, (self.config.num_vertices, 3))

    def chunked_hidden_states(self, features: torch.Tensor, condition: torch.Tensor,
                              chunk: int = 128, burn_in: int = 32) -> torch.Tensor:
        """(F, D), (F, 9) -> (F, W) states, long clips run as a batch of overlapping chunks.

        A GRU is sequential, so a 60 s clip is 1,800 dependent steps; here it is cut into
        chunks of ``chunk`` frames, each preceded (and, when bidirectional, followed) by
        ``burn_in`` frames that only warm the state up, and the chunks run as one batch.
        Training draws crops that start from a zero state at random places, so the model
        is made for this; the test suite checks the result against one sequential pass.
        """
        frames = features.shape[0]
        after = burn_in if self.config.bidirectional else 0
        if frames <= chunk + burn_in + after:
            return self.hidden_states(features[None], condition[None])[0]
        spans = [(max(0, s - burn_in), min(frames, s + chunk + after), s, min(frames, s + chunk))
                 for s in range(0, frames, chunk)]
        lengths = torch.tensor([b - a for a, b, _, _ in spans])
        batch = torch.nn.utils.rnn.pad_sequence([features[a:b] for a, b, _, _ in spans], batch_first=True)
        packed = torch.nn.utils.rnn.pack_padded_sequence(batch, lengths, batch_first=True, enforce_sorted=False)
        states, _ = self.gru(packed)
        states, _ = torch.nn.utils.rnn.pad_packed_sequence(states, batch_first=True)
        core = torch.cat([states[i, s - a:e - a] for i, (a, _, s, e) in enumerate(spans)])
        return core * self.condition(condition) + self.condition_shift(condition)

    @torch.inference_mode()
    def predict(self, features: torch.Tensor, condition: torch.Tensor, head_chunk: int = 4096,
                chunk: int = 128, burn_in: int = 32, sample_at: torch.Tensor | None = None) -> torch.Tensor:
        """(F, D), (F, 9) -> (F, V, 3) displacements (metres) on the CPU.

        The GRU runs in overlapping chunks (``chunked_hidden_states``), the head in blocks of
        ``head_chunk`` frames so memory stays bounded on long clips. ``sample_at`` (N,):
        fractional frame positions to return instead, (N, V, 3); the conditioned states are
        interpolated there before the head, which is linear, so this equals interpolating
        the displacements without ever holding them at both rates.
        """
        states = self.chunked_hidden_states(features, condition, chunk, burn_in)
        if sample_at is not None:
            states = sample_rows(states, sample_at)
        out = torch.empty(states.shape[0], self.config.num_vertices * 3, dtype=torch.float32)
        weight_t, bias = self.head.weight.t(), self.head.bias
        for start in range(0, states.shape[0], head_chunk):
            rows = slice(start, start + head_chunk)
            if states.device.type == "cpu" and states.dtype == torch.float32:
                torch.addmm(bias, states[rows], weight_t, out=out[rows])   # no temporary copy
            else:
                out[rows] = torch.addmm(bias, states[rows], weight_t).float().cpu()
        return out.unflatten(-1, (self.config.num_vertices, 3))
