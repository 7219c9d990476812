"""Motion basis: uncentred PCA of displacements, scaled for shape-key sliders."""
from __future__ import annotations

import numpy as np
import pytest

from emotalk3d_addon.backend.geometry.basis import BasisError, MotionBasis, fit_motion_basis


def _fields(num_vertices: int, k: int, seed: int = 0, scale: float = 0.005) -> np.ndarray:
    """(k, V, 3) mutually orthogonal displacement fields of norm ``scale`` metres."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(num_vertices * 3, k)))
    return (scale * q.T).reshape(k, num_vertices, 3)


def _motion(num_frames: int, num_vertices: int, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(F, V, 3) float32 rank-k motion and its (k, V, 3) generating fields."""
    fields = _fields(num_vertices, k, seed)
    coeffs = np.random.default_rng(seed + 1).normal(size=(num_frames, k)) * np.array([3.0, 2.0, 1.0, 0.5, 0.3, 0.2][:k])
    return np.einsum("fk,kvc->fvc", coeffs, fields).astype(np.float32), fields


def _projector(components: np.ndarray) -> np.ndarray:
    b = components.reshape(len(components), -1).astype(np.float64)
    return b.T @ np.linalg.solve(b @ b.T, b)


# (frames, vertices): D = 3V <= F uses the covariance matrix, D > F the Gram matrix.
SHAPES = [(300, 40), (60, 200)]


@pytest.mark.parametrize(("num_frames", "num_vertices"), SHAPES)
def test_recovers_rank3_motion_exactly(num_frames: int, num_vertices: int) -> None:
    x, fields = _motion(num_frames, num_vertices)
    basis = fit_motion_basis(x)
    assert isinstance(basis, MotionBasis)
    assert basis.num_components == 3 and basis.num_vertices == num_vertices
    assert basis.components.shape == (3, num_vertices, 3) and basis.components.dtype == np.float32
    err = basis.reconstruction_error(x)
    assert isinstance(err, BasisError)
    assert err.rms_mm < 1e-3 and err.max_mm < 1e-3
    np.testing.assert_allclose(_projector(basis.components), _projector(fields), atol=1e-5)


@pytest.mark.parametrize(("num_frames", "num_vertices"), SHAPES)
def test_training_coefficients_in_unit_range_with_max_one(num_frames: int, num_vertices: int) -> None:
    x, _ = _motion(num_frames, num_vertices)
    basis = fit_motion_basis(x)
    c = basis.project(x)
    assert c.shape == (num_frames, 3) and c.dtype == np.float32
    assert (np.abs(c) <= 1.0 + 1e-6).all()
    np.testing.assert_allclose(np.abs(c).max(axis=0), 1.0, atol=1e-6)
    # Sign rule: the coefficient of largest magnitude is +1.
    np.testing.assert_allclose(c[np.abs(c).argmax(axis=0), np.arange(3)], 1.0, atol=1e-6)


@pytest.mark.parametrize(("num_frames", "num_vertices"), SHAPES)
def test_components_orthogonal(num_frames: int, num_vertices: int) -> None:
    basis = fit_motion_basis(_motion(num_frames, num_vertices)[0])
    b = basis.components.reshape(basis.num_components, -1).astype(np.float64)
    gram = b @ b.T
    norms = np.sqrt(np.diag(gram))
    np.testing.assert_allclose(gram / np.outer(norms, norms), np.eye(len(b)), atol=1e-6)


def test_round_trip_on_held_out_frames() -> None:
    x, fields = _motion(200, 30)
    basis = fit_motion_basis(x)
    held = np.einsum("fk,kvc->fvc", np.random.default_rng(9).normal(size=(50, 3)), fields).astype(np.float32)
    np.testing.assert_allclose(basis.expand(basis.project(held)), held, atol=1e-8)
    assert basis.reconstruction_error(held).max_mm < 1e-3
    coeffs = np.random.default_rng(10).uniform(-1, 1, size=(20, 3)).astype(np.float32)
    out = basis.expand(coeffs)
    assert out.shape == (20, 30, 3) and out.dtype == np.float32
    np.testing.assert_allclose(basis.project(out), coeffs, atol=1e-5)


def test_error_matches_brute_force_on_noisy_data() -> None:
    x, _ = _motion(150, 25, k=5)
    x = x + np.random.default_rng(3).normal(scale=2e-4, size=x.shape).astype(np.float32)
    basis = fit_motion_basis(x, max_components=4)
    b = basis.components.reshape(basis.num_components, -1).astype(np.float64)
    flat = x.reshape(len(x), -1).astype(np.float64)
    coeffs = np.linalg.lstsq(b.T, flat.T, rcond=None)[0].T
    per_vertex = np.linalg.norm((flat - coeffs @ b).reshape(len(x), -1, 3), axis=-1) * 1000.0
    err = basis.reconstruction_error(x)
    assert err.rms_mm > 0.1  # the noise is not representable
    np.testing.assert_allclose(err.rms_mm, np.sqrt((per_vertex**2).mean()), rtol=1e-9)
    np.testing.assert_allclose(err.max_mm, per_vertex.max(), rtol=1e-9)


def test_max_components_cap_and_error_grows() -> None:
    x, _ = _motion(200, 30, k=6)
    full = fit_motion_basis(x)
    assert full.num_components == 6
    errors = []
    for cap in (1, 2, 4, 6, 10):
        basis = fit_motion_basis(x, max_components=cap)
        assert basis.num_components == min(cap, 6)
        errors.append(basis.reconstruction_error(x).rms_mm)
    assert errors[0] > errors[1] > errors[2] > errors[3]
    assert errors[3] < 1e-3 and errors[4] < 1e-3


def test_energy_threshold_selects_smallest_k() -> None:
    fields = _fields(20, 3).reshape(3, -1)
    q, _ = np.linalg.qr(np.random.default_rng(4).normal(size=(100, 3)))
    energies = np.array([100.0, 10.0, 1.0])  # fractions 0.901, 0.991, 1.0
    x = ((q * np.sqrt(energies)) @ fields / 0.005).reshape(100, 20, 3)  # unit-norm fields
    for energy, k in [(0.5, 1), (0.9, 1), (0.95, 2), (0.99, 2), (0.995, 3), (1.0, 3)]:
        assert fit_motion_basis(x, energy=energy).num_components == k, energy


def test_subsampled_fit_recovers_rank3_subspace() -> None:
    x, fields = _motion(3000, 50)
    basis = fit_motion_basis(x, max_frames=40, seed=1)  # Gram path on 40 of 3000 frames
    assert basis.num_components == 3
    assert basis.reconstruction_error(x).max_mm < 1e-3
    np.testing.assert_allclose(_projector(basis.components), _projector(fields), atol=1e-5)
    c = basis.project(x)  # scale is set by all frames, not only the sampled ones
    np.testing.assert_allclose(np.abs(c).max(axis=0), 1.0, atol=1e-6)
    again = fit_motion_basis(x, max_frames=40, seed=1)
    np.testing.assert_array_equal(again.components, basis.components)


def test_error_units_are_millimetres() -> None:
    v = 10
    comp = np.zeros((1, v, 3), np.float32)
    comp[0, :, 0] = 0.01  # x-only field
    basis = MotionBasis(components=comp)
    x = basis.expand(np.linspace(-1, 1, 8, dtype=np.float32)[:, None])
    x[..., 2] += 0.001  # 1 mm along z, orthogonal to the basis
    err = basis.reconstruction_error(x)
    assert err.rms_mm == pytest.approx(1.0, rel=1e-5)
    assert err.max_mm == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (np.zeros((0, 5, 3), np.float32), "empty"),
        (np.zeros((4, 0, 3), np.float32), "empty"),
        (np.zeros((4, 5, 2), np.float32), "shape"),
        (np.zeros((4, 15), np.float32), "shape"),
        (np.full((4, 5, 3), np.nan, np.float32), "NaN"),
        (np.full((4, 5, 3), np.inf, np.float32), "NaN or Inf"),
        (np.zeros((4, 5, 3), np.float32), "zero"),
        (np.array([[["a", "b", "c"]]]), "numeric"),
    ],
)
def test_invalid_displacements_raise(data: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fit_motion_basis(data)


@pytest.mark.parametrize(
    "kwargs", [{"max_components": 0}, {"energy": 0.0}, {"energy": 1.5}, {"max_frames": 0}, {"max_components": 2.5}]
)
def test_invalid_parameters_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        fit_motion_basis(_motion(20, 5)[0], **kwargs)


def test_basis_methods_validate_shapes() -> None:
    basis = fit_motion_basis(_motion(30, 5)[0])
    with pytest.raises(ValueError, match="vertices"):
        basis.project(np.zeros((2, 6, 3), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        basis.reconstruction_error(np.full((2, 5, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="coefficients"):
        basis.expand(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="shape"):
        MotionBasis(components=np.zeros((2, 5), np.float32))
    assert basis.project(np.zeros((0, 5, 3), np.float32)).shape == (0, 3)
