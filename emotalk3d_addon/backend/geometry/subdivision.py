"""One level of midpoint subdivision: every triangle becomes four.

Used to upsample a predicted face mesh four-fold before it drives the Gaussians.
The subdivided mesh keeps every source vertex (indices ``0..V-1``, in order) and
appends one vertex per unique undirected edge (index ``V + e`` is the midpoint of
``edges[e]``). Source triangle ``t = (a, b, c)`` with edge midpoints
``ab, bc, ca`` becomes rows ``4t .. 4t+3`` of ``triangles``::

    4t + 0: (a,  ab, ca)   corner 0
    4t + 1: (ab, b,  bc)   corner 1
    4t + 2: (ca, bc, c )   corner 2
    4t + 3: (ab, bc, ca)   centre

All four children keep the winding (hence the normal direction) of their parent.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.int64)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Subdivision:
    """Topology of a once-subdivided triangle mesh (see the module docstring for the layout)."""

    num_source_vertices: int
    edges: np.ndarray  # (E, 2) int64, i < j, unique, sorted lexicographically
    triangles: np.ndarray  # (4T, 3) int64, children of source triangle t at rows 4t..4t+3

    @property
    def num_vertices(self) -> int:
        """Vertex count of the subdivided mesh: V + E."""
        return self.num_source_vertices + len(self.edges)

    def upsample(self, values: ArrayT) -> ArrayT:
        """Per-vertex values ``(..., V, C)`` -> ``(..., V+E, C)``, same type, dtype and device.

        The first V rows are the input unchanged; row ``V + e`` is the mean of the two
        endpoints of ``edges[e]``. Works for vertex tracks ``(F, V, 3)`` in metres, UVs
        ``(V, 2)``, or any floating per-vertex attribute; differentiable for torch tensors.
        """
        v = self.num_source_vertices
        if values.ndim < 2 or values.shape[-2] != v:
            raise ValueError(
                f"values must have shape (..., {v}, C) for a mesh of {v} vertices, "
                f"got {tuple(values.shape)}"
            )
        if isinstance(values, torch.Tensor):
            if not values.is_floating_point():
                raise ValueError(f"values must be floating point, got {values.dtype}")
            ij = torch.from_numpy(self.edges.T.copy()).to(values.device)  # (2, E); copy: edges is read-only
            mid = 0.5 * (values.index_select(-2, ij[0]) + values.index_select(-2, ij[1]))
            return torch.cat([values, mid], dim=-2)
        if not isinstance(values, np.ndarray):
            raise ValueError(f"values must be a numpy array or torch tensor, got {type(values).__name__}")
        if not np.issubdtype(values.dtype, np.floating):
            raise ValueError(f"values must be floating point, got {values.dtype}")
        mid = (values[..., self.edges[:, 0], :] + values[..., self.edges[:, 1], :]) * values.dtype.type(0.5)
        return np.concatenate([values, mid], axis=-2)


def _check_triangles(triangles: np.ndarray, num_vertices: int | None) -> tuple[np.ndarray, int]:
    tri = np.asarray(triangles)
    if tri.ndim != 2 or tri.shape[1] != 3:
        raise ValueError(f"triangles must have shape (T, 3), got {tri.shape}")
    if not np.issubdtype(tri.dtype, np.integer):
        raise ValueError(f"triangles must hold integer vertex indices, got dtype {tri.dtype}")
    tri = tri.astype(np.int64)
    if num_vertices is None:
        num_vertices = int(tri.max()) + 1 if tri.size else 0
    elif isinstance(num_vertices, (bool, np.bool_)) or not isinstance(num_vertices, (int, np.integer)):
        raise ValueError(f"num_vertices must be an integer, got {num_vertices!r}")
    num_vertices = int(num_vertices)
    if num_vertices < 0:
        raise ValueError(f"num_vertices must be >= 0, got {num_vertices}")
    if tri.size:
        lo, hi = int(tri.min()), int(tri.max())
        if lo < 0 or hi >= num_vertices:
            raise ValueError(
                f"triangle indices out of range: they must lie in [0, {num_vertices}), found values in [{lo}, {hi}]"
            )
    bad = (tri[:, 0] == tri[:, 1]) | (tri[:, 1] == tri[:, 2]) | (tri[:, 2] == tri[:, 0])
    if bad.any():
        t = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{int(bad.sum())} degenerate triangle(s) with a repeated vertex index, "
            f"first is triangle {t}: {tri[t].tolist()}"
        )
    return tri, num_vertices


def midpoint_subdivide(triangles: np.ndarray, num_vertices: int | None = None) -> Subdivision:
    """Subdivide ``(T, 3)`` integer triangles once; ``num_vertices`` defaults to max index + 1.

    Vertices not referenced by any triangle are kept (pass ``num_vertices`` to keep trailing
    ones). Raises ValueError for a wrong shape or dtype, out-of-range indices or a
    degenerate triangle (repeated index).
    """
    tri, v = _check_triangles(triangles, num_vertices)
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    # Half-edges per triangle in the order ab, bc, ca: shape (T, 3, 2).
    half = np.stack([np.stack([a, b], -1), np.stack([b, c], -1), np.stack([c, a], -1)], axis=1)
    lo, hi = half.min(axis=-1), half.max(axis=-1)
    # Key i * V + j orders edges lexicographically by (i, j); np.unique sorts the keys.
    keys, inverse = np.unique((lo * max(v, 1) + hi).ravel(), return_inverse=True)
    edges = np.stack([keys // max(v, 1), keys % max(v, 1)], axis=-1)
    mid = (v + inverse).reshape(-1, 3)
    ab, bc, ca = mid[:, 0], mid[:, 1], mid[:, 2]
    children = np.stack(
        [
            np.stack([a, ab, ca], -1),
            np.stack([ab, b, bc], -1),
            np.stack([ca, bc, c], -1),
            np.stack([ab, bc, ca], -1),
        ],
        axis=1,
    ).reshape(-1, 3)
    return Subdivision(
        num_source_vertices=v,
        edges=_readonly(edges.reshape(-1, 2)),
        triangles=_readonly(children),
    )
