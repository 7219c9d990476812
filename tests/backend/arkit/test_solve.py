"""The ARKit weight solve: it recovers known weights, keeps to [0, 1], satisfies the
optimality (KKT) conditions of its bounded, smoothed least-squares problem, and reports the
residual a vertex-space computation gives."""
from __future__ import annotations

import numpy as np

from emotalk3d_addon.backend.arkit.solve import ArkitSolver

V, K, F = 120, 10, 200


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    shapes = (rng.normal(size=(52, V, 3)) * 0.002).astype(np.float32)
    present = np.zeros(52, bool)
    present[[3, 17, 20, 24, 25, 40]] = True
    shapes[~present] = 0.0
    face = np.ones(V, bool)
    face[:10] = False                                           # vertices the fit ignores
    # a motion basis that spans the present shapes plus unrelated directions
    flat = np.concatenate([shapes[present].reshape(present.sum(), -1),
                           rng.normal(size=(K - present.sum(), V * 3)) * 0.002])
    q, _ = np.linalg.qr(flat.T)
    components = (q.T * 0.01).reshape(K, V, 3).astype(np.float32)
    return shapes, present, components, face, rng


def _coefficients(components, displacements):
    M = components.reshape(K, -1).astype(np.float64)
    return np.linalg.lstsq(M.T, displacements.reshape(len(displacements), -1).T, rcond=None)[0].T


def test_known_smooth_weights_are_recovered_and_absent_shapes_stay_zero():
    shapes, present, components, face, rng = _problem()
    t = np.linspace(0, 1, F)[:, None]
    truth = np.zeros((F, 52))
    truth[:, present] = 0.5 + 0.45 * np.sin(2 * np.pi * (t * np.arange(1, 7) + rng.uniform(size=6)))
    d = np.einsum("fs,svc->fvc", truth, shapes.astype(np.float64))
    fit = ArkitSolver.build(shapes, present, components, face, smooth=1e-4, ridge=0.0).solve(_coefficients(components, d))
    assert np.abs(fit.weights - truth).max() < 0.02
    assert (fit.weights[:, ~present] == 0).all()
    assert fit.rms_mm < 0.01


def test_bounds_hold_and_the_solution_is_optimal():
    shapes, present, components, face, rng = _problem(1)
    c = rng.normal(size=(F, K)) * 8.0                          # far outside what the shapes can reach
    solver = ArkitSolver.build(shapes, present, components, face, smooth=0.05)
    fit = solver.solve(c)
    w = fit.weights[:, present].astype(np.float64)
    assert w.min() >= 0.0 and w.max() <= 1.0 and (w == 0).any() and (w == 1).any()
    # gradient of the objective; KKT: >= 0 at 0, <= 0 at 1, ~0 between
    H = c @ solver.AM.T
    g = w @ solver.G - H
    g[1:] += solver.smooth * (w[1:] - w[:-1])
    g[:-1] += solver.smooth * (w[:-1] - w[1:])
    scale = np.abs(H).max()
    assert (g[w == 0] > -1e-3 * scale).all() and (g[w == 1] < 1e-3 * scale).all()
    inside = (w > 1e-6) & (w < 1 - 1e-6)
    assert np.abs(g[inside]).max() < 1e-3 * scale


def test_the_residual_matches_vertex_space():
    shapes, present, components, face, rng = _problem(2)
    c = rng.normal(size=(F, K)) * 0.2
    cold = ArkitSolver.build(shapes, present, components, face).solve(c)
    shown = np.einsum("fk,kvc->fvc", c, components.astype(np.float64))[:, face]
    fitted = np.einsum("fs,svc->fvc", cold.weights.astype(np.float64), shapes.astype(np.float64))[:, face]
    per_frame = np.sqrt(((shown - fitted) ** 2).sum(-1).mean(-1))
    assert abs(cold.rms_mm - 1000 * np.sqrt((per_frame ** 2).mean())) < 1e-6
    assert abs(cold.max_mm - 1000 * per_frame.max()) < 1e-6
