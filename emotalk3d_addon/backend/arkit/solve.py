"""ARKit-52 weights per frame from a performance: bounded least squares with a small
temporal smoothness term.

For frame t with face displacement d_t (the performance as Blender shows it, template
plus the motion-basis mix ``M c_t``) and the subject's ARKit shapes A (52, V, 3), solve

    min_w  sum_t ½‖A_f^T w_t − d_t‖² + ½ μ ‖w_t‖² + ½ λ Σ_t ‖w_t − w_{t−1}‖²     with 0 ≤ w ≤ 1,

over the face vertices f only, for the shapes the subject has (absent ones stay 0). The
small ridge μ picks one answer where shapes nearly cancel (a smile and a frown, wide eyes
and a squint give almost the same surface together as apart) and makes the solve converge;
it costs the demo subject 0.003 mm of fit.
Because d_t = M c_t, the data enter only through G = A Aᵀ (n × n) and A Mᵀ (n × K): the
solve never touches a vertex per frame. It runs projected successive over-relaxation
sweeps over the frames (one coordinate at a time, over-relaxed by ``OMEGA`` and clamped
to [0, 1]; numba), started from the clipped per-frame solution, until no weight moves by
more than ``TOL``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

SMOOTH_DEFAULT = 0.02        # λ as a share of the mean diagonal of G
RIDGE = 3e-3                 # μ as a share of the mean diagonal of G
OMEGA = 1.5                  # over-relaxation (projected SOR converges for 0 < ω < 2 here)
MAX_SWEEPS = 300
TOL = 1e-4


@dataclass(frozen=True)
class ArkitFit:
    """Solved weights (F, 52) float32 in [0, 1] and the fit residual (mm, per face vertex)."""

    weights: np.ndarray
    rms_mm: float
    max_mm: float
    sweeps: int


@numba.njit(cache=True)
def _sweeps(G, H, W, lam, omega, max_sweeps, tol):  # pragma: no cover - numba
    F, n = H.shape
    sweeps = 0
    for sweep in range(max_sweeps):
        sweeps = sweep + 1
        moved = 0.0
        for t in range(F):
            neighbours = (1 if t > 0 else 0) + (1 if t < F - 1 else 0)
            for i in range(n):
                g = -H[t, i]
                for j in range(n):
                    g += G[i, j] * W[t, j]
                d = G[i, i] + lam * neighbours
                if neighbours:
                    s = neighbours * W[t, i]
                    if t > 0:
                        s -= W[t - 1, i]
                    if t < F - 1:
                        s -= W[t + 1, i]
                    g += lam * s
                if d <= 0.0:
                    continue
                w = W[t, i] - omega * g / d
                w = 0.0 if w < 0.0 else (1.0 if w > 1.0 else w)
                change = abs(w - W[t, i])
                if change > moved:
                    moved = change
                W[t, i] = w
        if moved < tol:
            break
    return sweeps


@dataclass(frozen=True)
class ArkitSolver:
    """The precomputed normal equations of one subject's ARKit shapes against its motion basis.

    shapes (52, V, 3) float32 metres, present (52,) bool, components (K, V, 3) float32 (the
    motion basis), face (V,) bool: the vertices the fit looks at.
    """

    G: np.ndarray            # (n, n) float64, present shapes only, the ridge included
    G_fit: np.ndarray        # (n, n) float64, without the ridge (for the residual)
    AM: np.ndarray           # (n, K) float64
    MM: np.ndarray           # (K, K) float64, for the residual
    present: np.ndarray      # (52,) bool
    num_face: int
    smooth: float

    @classmethod
    def build(cls, shapes: np.ndarray, present: np.ndarray, components: np.ndarray, face: np.ndarray,
              smooth: float = SMOOTH_DEFAULT, ridge: float = RIDGE) -> "ArkitSolver":
        present = np.asarray(present, bool)
        face = np.asarray(face, bool)
        A = np.asarray(shapes, np.float64)[present][:, face].reshape(int(present.sum()), -1)
        M = np.asarray(components, np.float64)[:, face].reshape(components.shape[0], -1)
        G = A @ A.T
        scale = float(np.mean(np.diag(G))) if G.size else 0.0
        return cls(G + ridge * scale * np.eye(len(G)), G, A @ M.T, M @ M.T, present, int(face.sum()), smooth * scale)

    def solve(self, coefficients: np.ndarray) -> ArkitFit:
        """(F, K) motion-basis coefficients -> the fit."""
        c = np.asarray(coefficients, np.float64)
        frames, n = c.shape[0], self.G.shape[0]
        out = np.zeros((frames, len(self.present)), np.float32)
        if frames == 0 or n == 0:
            return ArkitFit(out, 0.0, 0.0, 0)
        H = np.ascontiguousarray(c @ self.AM.T)                                   # (F, n)
        W = np.ascontiguousarray(np.clip(np.linalg.solve(self.G, H.T).T, 0.0, 1.0))
        sweeps = _sweeps(self.G, H, W, self.smooth, OMEGA, MAX_SWEEPS, TOL)
        out[:, self.present] = W
        rms, worst = self._residual(c, W, H)
        return ArkitFit(out, rms, worst, int(sweeps))

    def _residual(self, c: np.ndarray, W: np.ndarray, H: np.ndarray) -> tuple[float, float]:
        """RMS over frames of the per-frame RMS face-vertex error (mm), and its largest frame."""
        # ‖A^T w − M^T c‖² = wᵀGw − 2 wᵀ(A Mᵀ c) + cᵀ(M Mᵀ)c, per frame
        sq = np.einsum("fi,ij,fj->f", W, self.G_fit, W) - 2.0 * np.einsum("fi,fi->f", W, H) \
            + np.einsum("fk,kl,fl->f", c, self.MM, c)
        per_frame = np.sqrt(np.maximum(sq, 0.0) / max(self.num_face, 1))
        return 1000.0 * float(np.sqrt(np.mean(per_frame ** 2))), 1000.0 * float(per_frame.max())
