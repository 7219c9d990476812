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

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..emotions import CONDITION_DIM


@dataclass(frozen=True)
class S2GConfig:
    feature_dim: int
    num_vertices: int
    hidden: int = 256
    layers: int = 2
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

    @torch.inference_mode()
    def predict(self, features: torch.Tensor, condition: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
        """(F, D), (F, 9) -> (F, V, 3) displacements on the CPU; the head runs in frame chunks."""
        states = self.hidden_states(features[None], condition[None])[0]
        out = torch.empty(states.shape[0], self.config.num_vertices, 3, dtype=torch.float32)
        for start in range(0, states.shape[0], chunk):
            block = self.head(states[start:start + chunk])
            out[start:start + chunk] = block.unflatten(-1, (self.config.num_vertices, 3)).float().cpu()
        return out
