"""Placing Gaussians with an object matrix: the split, the linear part, and the rendered result."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from emotalk3d_addon.backend.appearance.placement import apply_linear, rotmat_to_quat, split_object_matrix
from emotalk3d_addon.backend.raster import Camera, rasterize
from emotalk3d_addon.backend.raster.camera import intrinsics, look_at
from emotalk3d_addon.backend.raster.projection import covariances, quat_to_rotmat


def _rotation(rng) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


def _matrix(A, t) -> np.ndarray:
    M = np.eye(4)
    M[:3, :3], M[:3, 3] = A, t
    return M


@pytest.mark.parametrize("kind", ["rigid", "uniform", "nonuniform", "mirror", "shear"])
def test_split_recomposes_the_matrix(kind):
    rng = np.random.default_rng(1)
    R = _rotation(rng)
    A = {"rigid": R, "uniform": 1.7 * R, "nonuniform": R @ np.diag([1.0, 2.0, 0.5]),
         "mirror": R @ np.diag([-1.0, 1.0, 1.0]), "shear": R @ np.array([[1, 0.3, 0], [0, 1, 0], [0, 0, 1.0]])}[kind]
    t = rng.normal(size=3)
    p = split_object_matrix(_matrix(A, t))
    Rp = p.rigid[:3, :3]
    np.testing.assert_allclose(Rp @ Rp.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(Rp) == pytest.approx(1.0)
    np.testing.assert_allclose(p.linear, p.linear.T, atol=1e-12)
    np.testing.assert_allclose(Rp @ p.linear, A, atol=1e-10)
    np.testing.assert_allclose(p.rigid[:3, 3], t)
    assert (p.uniform_scale is not None) == (kind in ("rigid", "uniform"))


@pytest.mark.parametrize("bad", [np.zeros((4, 4)), np.full((4, 4), np.nan), np.eye(3),
                                 _matrix(np.diag([1.0, 0.0, 1.0]), np.zeros(3))])
def test_split_refuses_unusable_matrices(bad):
    with pytest.raises(ValueError):
        split_object_matrix(bad)


def test_rotmat_to_quat_round_trips():
    rng = np.random.default_rng(2)
    q = torch.tensor(rng.normal(size=(500, 4)))
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[:, :1] < 0, -q, q)
    back = rotmat_to_quat(quat_to_rotmat(q))
    torch.testing.assert_close(back, q, atol=1e-9, rtol=0)


@pytest.mark.parametrize("kind", ["nonuniform", "mirror", "shear", "uniform"])
def test_apply_linear_transforms_means_and_covariances(kind):
    rng = np.random.default_rng(3)
    L = {"nonuniform": np.diag([1.0, 2.0, 0.5]), "mirror": np.diag([-1.0, 1.0, 1.0]),
         "shear": np.array([[1.0, 0.3, 0.0], [0.3, 1.0, 0.0], [0.0, 0.0, 1.2]]), "uniform": 1.5 * np.eye(3)}[kind]
    p = split_object_matrix(_matrix(L, np.zeros(3)))
    n = 64
    means = torch.tensor(rng.normal(size=(n, 3)))
    quats = torch.tensor(rng.normal(size=(n, 4)))
    scales = torch.tensor(rng.uniform(0.01, 0.1, (n, 3)))
    m2, q2, s2 = apply_linear(means, quats, scales, p)
    Lt = torch.tensor(p.linear)
    torch.testing.assert_close(m2, means @ Lt.T)
    expected = Lt @ covariances(quats, scales) @ Lt.T
    torch.testing.assert_close(covariances(q2, s2), expected, atol=1e-12, rtol=1e-9)


def test_rendering_with_an_object_matrix_equals_rendering_the_moved_gaussians():
    """Folding [R | t] into the camera and L into the Gaussians renders what the Gaussians moved
    to world space (means A μ + t, covariances A Σ Aᵀ) render through the plain camera."""
    rng = np.random.default_rng(4)
    n = 300
    means = torch.tensor(rng.normal(scale=0.08, size=(n, 3)), dtype=torch.float64)
    quats = torch.tensor(rng.normal(size=(n, 4)), dtype=torch.float64)
    scales = torch.tensor(rng.uniform(0.005, 0.02, (n, 3)), dtype=torch.float64)
    opac = torch.tensor(rng.uniform(0.3, 0.9, n), dtype=torch.float64)
    colors = torch.tensor(rng.uniform(0, 1, (n, 3)), dtype=torch.float64)
    c, s = math.cos(0.4), math.sin(0.4)
    A = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]]) @ np.diag([1.3, 0.8, 1.1])
    M = _matrix(A, np.array([0.05, 0.1, -0.02]))
    cam = Camera(intrinsics(96, 80, 40.0, torch.float64), look_at((0.1, -1.2, 0.2), (0.05, 0.1, -0.02),
                                                                  up=(0, 0, 1), dtype=torch.float64), 96, 80)
    p = split_object_matrix(M)
    m2, q2, s2 = apply_linear(means, quats, scales, p)
    folded = Camera(cam.K, cam.world_to_camera @ torch.tensor(p.rigid), 96, 80)
    ours = rasterize(m2, q2, s2, opac, colors, folded, backend="cpu")

    At = torch.tensor(A)
    world_means = means @ At.T + torch.tensor(M[:3, 3])
    cov = At @ covariances(quats, scales) @ At.T
    vals, vecs = torch.linalg.eigh(cov)
    vecs[torch.linalg.det(vecs) < 0, :, 0] *= -1
    truth = rasterize(world_means, rotmat_to_quat(vecs), vals.sqrt(), opac, colors, cam, backend="cpu")
    assert truth.alpha.max() > 0.5
    torch.testing.assert_close(ours.rgb, truth.rgb, atol=1e-8, rtol=0)
    torch.testing.assert_close(ours.alpha, truth.alpha, atol=1e-8, rtol=0)
    torch.testing.assert_close(ours.depth, truth.depth, atol=1e-7, rtol=0)
