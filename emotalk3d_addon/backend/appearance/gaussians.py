"""A set of 3D Gaussians in the 3DGS parameterisation (SPEC 2.4).

Stored as raw, unconstrained parameters so the set can be optimised directly:

- ``means``          (N, 3) float, metres, subject space (+Z up, face toward -Y)
- ``quats``          (N, 4) float, rotation quaternion w, x, y, z (unit norm expected;
                     values read from other tools are kept as stored, use ``unit_quats``)
- ``log_scales``     (N, 3) float, natural log of the per-axis standard deviation, metres
- ``opacity_logits`` (N,)   float, logit of the opacity
- ``sh``             (N, K, 3) float, spherical-harmonic colour coefficients per RGB
                     channel, K = (deg + 1)^2 for deg 0..3. INRIA convention: ``sh[:, 0]``
                     is the DC term and colour = sum_k sh[:, k] * Y_k(dir) + 0.5.

``read_ply`` / ``write_ply`` (standard 3DGS PLY files) live in ``ply.py`` and are
re-exported here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Sequence

import torch

from ..errors import InputError

MAX_SH_DEGREE = 3
SH_C0 = 0.28209479177387814
"""Y_0^0: an RGB colour c maps to the DC coefficient (c - 0.5) / SH_C0."""

_FIELDS = ("means", "quats", "log_scales", "opacity_logits", "sh")


def num_sh_coeffs(degree: int) -> int:
    """K = (degree + 1)^2 coefficients per channel for an SH degree in 0..3."""
    if not 0 <= int(degree) <= MAX_SH_DEGREE:
        raise ValueError(f"SH degree must be in 0..{MAX_SH_DEGREE}, got {degree}")
    return (int(degree) + 1) ** 2


def sh_degree_for(k: int) -> int:
    """The SH degree whose coefficient count is ``k`` (1, 4, 9 or 16); ValueError otherwise."""
    d = math.isqrt(int(k)) - 1
    if k < 1 or (d + 1) ** 2 != k or d > MAX_SH_DEGREE:
        raise ValueError(f"{k} SH coefficients per channel is not (deg+1)^2 for a degree in 0..{MAX_SH_DEGREE}")
    return d


def rgb_to_sh0(rgb: torch.Tensor) -> torch.Tensor:
    """(..., 3) colour in [0, 1] -> (..., 3) DC coefficient (INRIA convention)."""
    return (rgb - 0.5) / SH_C0


@dataclass(eq=False)
class GaussianSet:
    """N Gaussians as torch tensors (see the module docstring for shapes and units)."""

    means: torch.Tensor
    quats: torch.Tensor
    log_scales: torch.Tensor
    opacity_logits: torch.Tensor
    sh: torch.Tensor

    def __post_init__(self) -> None:
        n = self.means.shape[0] if self.means.ndim == 2 else -1
        want = {
            "means": (n, 3), "quats": (n, 4), "log_scales": (n, 3), "opacity_logits": (n,),
        }
        for name, shape in want.items():
            t = getattr(self, name)
            if not isinstance(t, torch.Tensor):
                raise ValueError(f"GaussianSet.{name} must be a torch tensor, got {type(t).__name__}")
            if tuple(t.shape) != shape:
                raise ValueError(f"GaussianSet.{name} must have shape {shape}, got {tuple(t.shape)}")
        if not isinstance(self.sh, torch.Tensor) or self.sh.ndim != 3 or self.sh.shape[0] != n \
                or self.sh.shape[2] != 3:
            raise ValueError(f"GaussianSet.sh must have shape ({n}, K, 3), got "
                             f"{tuple(getattr(self.sh, 'shape', ()))}")
        sh_degree_for(self.sh.shape[1])
        for name in _FIELDS:
            if not getattr(self, name).is_floating_point():
                raise ValueError(f"GaussianSet.{name} must be floating point, got {getattr(self, name).dtype}")

    # ------------------------------------------------------------------ properties
    @property
    def num(self) -> int:
        """N, the number of Gaussians."""
        return int(self.means.shape[0])

    def __len__(self) -> int:
        return self.num

    @property
    def sh_degree(self) -> int:
        """SH degree 0..3 (from K = (deg + 1)^2)."""
        return sh_degree_for(self.sh.shape[1])

    @property
    def scales(self) -> torch.Tensor:
        """(N, 3) per-axis standard deviations, metres (exp of ``log_scales``)."""
        return torch.exp(self.log_scales)

    @property
    def opacities(self) -> torch.Tensor:
        """(N,) opacities in [0, 1] (sigmoid of ``opacity_logits``)."""
        return torch.sigmoid(self.opacity_logits)

    @property
    def unit_quats(self) -> torch.Tensor:
        """(N, 4) wxyz quaternions normalised to unit length."""
        return torch.nn.functional.normalize(self.quats, dim=-1)

    @property
    def device(self) -> torch.device:
        return self.means.device

    @property
    def dtype(self) -> torch.dtype:
        return self.means.dtype

    # ------------------------------------------------------------------ construction
    @classmethod
    def empty(cls, sh_degree: int = 0, dtype: torch.dtype = torch.float32,
              device: torch.device | str = "cpu") -> "GaussianSet":
        """A set of zero Gaussians."""
        k = num_sh_coeffs(sh_degree)
        z = lambda *s: torch.zeros(*s, dtype=dtype, device=device)  # noqa: E731
        return cls(z(0, 3), z(0, 4), z(0, 3), z(0), z(0, k, 3))

    @classmethod
    def from_points(cls, means: torch.Tensor, rgb: torch.Tensor | None = None, *, sh_degree: int = 0,
                    scale: float | torch.Tensor = 0.002, opacity: float = 0.1) -> "GaussianSet":
        """Isotropic Gaussians initialised at points, as 3DGS initialises from a point cloud.

        means (N, 3) metres; rgb (N, 3) in [0, 1] (default grey); scale: standard deviation
        in metres, a float or (N,) tensor; opacity in (0, 1). Rotation identity, higher SH 0.
        """
        means = torch.as_tensor(means)
        if not means.is_floating_point():
            means = means.float()
        n, dt, dev = means.shape[0], means.dtype, means.device
        k = num_sh_coeffs(sh_degree)
        sh = torch.zeros(n, k, 3, dtype=dt, device=dev)
        if rgb is not None:
            sh[:, 0] = rgb_to_sh0(torch.as_tensor(rgb, dtype=dt, device=dev))
        quats = torch.zeros(n, 4, dtype=dt, device=dev)
        quats[:, 0] = 1.0
        s = torch.as_tensor(scale, dtype=dt, device=dev)
        log_scales = torch.log(s).reshape(-1, 1).expand(n, 3).clone()
        logit = math.log(opacity / (1.0 - opacity))
        return cls(means.clone(), quats, log_scales, torch.full((n,), logit, dtype=dt, device=dev), sh)

    @staticmethod
    def concat(sets: Sequence["GaussianSet"]) -> "GaussianSet":
        """Concatenate sets in order (same SH degree); differentiable."""
        sets = list(sets)
        if not sets:
            raise ValueError("concat needs at least one GaussianSet")
        degrees = {s.sh_degree for s in sets}
        if len(degrees) != 1:
            raise ValueError(f"cannot concatenate Gaussian sets of different SH degrees {sorted(degrees)}")
        return GaussianSet(*(torch.cat([getattr(s, f) for s in sets], 0) for f in _FIELDS))

    def index(self, idx: torch.Tensor | slice | Sequence[int]) -> "GaussianSet":
        """Gaussians selected by a (N,) bool mask, integer indices or a slice; differentiable."""
        if isinstance(idx, torch.Tensor):
            idx = idx.to(self.device)
            if idx.dtype == torch.bool and tuple(idx.shape) != (self.num,):
                raise ValueError(f"bool mask must have shape ({self.num},), got {tuple(idx.shape)}")
        elif not isinstance(idx, slice):
            idx = torch.as_tensor(idx, dtype=torch.long, device=self.device)
        return GaussianSet(*(getattr(self, f)[idx] for f in _FIELDS))

    subset = index

    def map(self, fn) -> "GaussianSet":
        """A new set with ``fn`` applied to every tensor."""
        return GaussianSet(*(fn(getattr(self, f)) for f in _FIELDS))

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "GaussianSet":
        """Copy to a device and/or floating dtype."""
        return self.map(lambda t: t.to(device=device, dtype=dtype))

    def detach(self) -> "GaussianSet":
        """The same values without autograd history."""
        return self.map(lambda t: t.detach())

    def clone(self) -> "GaussianSet":
        return self.map(lambda t: t.clone())

    def requires_grad_(self, flag: bool = True) -> "GaussianSet":
        """Make every tensor a leaf that records gradients (in place); returns self."""
        for f in _FIELDS:
            getattr(self, f).requires_grad_(flag)
        return self

    def tensors(self) -> list[torch.Tensor]:
        """The five tensors in field order (e.g. to hand to an optimiser)."""
        return [getattr(self, f) for f in _FIELDS]

    # ------------------------------------------------------------------ serialisation
    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Detached, contiguous CPU tensors keyed ``prefix + field`` (for safetensors)."""
        return {prefix + f: getattr(self, f).detach().to("cpu").contiguous() for f in _FIELDS}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], prefix: str = "") -> "GaussianSet":
        """Inverse of ``state_dict``; InputError naming missing keys or bad shapes/values."""
        missing = [prefix + f for f in _FIELDS if prefix + f not in state]
        if missing:
            raise InputError(f"Gaussian state is missing {', '.join(missing)}")
        tensors = [torch.as_tensor(state[prefix + f]) for f in _FIELDS]
        try:
            gs = cls(*tensors)
        except ValueError as exc:
            raise InputError(f"invalid Gaussian state: {exc}") from None
        for f, t in zip(_FIELDS, tensors):
            if not torch.isfinite(t).all():
                raise InputError(f"Gaussian state {prefix + f} holds NaN or Inf")
        return gs

    def __repr__(self) -> str:
        return f"GaussianSet(num={self.num}, sh_degree={self.sh_degree}, dtype={self.dtype}, device={self.device})"


assert tuple(f.name for f in fields(GaussianSet)) == _FIELDS

__all__ = ["GaussianSet", "num_sh_coeffs", "sh_degree_for", "rgb_to_sh0",
           "SH_C0", "MAX_SH_DEGREE"]
