"""Face binding: which vertices carry face Gaussians, their UVs, positions that follow the mesh."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from emotalk3d_addon.backend.appearance.binding import FaceBinding, upsample_mask
from emotalk3d_addon.backend.geometry.subdivision import midpoint_subdivide

from .meshes import face_grid


@pytest.fixture(scope="module")
def mesh():
    return face_grid(9)


@pytest.fixture(scope="module")
def binding(mesh):
    return FaceBinding.build(*mesh)


def test_face_vertices_follow_the_mask_rule(mesh, binding):
    template, tri, uvs, mask = mesh
    sub = midpoint_subdivide(tri, len(template))
    v = len(template)
    expect = [i for i in range(v) if mask[i]]
    expect += [v + e for e, (a, b) in enumerate(sub.edges) if mask[a] and mask[b]]
    assert binding.vertex_index.tolist() == expect
    assert binding.num == len(expect)
    assert np.array_equal(upsample_mask(sub, mask)[binding.vertex_index], np.ones(binding.num, bool))
    # a mid-point with one endpoint outside the face is not bound
    e = next(i for i, (a, b) in enumerate(sub.edges) if mask[a] != mask[b])
    assert v + e not in set(binding.vertex_index.tolist())


def test_uvs_are_upsampled(mesh, binding):
    template, tri, uvs, mask = mesh
    sub = binding.subdivision
    assert binding.uv.dtype == np.float32 and binding.uv.shape == (binding.num, 2)
    assert np.array_equal(binding.uv, sub.upsample(uvs)[binding.vertex_index])
    # source vertices keep their UV, midpoints take the mean of their endpoints
    k = int(np.flatnonzero(binding.vertex_index >= len(template))[0])
    a, b = sub.edges[binding.vertex_index[k] - len(template)]
    assert np.allclose(binding.uv[k], 0.5 * (uvs[a] + uvs[b]))


def test_positions_follow_mesh(mesh, binding):
    template, tri, uvs, mask = mesh
    sub = binding.subdivision
    assert np.array_equal(binding.rest_positions, sub.upsample(template)[binding.vertex_index])
    g = torch.Generator().manual_seed(0)
    frames = torch.from_numpy(template)[None] + 0.003 * torch.randn(4, len(template), 3, generator=g)
    pos = binding.positions(frames)
    assert pos.shape == (4, binding.num, 3)
    idx = torch.from_numpy(binding.vertex_index.copy())
    assert torch.equal(pos, sub.upsample(frames)[:, idx])
    # numpy path agrees, source vertices are copied exactly
    pos_np = binding.positions(frames.numpy())
    assert np.array_equal(pos_np, pos.numpy())
    src = binding.vertex_index < len(template)
    assert torch.equal(pos[:, torch.from_numpy(src)], frames[:, idx[torch.from_numpy(src)]])
    # moving the mesh moves the Gaussians; displacement is zero at rest
    shift = torch.tensor([0.01, -0.02, 0.005])
    assert torch.allclose(binding.positions(frames + shift), pos + shift, atol=1e-7)
    assert torch.allclose(binding.displacement(torch.from_numpy(template)), torch.zeros(binding.num, 3))


def test_positions_differentiable(mesh, binding):
    v = torch.from_numpy(mesh[0]).clone().requires_grad_(True)
    binding.positions(v).sum().backward()
    # every face source vertex and every endpoint of a bound midpoint gets gradient
    assert (v.grad[torch.from_numpy(mesh[3])] != 0).all()
    assert (v.grad[torch.from_numpy(~mesh[3])] == 0).sum() > 0


def test_errors(mesh):
    template, tri, uvs, mask = mesh
    with pytest.raises(ValueError, match="no vertex"):
        FaceBinding.build(template, tri, uvs, np.zeros_like(mask))
    with pytest.raises(ValueError, match="uvs"):
        FaceBinding.build(template, tri, uvs[:-1], mask)
    b = FaceBinding.build(template, tri, uvs, mask)
    with pytest.raises(ValueError, match="vertices"):
        b.positions(torch.zeros(3, 3))
