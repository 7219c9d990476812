"""Midpoint subdivision: topology, geometry and upsampling."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from emotalk3d_addon.backend.geometry.subdivision import Subdivision, midpoint_subdivide

TETRA = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.int64)  # outward winding
TETRA_POS = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float64)


def _grid_mesh(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A jittered, bumpy n x n grid: (V, 3) positions and (T, 3) triangles."""
    rng = np.random.default_rng(seed)
    u, v = np.meshgrid(np.arange(n, dtype=float), np.arange(n, dtype=float), indexing="ij")
    pos = np.stack([u, v, np.zeros_like(u)], -1).reshape(-1, 3)
    pos += rng.uniform(-0.2, 0.2, pos.shape)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
    tri = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return pos, tri


def _areas_normals(pos: np.ndarray, tri: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = np.cross(pos[tri[:, 1]] - pos[tri[:, 0]], pos[tri[:, 2]] - pos[tri[:, 0]])
    return 0.5 * np.linalg.norm(n, axis=1), n


def _edge_counts(tri: np.ndarray) -> np.ndarray:
    e = np.sort(tri[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    return np.unique(e, axis=0, return_counts=True)[1]


def test_single_triangle_known_indices() -> None:
    sub = midpoint_subdivide(np.array([[0, 1, 2]]))
    assert isinstance(sub, Subdivision)
    assert sub.num_source_vertices == 3 and sub.num_vertices == 6
    np.testing.assert_array_equal(sub.edges, [[0, 1], [0, 2], [1, 2]])  # midpoints 3, 4, 5
    # ab = 3, ca = 4, bc = 5; children: corner 0, corner 1, corner 2, centre.
    np.testing.assert_array_equal(sub.triangles, [[0, 3, 4], [3, 1, 5], [4, 5, 2], [3, 5, 4]])
    assert sub.edges.dtype == np.int64 and sub.triangles.dtype == np.int64


def test_edges_unique_sorted_and_children_layout() -> None:
    pos, tri = _grid_mesh(5)
    sub = midpoint_subdivide(tri)
    e = sub.edges
    assert (e[:, 0] < e[:, 1]).all()
    assert len(np.unique(e, axis=0)) == len(e)
    np.testing.assert_array_equal(e, e[np.lexsort((e[:, 1], e[:, 0]))])
    assert sub.triangles.shape == (4 * len(tri), 3)
    children = sub.triangles.reshape(-1, 4, 3)
    np.testing.assert_array_equal(children[:, 0, 0], tri[:, 0])
    np.testing.assert_array_equal(children[:, 1, 1], tri[:, 1])
    np.testing.assert_array_equal(children[:, 2, 2], tri[:, 2])
    assert (children[:, 3] >= len(pos)).all()  # centre uses midpoints only
    with pytest.raises(ValueError):
        sub.edges[0, 0] = 5  # read-only


@pytest.mark.parametrize("times", [1, 2])
def test_closed_mesh_euler_and_manifold(times: int) -> None:
    tri, nv = TETRA, 4
    for _ in range(times):
        sub = midpoint_subdivide(tri, nv)
        tri, nv = sub.triangles, sub.num_vertices
    counts = _edge_counts(tri)
    assert (counts == 2).all()
    assert nv - len(counts) + len(tri) == 2  # Euler characteristic of a sphere
    # Consistent orientation: every directed half-edge occurs exactly once.
    half = tri[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    assert len(np.unique(half, axis=0)) == len(half)
    assert len(tri) == 4 * 4**times and nv == 4 + 6 * (4**times - 1) // 3


def test_area_preserved_and_orientation() -> None:
    pos, tri = _grid_mesh(6, seed=1)
    pos[:, 2] = np.sin(pos[:, 0]) * np.cos(pos[:, 1])  # non-planar surface
    sub = midpoint_subdivide(tri)
    pos2 = sub.upsample(pos)
    area, normal = _areas_normals(pos, tri)
    area2, normal2 = _areas_normals(pos2, sub.triangles)
    np.testing.assert_allclose(area2.sum(), area.sum(), rtol=1e-12)
    np.testing.assert_allclose(area2.reshape(-1, 4).sum(1), area, rtol=1e-12)
    # Each child is the parent scaled by 1/2 (centre: by -1/2 with reversed order), so n_child = n_parent / 4.
    np.testing.assert_allclose(normal2.reshape(-1, 4, 3), np.repeat(normal[:, None] / 4, 4, 1), atol=1e-12)


def test_upsample_linear_function_is_exact() -> None:
    pos, tri = _grid_mesh(4, seed=2)
    sub = midpoint_subdivide(tri)
    a, b = np.array([[1.0, -2.0], [0.5, 3.0], [2.0, 0.25]]), np.array([0.125, -1.0])
    up_pos = sub.upsample(pos)
    np.testing.assert_array_equal(up_pos[: len(pos)], pos)
    np.testing.assert_allclose(sub.upsample(pos @ a + b), up_pos @ a + b, atol=1e-12)
    mid = 0.5 * (pos[sub.edges[:, 0]] + pos[sub.edges[:, 1]])
    np.testing.assert_array_equal(up_pos[len(pos):], mid)


def test_upsample_batched_tracks_uvs_and_dtype() -> None:
    pos, tri = _grid_mesh(4)
    sub = midpoint_subdivide(tri)
    track = np.random.default_rng(0).normal(size=(7, len(pos), 3)).astype(np.float32)
    up = sub.upsample(track)
    assert up.shape == (7, sub.num_vertices, 3) and up.dtype == np.float32
    for f in range(7):
        np.testing.assert_array_equal(up[f], sub.upsample(track[f]))
    uv = pos[:, :2].astype(np.float64)
    assert sub.upsample(uv).shape == (sub.num_vertices, 2)


def test_torch_matches_numpy_and_gradients_flow() -> None:
    pos, tri = _grid_mesh(4, seed=3)
    sub = midpoint_subdivide(tri)
    track = np.random.default_rng(1).normal(size=(2, len(pos), 3))
    x = torch.tensor(track, dtype=torch.float32, requires_grad=True)
    y = sub.upsample(x)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32 and y.device == x.device
    np.testing.assert_allclose(y.detach().numpy(), sub.upsample(track.astype(np.float32)), rtol=1e-6)
    y.sum().backward()
    degree = np.bincount(sub.edges.ravel(), minlength=len(pos))
    expected = np.broadcast_to((1.0 + 0.5 * degree)[None, :, None], x.shape)
    np.testing.assert_allclose(x.grad.numpy(), expected)


def test_unreferenced_vertices_are_kept() -> None:
    sub = midpoint_subdivide(np.array([[0, 2, 3]]), num_vertices=5)  # 1 and 4 unused
    assert sub.num_source_vertices == 5 and sub.num_vertices == 8
    np.testing.assert_array_equal(sub.edges, [[0, 2], [0, 3], [2, 3]])
    vals = np.arange(15, dtype=np.float64).reshape(5, 3)
    up = sub.upsample(vals)
    np.testing.assert_array_equal(up[:5], vals)
    np.testing.assert_array_equal(up[5], (vals[0] + vals[2]) / 2)
    assert midpoint_subdivide(np.array([[0, 2, 3]])).num_source_vertices == 4  # default: max + 1


def test_empty_mesh() -> None:
    sub = midpoint_subdivide(np.zeros((0, 3), np.int64), num_vertices=3)
    assert sub.edges.shape == (0, 2) and sub.triangles.shape == (0, 3) and sub.num_vertices == 3


@pytest.mark.parametrize(
    ("triangles", "num_vertices", "match"),
    [
        (np.array([0, 1, 2]), None, "shape"),
        (np.array([[0, 1, 2, 3]]), None, "shape"),
        (np.array([[0.0, 1.0, 2.0]]), None, "integer"),
        (np.array([[True, False, True]]), None, "integer"),
        (np.array([[0, -1, 2]]), None, "range"),
        (np.array([[0, 1, 3]]), 3, "range"),
        (np.array([[0, 1, 2], [1, 1, 2]]), None, "degenerate"),
        (np.array([[0, 1, 2]]), -1, ">= 0"),
        (np.array([[0, 1, 2]]), 3.0, "integer"),
    ],
)
def test_invalid_triangles_raise(triangles: np.ndarray, num_vertices: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        midpoint_subdivide(triangles, num_vertices)  # type: ignore[arg-type]


def test_invalid_upsample_values_raise() -> None:
    sub = midpoint_subdivide(np.array([[0, 1, 2]]))
    with pytest.raises(ValueError, match="shape"):
        sub.upsample(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="shape"):
        sub.upsample(np.zeros(3))
    with pytest.raises(ValueError, match="floating"):
        sub.upsample(np.zeros((3, 3), np.int64))
    with pytest.raises(ValueError, match="floating"):
        sub.upsample(torch.zeros((3, 3), dtype=torch.int64))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(3, 12), st.integers(1, 20))
def test_random_soups_invariants(seed: int, nv: int, nt: int) -> None:
    rng = np.random.default_rng(seed)
    tri = np.stack([rng.choice(nv, 3, replace=False) for _ in range(nt)])
    sub = midpoint_subdivide(tri, nv)
    expected_edges = np.unique(np.sort(tri[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1), axis=0)
    np.testing.assert_array_equal(sub.edges, expected_edges)
    # Every child edge is half of a parent edge or joins two midpoints of the same parent.
    pos = rng.normal(size=(nv, 3))
    area, _ = _areas_normals(pos, tri)
    area2, _ = _areas_normals(sub.upsample(pos), sub.triangles)
    np.testing.assert_allclose(area2.reshape(-1, 4).sum(1), area, rtol=1e-9, atol=1e-12)
