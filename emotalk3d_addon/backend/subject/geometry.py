"""``Geometry``: a subject's template mesh, as a bundle's geometry.safetensors holds it.

Its own module (below the checks and ``model``) because both the bundle checks and
``Subject`` build one."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Geometry:
    """The subject's template mesh, subject space (metres, +Z up, face toward -Y).

    template: (V, 3) float32 vertex positions, metres.
    triangles: (T, 3) int64 vertex indices in [0, V).
    uvs: (V, 2) float32 texture coordinates in [0, 1].
    face_mask: (V,) bool, True for the vertices of the face region.
    landmarks: name -> vertex index (at least ``REQUIRED_LANDMARKS``).
    """

    template: np.ndarray
    triangles: np.ndarray
    uvs: np.ndarray
    face_mask: np.ndarray
    landmarks: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.template = np.ascontiguousarray(self.template, dtype=np.float32)
        self.triangles = np.ascontiguousarray(self.triangles, dtype=np.int64)
        self.uvs = np.ascontiguousarray(self.uvs, dtype=np.float32)
        self.face_mask = np.ascontiguousarray(self.face_mask, dtype=bool)
        self.landmarks = {str(k): int(v) for k, v in self.landmarks.items()}

    @property
    def num_vertices(self) -> int:
        """V."""
        return int(self.template.shape[0])

    @property
    def num_triangles(self) -> int:
        """T."""
        return int(self.triangles.shape[0])
