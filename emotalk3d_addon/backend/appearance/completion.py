"""Head completion: OTF ("outside the face") points, their motion and fusion weight (SPEC 2.4-2.5).

Sampling. The paper adds 85,500 uniformly distributed points around the head for hair,
neck and shoulders. Here they are drawn uniformly (seeded) in an axis-aligned box
around the head, then every point closer than ``exclusion_mm`` (default d0 = 5 mm) to a
face point is rejected and redrawn, so the result is uniform over the box minus a thin
shell around the face. The default box is derived from the face points' bounding box
(``head_bounds``; its factors are documented there), or pass explicit bounds in metres.
Points inside the skull are kept: 3DGS optimisation prunes what it does not need.

Binding. Every OTF point is tied to its nearest face point (index and distance, metres),
computed once on canonical positions (``bind_otf``; recompute it if canonical
optimisation moved the points). That gives

- its motion ``otf_motion``: delta_otf = delta_f[nearest] * exp(-alpha * d_mm), alpha = 0.1/mm;
- its fusion weight ``fusion_weight``: W = clamp((d_mm - d0) / d_th, 0, 1), d0 = 5 mm,
  d_th = 10 mm (face points have d = 0, hence W = 0).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import InputError
from .constants import ALPHA_PER_MM, D0_MM, DTH_MM, MM_PER_M, NUM_OTF_POINTS

_BLOCK_ENTRIES = 1 << 19  # distance-matrix entries per block (2 MiB in float32: stays in cache, fastest)


# --------------------------------------------------------------------------- nearest face point


def nearest_face_point(points: torch.Tensor, face: torch.Tensor,
                       block_entries: int = _BLOCK_ENTRIES) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest face point of every point: (M, 3), (Nf, 3) metres -> index (M,) int64, distance (M,) metres.

    Brute force in row blocks of ``block_entries`` matrix entries, so memory stays
    bounded and each block stays in cache (85.5k x 32k takes ~1.5 s on 2 CPU cores). The argmin uses |f|^2 - 2 p.f on centred coordinates
    (one fused matmul per block); the returned distance is recomputed exactly from the
    chosen pair. No gradient flows (the binding is fixed data).
    """
    if points.ndim != 2 or points.shape[1] != 3 or face.ndim != 2 or face.shape[1] != 3:
        raise ValueError(f"points and face must have shape (M, 3) and (Nf, 3), got "
                         f"{tuple(points.shape)} and {tuple(face.shape)}")
    if face.shape[0] == 0:
        raise ValueError("there are no face points to measure distances to")
    with torch.no_grad():
        centre = face.mean(0)
        p = points.detach() - centre
        f = face.detach().to(p.dtype) - centre
        f2 = (f * f).sum(1)
        ft = f.T.contiguous()
        rows = max(1, block_entries // f.shape[0])
        index = torch.empty(p.shape[0], dtype=torch.long, device=p.device)
        for s in range(0, p.shape[0], rows):
            # |p - f|^2 = |p|^2 + |f|^2 - 2 p.f ; |p|^2 is constant per row
            index[s:s + rows] = torch.addmm(f2, p[s:s + rows], ft, alpha=-2.0).argmin(1)
        distance = (p - f[index]).norm(dim=1)
    return index, distance


# --------------------------------------------------------------------------- motion and weight


def otf_motion(delta_face: torch.Tensor, nearest: torch.Tensor, distance_m: torch.Tensor,
               alpha_per_mm: float = ALPHA_PER_MM) -> torch.Tensor:
    """OTF motion delta_f[nearest] * exp(-alpha d): (..., Nf, 3), (No,), (No,) metres -> (..., No, 3).

    ``delta_face`` is the face points' motion (metres); ``distance_m`` is converted to
    millimetres (``MM_PER_M``) because alpha is per millimetre. Differentiable in delta_face.
    """
    decay = torch.exp(-alpha_per_mm * (distance_m.to(delta_face) * MM_PER_M))
    return delta_face.index_select(-2, nearest.to(delta_face.device)) * decay[:, None]


def fusion_weight(distance_m: torch.Tensor, d0_mm: float = D0_MM, dth_mm: float = DTH_MM) -> torch.Tensor:
    """Static weight W_p for distances (any shape, metres) to the nearest face point.

    0 below d0, (d - d0) / d_th between d0 and d0 + d_th, 1 beyond; computed in
    millimetres. Canonical (static) opacity is scaled by W, dynamic opacity by 1 - W.
    """
    d_mm = distance_m * MM_PER_M
    return ((d_mm - d0_mm) / dth_mm).clamp(0.0, 1.0)


@dataclass(eq=False)
class OTFBinding:
    """Each OTF point's nearest face point, fixed for a subject.

    nearest: (No,) int64 index into the face Gaussians.
    distance: (No,) float32 distance to it, metres.
    """

    nearest: torch.Tensor
    distance: torch.Tensor

    def __post_init__(self) -> None:
        if self.nearest.ndim != 1 or tuple(self.distance.shape) != tuple(self.nearest.shape):
            raise ValueError(f"nearest and distance must both have shape (No,), got "
                             f"{tuple(self.nearest.shape)} and {tuple(self.distance.shape)}")

    @property
    def num(self) -> int:
        """No, the number of OTF points."""
        return int(self.nearest.shape[0])

    @property
    def weight(self) -> torch.Tensor:
        """(No,) static fusion weight W_p in [0, 1]."""
        return fusion_weight(self.distance)

    def to(self, device: torch.device | str) -> "OTFBinding":
        return OTFBinding(self.nearest.to(device), self.distance.to(device))

    def state_dict(self, prefix: str = "otf.") -> dict[str, torch.Tensor]:
        """{prefix+'nearest': int64, prefix+'distance': float32} CPU tensors (for safetensors)."""
        return {prefix + "nearest": self.nearest.detach().to("cpu", torch.int64).contiguous(),
                prefix + "distance": self.distance.detach().to("cpu", torch.float32).contiguous()}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], num_face: int, prefix: str = "otf.") -> "OTFBinding":
        """Inverse of ``state_dict``; InputError for missing keys or out-of-range values."""
        for k in ("nearest", "distance"):
            if prefix + k not in state:
                raise InputError(f"OTF binding is missing {prefix + k}")
        nearest = torch.as_tensor(state[prefix + "nearest"]).long()
        distance = torch.as_tensor(state[prefix + "distance"]).float()
        try:
            out = cls(nearest, distance)
        except ValueError as exc:
            raise InputError(f"invalid OTF binding: {exc}") from None
        if out.num and (int(nearest.min()) < 0 or int(nearest.max()) >= num_face):
            raise InputError(f"OTF binding {prefix}nearest holds indices outside [0, {num_face})")
        if not torch.isfinite(distance).all() or (distance < 0).any():
            raise InputError(f"OTF binding {prefix}distance must be finite and >= 0")
        return out


def bind_otf(otf_points: torch.Tensor, face_points: torch.Tensor) -> OTFBinding:
    """Nearest face point of every OTF point: (No, 3), (Nf, 3) metres -> OTFBinding."""
    nearest, distance = nearest_face_point(otf_points, face_points)
    return OTFBinding(nearest, distance.to(torch.float32))


# --------------------------------------------------------------------------- sampling


@dataclass
class CompletionConfig:
    """How head-completion points are sampled.

    num_points: how many OTF points (paper: 85,500).
    exclusion_mm: no point closer than this to a face point, millimetres (default d0).
    bounds: ((3,), (3,)) lower/upper box corners in metres; None = ``head_bounds(face)``.
    seed: the sampler's random seed (the same seed gives the same points).
    """

    num_points: int = NUM_OTF_POINTS
    exclusion_mm: float = D0_MM
    bounds: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None
    seed: int = 0


def head_bounds(face_points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Default sampling box (lo, hi), each (3,) metres, from the face points (Nf, 3).

    With the face's bounding box [lo, hi], centre c and H its largest extent (about the
    face height): x (ear to ear) spans c.x +- 1.25 * width (out to the shoulders);
    y (depth; the face looks toward -Y) spans lo.y - 0.1 H to lo.y + 1.3 H (in front of
    the nose to behind the back of the head and its hair); z (up) spans lo.z - 0.8 H
    to hi.z + 0.35 H (neck and shoulder tops to above the hair).
    """
    lo, hi = face_points.min(0).values, face_points.max(0).values
    size = hi - lo
    h = size.max()
    c = 0.5 * (lo + hi)
    box_lo = torch.stack([c[0] - 1.25 * size[0], lo[1] - 0.1 * h, lo[2] - 0.8 * h])
    box_hi = torch.stack([c[0] + 1.25 * size[0], lo[1] + 1.3 * h, hi[2] + 0.35 * h])
    return box_lo, box_hi


def sample_completion(face_points: torch.Tensor, config: CompletionConfig | None = None,
                      max_rounds: int = 64) -> torch.Tensor:
    """Head-completion points (num_points, 3) float32 metres: uniform in the box, none near the face.

    Rejection sampling in rounds (seeded ``torch.Generator`` on the CPU). Raises
    ValueError when the box is degenerate or the exclusion zone leaves (almost) no room.
    """
    cfg = config or CompletionConfig()
    face = face_points.detach().to("cpu", torch.float32)
    if cfg.bounds is None:
        lo, hi = head_bounds(face)
    else:
        lo = torch.as_tensor(cfg.bounds[0], dtype=torch.float32)
        hi = torch.as_tensor(cfg.bounds[1], dtype=torch.float32)
    if lo.shape != (3,) or hi.shape != (3,) or not bool((hi > lo).all()):
        raise ValueError(f"sampling box must have lo < hi on every axis, got lo={lo.tolist()} hi={hi.tolist()}")
    n = int(cfg.num_points)
    if n < 0:
        raise ValueError(f"num_points must be >= 0, got {n}")
    gen = torch.Generator().manual_seed(int(cfg.seed))
    limit = cfg.exclusion_mm / MM_PER_M
    face_lo, face_hi = face.min(0).values, face.max(0).values
    kept: list[torch.Tensor] = []
    have = 0
    for _ in range(max_rounds):
        if have >= n:
            break
        batch = lo + (hi - lo) * torch.rand(max(1024, 2 * (n - have)), 3, generator=gen)
        if limit > 0:
            # only points inside the face's bounding box grown by the limit can be too close
            near = ((batch >= face_lo - limit) & (batch <= face_hi + limit)).all(1)
            ok = torch.ones(batch.shape[0], dtype=torch.bool)
            if near.any():
                _, dist = nearest_face_point(batch[near], face)
                ok[near] = dist >= limit
            batch = batch[ok]
        kept.append(batch)
        have += batch.shape[0]
    if have < n:
        raise ValueError(f"could only place {have} of {n} completion points outside {cfg.exclusion_mm} mm "
                         f"of the face in the sampling box; enlarge the box or reduce the exclusion")
    return torch.cat(kept)[:n].contiguous() if kept else torch.zeros(0, 3)
