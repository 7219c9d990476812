"""Face binding: one face Gaussian per face vertex of the four-fold upsampled mesh (SPEC 2.3-2.5).

The template mesh is subdivided once (``geometry.subdivision.midpoint_subdivide``:
source vertices first, then one midpoint per edge). A vertex of the subdivided mesh is
a *face* vertex when its source vertex is in the subject's ``face_mask``; an edge
midpoint is a face vertex when **both** endpoints are. Every face vertex carries one
face Gaussian, in subdivided-vertex order, with

- ``uv``: its fixed UV position p (the upsampled UVs), (Nf, 2) float32 in [0, 1];
- ``rest_positions``: its position on the upsampled template, (Nf, 3) float32, metres.

``positions(vertices)`` maps a mesh frame (..., V, 3) to the face-vertex positions
(..., Nf, 3) (the mesh-driven mu_t), reading only the vertices it needs;
``displacement(vertices)`` is that minus ``rest_positions``: the mesh motion the face
Gaussians follow.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from ..geometry.subdivision import Subdivision, midpoint_subdivide

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def upsample_mask(sub: Subdivision, mask: np.ndarray) -> np.ndarray:
    """(V,) bool vertex mask -> (V + E,) bool: a midpoint is in when both edge endpoints are."""
    m = np.asarray(mask, dtype=bool)
    if m.shape != (sub.num_source_vertices,):
        raise ValueError(f"mask must have shape ({sub.num_source_vertices},), got {m.shape}")
    return np.concatenate([m, m[sub.edges[:, 0]] & m[sub.edges[:, 1]]])


@dataclass(frozen=True, eq=False)
class FaceBinding:
    """Face Gaussians bound to the face vertices of the once-subdivided template mesh.

    subdivision: topology of the subdivided mesh.
    vertex_index: (Nf,) int64 indices of the face vertices in the subdivided mesh, ascending.
    ends: (Nf, 2) int64 source vertices (a, b) with position = (v[a] + v[b]) / 2
        (a == b for a source vertex, so its position is copied exactly).
    uv: (Nf, 2) float32 UV position p of each face Gaussian.
    rest_positions: (Nf, 3) float32 face-vertex positions on the template, metres.
    """

    subdivision: Subdivision
    vertex_index: np.ndarray
    ends: np.ndarray
    uv: np.ndarray
    rest_positions: np.ndarray

    @classmethod
    def build(cls, template: np.ndarray, triangles: np.ndarray, uvs: np.ndarray,
              face_mask: np.ndarray) -> "FaceBinding":
        """From the template mesh: vertices (V, 3) metres, triangles (T, 3), uvs (V, 2), face_mask (V,) bool."""
        template = np.asarray(template, dtype=np.float32)
        v = template.shape[0]
        if template.ndim != 2 or template.shape[1] != 3:
            raise ValueError(f"template must have shape (V, 3), got {template.shape}")
        uvs = np.asarray(uvs, dtype=np.float32)
        if uvs.shape != (v, 2):
            raise ValueError(f"uvs must have shape ({v}, 2), got {uvs.shape}")
        sub = midpoint_subdivide(np.asarray(triangles), num_vertices=v)
        mask_up = upsample_mask(sub, face_mask)
        index = np.flatnonzero(mask_up).astype(np.int64)
        if index.size == 0:
            raise ValueError("face_mask selects no vertex: there is no face to bind Gaussians to")
        src = np.concatenate([np.stack([np.arange(v), np.arange(v)], -1), sub.edges]).astype(np.int64)
        ends = src[index]
        binding = cls(sub, _ro(index), _ro(ends), _ro(sub.upsample(uvs)[index]), _ro(template[:0, :]))
        object.__setattr__(binding, "rest_positions", _ro(binding.positions(template)))
        return binding

    @classmethod
    def from_geometry(cls, geometry) -> "FaceBinding":
        """From a ``subject.Geometry`` (template, triangles, uvs, face_mask)."""
        return cls.build(geometry.template, geometry.triangles, geometry.uvs, geometry.face_mask)

    @property
    def num(self) -> int:
        """Nf, the number of face Gaussians."""
        return int(self.vertex_index.shape[0])

    @property
    def num_source_vertices(self) -> int:
        """V of the template mesh."""
        return self.subdivision.num_source_vertices

    def positions(self, vertices: ArrayT) -> ArrayT:
        """Mesh frame(s) (..., V, 3) metres -> face-Gaussian positions (..., Nf, 3), same type.

        Equals ``subdivision.upsample(vertices)[..., vertex_index, :]``; differentiable.
        """
        v = self.num_source_vertices
        if vertices.ndim < 2 or tuple(vertices.shape[-2:]) != (v, 3):
            raise ValueError(f"vertices must have shape (..., {v}, 3), got {tuple(vertices.shape)}")
        if isinstance(vertices, torch.Tensor):
            ends = torch.from_numpy(self.ends.copy()).to(vertices.device)
            a = vertices.index_select(-2, ends[:, 0])
            b = vertices.index_select(-2, ends[:, 1])
            return 0.5 * (a + b)
        half = vertices.dtype.type(0.5)
        return half * (vertices[..., self.ends[:, 0], :] + vertices[..., self.ends[:, 1], :])

    def displacement(self, vertices: torch.Tensor) -> torch.Tensor:
        """(..., V, 3) mesh frame -> (..., Nf, 3) face-vertex motion from the template, metres."""
        rest = torch.from_numpy(self.rest_positions.copy()).to(device=vertices.device, dtype=vertices.dtype)
        return self.positions(vertices) - rest

    def uv_tensor(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``uv`` as a (Nf, 2) tensor."""
        return torch.from_numpy(self.uv.copy()).to(device=device, dtype=dtype)


def _ro(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a
