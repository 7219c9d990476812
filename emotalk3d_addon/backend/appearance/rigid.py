"""Rigid parts: the moving pieces of a head that the tracked face mesh does not cover.

Eyeballs sit behind the lids and teeth behind the lips; neither is in the face mesh, so
without geometry of their own the lid-rim face Gaussians or static completion Gaussians
must draw them, and they smear or ghost when the face moves. Here each part is a rigid
body with Gaussians of its own (this goes beyond the paper, where G2ANet has to guess).

A part follows the rigid motion of a set of template vertices, its **anchor**: per frame
its rotation R and translation t are the least-squares rigid fit (Kabsch) of the anchor's
template positions onto their positions in the frame, and every Gaussian of the part
moves as mu -> R mu + t, q -> R q. An empty anchor means the part moves with the skull,
which is subject space itself (identity): eyeballs (no gaze is predicted from speech) and
the upper teeth. The lower teeth are anchored to chin vertices and follow the jaw.

``RigidPart`` is the dataset side (a mesh and its anchor, to seed Gaussians from);
``RigidBinding`` is what a subject bundle keeps: the part names, each rigid Gaussian's
part, and the anchors (indices into the template; the rest positions come from it).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError
from .g2anet import quat_multiply
from .placement import rotmat_to_quat

MIN_ANCHOR = 3                 # a rigid fit needs at least three points
MAX_PARTS = 16
PART_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")


@dataclass(frozen=True, eq=False)
class RigidPart:
    """One rigid part as a mesh: name, vertices (V, 3) float32 metres at rest (subject
    space), triangles (T, 3) int64, anchor (A,) int64 template-vertex indices (A = 0: the
    skull, or A >= 3)."""

    name: str
    vertices: np.ndarray
    triangles: np.ndarray
    anchor: np.ndarray

    def __post_init__(self) -> None:
        problem = part_name_problem(self.name)
        if problem:
            raise ValueError(problem)
        v, t, a = self.vertices, self.triangles, self.anchor
        if v.ndim != 2 or v.shape[1] != 3 or v.shape[0] < 3:
            raise ValueError(f"rigid part {self.name!r}: vertices must have shape (V >= 3, 3), got {v.shape}")
        if t.ndim != 2 or t.shape[1] != 3 or t.shape[0] < 1:
            raise ValueError(f"rigid part {self.name!r}: triangles must have shape (T >= 1, 3), got {t.shape}")
        if int(t.min()) < 0 or int(t.max()) >= v.shape[0]:
            raise ValueError(f"rigid part {self.name!r}: triangles index outside its {v.shape[0]} vertices")
        if not np.isfinite(v).all():
            raise ValueError(f"rigid part {self.name!r}: vertices contain NaN/Inf")
        if not self.area() > 0:
            raise ValueError(f"rigid part {self.name!r} has no surface area to seed Gaussians on")
        if a.ndim != 1 or 0 < a.size < MIN_ANCHOR:
            raise ValueError(f"rigid part {self.name!r}: anchor must be empty (the skull) or hold at least "
                             f"{MIN_ANCHOR} vertex indices, got shape {a.shape}")

    def triangle_areas(self) -> np.ndarray:
        """(T,) float64 area of every triangle, square metres."""
        p = self.vertices.astype(np.float64)[self.triangles]
        return 0.5 * np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1)

    def area(self) -> float:
        """Surface area, square metres."""
        return float(self.triangle_areas().sum())


def part_name_problem(name: object) -> str | None:
    """Why ``name`` cannot name a rigid part (None when it can): 1-32 of [a-z0-9_]."""
    if not isinstance(name, str) or not 1 <= len(name) <= 32 or not set(name) <= PART_NAME_CHARS:
        return f"a rigid part's name must be 1-32 characters of a-z, 0-9 and _, got {name!r}"
    return None


def sample_surface(part: RigidPart, count: int, generator: torch.Generator) -> torch.Tensor:
    """(count, 3) float32 points uniform over the part's surface (area-weighted triangles,
    uniform barycentrics), metres."""
    p = torch.from_numpy(part.vertices.astype(np.float64)[part.triangles])       # (T, 3, 3)
    area = torch.from_numpy(part.triangle_areas())
    if count <= 0 or float(area.sum()) <= 0:
        return torch.zeros(0, 3)
    tri = torch.multinomial(area / area.sum(), count, replacement=True, generator=generator)
    u, v = torch.rand(count, generator=generator, dtype=torch.float64), \
        torch.rand(count, generator=generator, dtype=torch.float64)
    flip = u + v > 1
    u, v = torch.where(flip, 1 - u, u), torch.where(flip, 1 - v, v)
    q = p[tri]
    return (q[:, 0] + u[:, None] * (q[:, 1] - q[:, 0]) + v[:, None] * (q[:, 2] - q[:, 0])).float()


def kabsch(rest: torch.Tensor, posed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares rigid motion taking ``rest`` (A, 3) onto ``posed`` (A, 3): R (3, 3)
    proper rotation, t (3,), with posed ~= rest @ R.T + t. Computed in float64."""
    a, b = rest.double(), posed.double()
    ca, cb = a.mean(0), b.mean(0)
    h = (a - ca).T @ (b - cb)
    u, _, vt = torch.linalg.svd(h)
    d = torch.sign(torch.linalg.det(vt.T @ u.T))
    fix = torch.diag(torch.stack([torch.ones((), dtype=d.dtype), torch.ones((), dtype=d.dtype),
                                  torch.where(d == 0, torch.ones_like(d), d)]))
    r = vt.T @ fix @ u.T
    return r, cb - r @ ca


@dataclass(frozen=True, eq=False)
class RigidBinding:
    """The rigid Gaussians of a subject, Nr of them, in K parts.

    names: K part names; part: (Nr,) int64 part of each rigid Gaussian; anchors: K
    (A_k,) int64 template-vertex indices (empty: the skull); anchor_rest: K (A_k, 3)
    float32 their template positions, metres.
    """

    names: tuple[str, ...]
    part: torch.Tensor
    anchors: tuple[torch.Tensor, ...]
    anchor_rest: tuple[torch.Tensor, ...]

    @classmethod
    def empty(cls) -> "RigidBinding":
        return cls((), torch.zeros(0, dtype=torch.int64), (), ())

    @classmethod
    def build(cls, names: list[str] | tuple[str, ...], part: torch.Tensor, anchors: list[np.ndarray],
              template: np.ndarray) -> "RigidBinding":
        """From part names, each Gaussian's part (Nr,), the anchors and the template (V, 3)."""
        template = np.asarray(template, np.float32)
        idx = tuple(torch.as_tensor(np.asarray(a), dtype=torch.int64).reshape(-1) for a in anchors)
        rest = tuple(torch.from_numpy(template[a.numpy()].copy()) for a in idx)
        return cls(tuple(names), torch.as_tensor(part, dtype=torch.int64), idx, rest)

    @property
    def num(self) -> int:
        """Nr, the number of rigid Gaussians."""
        return int(self.part.shape[0])

    def index(self, keep: torch.Tensor) -> "RigidBinding":
        """The binding of a subset of the rigid Gaussians (a bool mask or indices over Nr)."""
        return RigidBinding(self.names, self.part[keep.to(self.part.device)], self.anchors, self.anchor_rest)

    def transforms(self, vertices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each part's motion in a mesh frame (V, 3) metres: R (K, 3, 3), t (K, 3), float64."""
        rs, ts = [], []
        cpu = vertices.detach().to("cpu") if any(idx.numel() for idx in self.anchors) else None
        for idx, rest in zip(self.anchors, self.anchor_rest):
            if idx.numel() == 0:
                rs.append(torch.eye(3, dtype=torch.float64))
                ts.append(torch.zeros(3, dtype=torch.float64))
            else:
                r, t = kabsch(rest, cpu.index_select(0, idx))
                rs.append(r)
                ts.append(t)
        if not rs:
            return torch.zeros(0, 3, 3, dtype=torch.float64), torch.zeros(0, 3, dtype=torch.float64)
        return torch.stack(rs), torch.stack(ts)

    def move(self, means: torch.Tensor, quats: torch.Tensor, vertices: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rigid Gaussians (Nr, 3) means, (Nr, 4) wxyz quats at rest -> in the frame (V, 3).
        Skull parts are left as they are; each anchored part costs one 3x3 SVD."""
        moving = [k for k, idx in enumerate(self.anchors) if idx.numel()]
        if self.num == 0 or not moving:
            return means, quats
        r, t = self.transforms(vertices)
        dev, dt = means.device, means.dtype
        part = self.part.to(dev)
        out_means, out_quats = means, quats
        for k in moving:
            rows = part == k
            rk, tk = r[k].to(dev, dt), t[k].to(dev, dt)
            qk = rotmat_to_quat(r[k][None])[0].to(dev, dt)
            out_means = torch.where(rows[:, None], means @ rk.T + tk, out_means)
            out_quats = torch.where(rows[:, None], quat_multiply(qk, quats), out_quats)
        return out_means, out_quats

    def to(self, device: torch.device | str) -> "RigidBinding":
        return RigidBinding(self.names, self.part.to(device), self.anchors, self.anchor_rest)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """{"rigid.part": (Nr,) int64, "rigid.anchor.<name>": (A_k,) int64} CPU tensors."""
        out = {"rigid.part": self.part.detach().to("cpu", torch.int64).contiguous()}
        for name, idx in zip(self.names, self.anchors):
            out[f"rigid.anchor.{name}"] = idx.to("cpu", torch.int64).contiguous()
        return out

    @classmethod
    def from_state(cls, names: object, num: int, tensors: dict[str, torch.Tensor], template: np.ndarray,
                   where: str) -> tuple[list[str], "RigidBinding | None"]:
        """Check and build from a manifest's part names and the file's tensors (which are
        consumed); (defects, binding). ``where`` names the file in messages."""
        if not isinstance(names, list) or len(names) > MAX_PARTS:
            return [f"appearance.rigid_parts must be a list of at most {MAX_PARTS} names"], None
        defects = [p for p in (part_name_problem(n) for n in names) if p]
        if len(set(map(str, names))) != len(names):
            defects.append("appearance.rigid_parts names a part twice")
        if defects:
            return defects, None
        part = tensors.pop("rigid.part", None)
        if num == 0 and part is None and not names:
            return [], cls.empty()
        if part is None or part.dtype != torch.int64 or tuple(part.shape) != (num,):
            return [f"{where}: rigid.part must be ({num},) int64"], None
        if num and (int(part.min()) < 0 or int(part.max()) >= len(names)):
            return [f"{where}: rigid.part names parts outside the {len(names)} of appearance.rigid_parts"], None
        v = int(np.asarray(template).shape[0])
        anchors = []
        for name in names:
            idx = tensors.pop(f"rigid.anchor.{name}", None)
            if idx is None or idx.dtype != torch.int64 or idx.ndim != 1:
                defects.append(f"{where}: rigid.anchor.{name} must be a 1-D int64 tensor")
            elif 0 < idx.numel() < MIN_ANCHOR:
                defects.append(f"{where}: rigid.anchor.{name} holds {idx.numel()} vertices; a rigid fit needs "
                               f"none (the skull) or at least {MIN_ANCHOR}")
            elif idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= v):
                defects.append(f"{where}: rigid.anchor.{name} holds vertex indices outside [0, {v})")
            else:
                anchors.append(idx.numpy())
        if defects:
            return defects, None
        return [], cls.build(names, part, anchors, template)


def load_rigid_parts(npz: dict[str, np.ndarray], num_vertices: int) -> list[RigidPart]:
    """Rigid parts from a dataset's rigid_parts.npz arrays: ``names`` (K,) str and, per
    name, ``<name>.vertices``, ``<name>.triangles``, ``<name>.anchor``. InputError names a defect."""
    names = [str(n) for n in np.asarray(npz.get("names", np.zeros(0, "U1"))).reshape(-1)]
    parts = []
    for name in names:
        try:
            arrays = [np.asarray(npz[f"{name}.{k}"]) for k in ("vertices", "triangles", "anchor")]
            part = RigidPart(name, arrays[0].astype(np.float32), arrays[1].astype(np.int64),
                             arrays[2].astype(np.int64))
        except KeyError as exc:
            raise InputError(f"rigid part {name!r} is missing {exc.args[0]}") from None
        except ValueError as exc:
            raise InputError(str(exc)) from None
        if part.anchor.size and (int(part.anchor.min()) < 0 or int(part.anchor.max()) >= num_vertices):
            raise InputError(f"rigid part {name!r}: anchor indices outside the template's {num_vertices} vertices")
        parts.append(part)
    return parts
