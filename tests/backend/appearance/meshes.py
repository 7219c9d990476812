"""A small synthetic head-front mesh for the appearance tests (metres, +Z up, face toward -Y)."""
from __future__ import annotations

import numpy as np


def face_grid(n: int = 9, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """An n x n grid bent around +Z, 14 cm wide, 18 cm tall, at y ~ -0.1 m.

    Returns template (V, 3) float32, triangles (T, 3) int64, uvs (V, 2) float32 in [0, 1],
    face_mask (V,) bool (an inner ellipse of the grid).
    """
    rng = np.random.default_rng(seed)
    u, v = np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n), indexing="ij")
    x = (u - 0.5) * 0.14
    z = (v - 0.5) * 0.18
    y = -0.1 + 4.0 * x ** 2
    pos = np.stack([x, y, z], -1).reshape(-1, 3) + rng.uniform(-5e-4, 5e-4, (n * n, 3))
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
    tri = np.concatenate([np.stack([a, c, b], -1).reshape(-1, 3), np.stack([a, d, c], -1).reshape(-1, 3)])
    uvs = np.stack([u, v], -1).reshape(-1, 2)
    mask = (((u - 0.5) / 0.36) ** 2 + ((v - 0.5) / 0.4) ** 2 <= 1.0).reshape(-1)
    return pos.astype(np.float32), tri.astype(np.int64), uvs.astype(np.float32), mask
