"""G2ANet: geometry -> appearance (SPEC 2.5).

    H_t = FeatureNet(H_o, e, p, dmu)     4-layer MLP, SH colour (K, 3) per point
    R_t = RotationNet(R_o, e, p, dmu)    2-layer MLP, rotation quaternion per point
    dmu = mu_t - mu_o - mean_i(mu_t^i - mu_o^i)   (``motion_offsets``: motion minus the global shift)

Per-point inputs: H_o flattened (3K), R_o normalised (4), p the fixed UV position (2)
with a small Fourier encoding (``uv_frequencies`` F octaves: sin/cos(2^f pi p), 4F more
values; F = 0 feeds p alone), and dmu in millimetres (``MM_PER_M``; motions are a few mm).
The emotion vector e (E,) is the same for every point of a frame, so the first layer is
split in two linear maps, W_pt x_pt + W_e e, which is one linear layer on the
concatenation without copying e per point.

Both nets predict residuals and their last layer is zero-initialised, so an untrained
G2ANet returns H_o and R_o exactly: H_t = H_o + FeatureNet(...); R_t = q ⊗ R_o with
q = normalise((1, 0, 0, 0) + RotationNet(...)) (a unit quaternion, so |R_t| = |R_o|).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .constants import MM_PER_M
from .gaussians import num_sh_coeffs


@dataclass
class G2AConfig:
    """G2ANet hyper-parameters (kept in the subject manifest)."""

    sh_degree: int = 3
    emotion_dim: int = 8
    hidden: int = 128
    uv_frequencies: int = 4

    def __post_init__(self) -> None:
        num_sh_coeffs(self.sh_degree)
        for name in ("emotion_dim", "hidden"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"G2AConfig.{name} must be >= 1, got {getattr(self, name)}")
        if int(self.uv_frequencies) < 0:
            raise ValueError(f"G2AConfig.uv_frequencies must be >= 0, got {self.uv_frequencies}")

    @property
    def num_sh(self) -> int:
        """K = (sh_degree + 1)^2."""
        return num_sh_coeffs(self.sh_degree)

    @property
    def uv_dim(self) -> int:
        """Width of the encoded UV position: 2 + 4F."""
        return 2 + 4 * int(self.uv_frequencies)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "G2AConfig":
        known = {k: d[k] for k in ("sh_degree", "emotion_dim", "hidden", "uv_frequencies") if k in d}
        return cls(**known)


def motion_offsets(mu_t: torch.Tensor, mu_o: torch.Tensor) -> torch.Tensor:
    """dmu = (mu_t - mu_o) - mean over points of (mu_t - mu_o): (..., N, 3) metres -> (..., N, 3) metres."""
    motion = mu_t - mu_o
    return motion - motion.mean(dim=-2, keepdim=True)


def encode_uv(uv: torch.Tensor, frequencies: int) -> torch.Tensor:
    """(..., 2) UV in [0, 1] -> (..., 2 + 4F): [p, sin(2^f pi p), cos(2^f pi p) for f < F]."""
    if frequencies == 0:
        return uv
    scales = (2.0 ** torch.arange(frequencies, dtype=uv.dtype, device=uv.device)) * math.pi
    ang = (uv[..., None, :] * scales[:, None]).flatten(-2)  # (..., 2F)
    return torch.cat([uv, torch.sin(ang), torch.cos(ang)], dim=-1)


class _SplitInput(nn.Module):
    """First layer W_pt x_pt + W_e e + b, with e (..., E) broadcast over the points."""

    def __init__(self, point_dim: int, emotion_dim: int, hidden: int):
        super().__init__()
        self.point = nn.Linear(point_dim, hidden)
        self.emotion = nn.Linear(emotion_dim, hidden, bias=False)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        if e.ndim == 1:  # one frame: fold W_e e into the bias (one fused matmul)
            return nn.functional.linear(x, self.point.weight, self.point.bias + self.emotion(e))
        return self.point(x) + self.emotion(e).unsqueeze(-2)


def _zero(layer: nn.Linear) -> nn.Linear:
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class FeatureNet(nn.Module):
    """4-layer MLP: (H_o (3K), p_enc, dmu_mm; e) -> H_t = H_o + residual, (K, 3) per point."""

    def __init__(self, cfg: G2AConfig):
        super().__init__()
        k, h = cfg.num_sh, cfg.hidden
        self.num_sh = k
        self.inp = _SplitInput(3 * k + cfg.uv_dim + 3, cfg.emotion_dim, h)
        self.body = nn.Sequential(
            nn.ReLU(inplace=True), nn.Linear(h, h),
            nn.ReLU(inplace=True), nn.Linear(h, h),
            nn.ReLU(inplace=True), _zero(nn.Linear(h, 3 * k)),
        )

    def forward(self, sh_o: torch.Tensor, e: torch.Tensor, uv_enc: torch.Tensor, dmu_mm: torch.Tensor) -> torch.Tensor:
        """sh_o (..., N, K, 3), e (..., E), uv_enc (..., N, P), dmu_mm (..., N, 3) -> H_t (..., N, K, 3)."""
        x = torch.cat([sh_o.flatten(-2), uv_enc.expand(*dmu_mm.shape[:-1], -1), dmu_mm], dim=-1)
        return sh_o + self.body(self.inp(x, e)).unflatten(-1, (self.num_sh, 3))


def quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product a ⊗ b of wxyz quaternions (..., 4)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], dim=-1)


class RotationNet(nn.Module):
    """2-layer MLP: (R_o (4), p_enc, dmu_mm; e) -> R_t = normalise(1 + out) ⊗ R_o."""

    def __init__(self, cfg: G2AConfig):
        super().__init__()
        h = cfg.hidden
        self.inp = _SplitInput(4 + cfg.uv_dim + 3, cfg.emotion_dim, h)
        self.out = nn.Sequential(nn.ReLU(inplace=True), _zero(nn.Linear(h, 4)))

    def forward(self, quat_o: torch.Tensor, e: torch.Tensor, uv_enc: torch.Tensor, dmu_mm: torch.Tensor) -> torch.Tensor:
        """quat_o (..., N, 4) wxyz, e (..., E), uv_enc (..., N, P), dmu_mm (..., N, 3) -> R_t (..., N, 4)."""
        unit = nn.functional.normalize(quat_o, dim=-1)
        x = torch.cat([unit, uv_enc.expand(*dmu_mm.shape[:-1], -1), dmu_mm], dim=-1)
        delta = self.out(self.inp(x, e))
        identity = torch.zeros_like(delta)
        identity[..., 0] = 1.0
        return quat_multiply(nn.functional.normalize(identity + delta, dim=-1), quat_o)


class G2ANet(nn.Module):
    """FeatureNet + RotationNet (see the module docstring)."""

    def __init__(self, config: G2AConfig | None = None):
        super().__init__()
        self.config = config or G2AConfig()
        self.feature = FeatureNet(self.config)
        self.rotation = RotationNet(self.config)

    def forward(self, sh_o: torch.Tensor, quat_o: torch.Tensor, emotion: torch.Tensor, uv: torch.Tensor,
                delta_mu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Dynamic colour and rotation of N points.

        sh_o (..., N, K, 3) canonical SH; quat_o (..., N, 4) canonical wxyz rotation;
        emotion (..., E); uv (N, 2) or (..., N, 2) in [0, 1]; delta_mu (..., N, 3) metres
        (``motion_offsets``). Returns H_t (..., N, K, 3) and R_t (..., N, 4).
        """
        cfg = self.config
        if sh_o.shape[-2:] != (cfg.num_sh, 3):
            raise ValueError(f"sh_o must have shape (..., N, {cfg.num_sh}, 3) for SH degree {cfg.sh_degree}, "
                             f"got {tuple(sh_o.shape)}")
        if emotion.shape[-1] != cfg.emotion_dim:
            raise ValueError(f"emotion must have {cfg.emotion_dim} entries, got {tuple(emotion.shape)}")
        uv_enc = encode_uv(uv.to(delta_mu), cfg.uv_frequencies)
        dmu_mm = delta_mu * MM_PER_M
        e = emotion.to(delta_mu)
        return self.feature(sh_o, e, uv_enc, dmu_mm), self.rotation(quat_o, e, uv_enc, dmu_mm)
