"""Motion basis: uncentred PCA of per-vertex displacements from the template.

The basis becomes Blender shape keys, so a frame is exactly
``vertices = template + sum_k coeff_k * components[k]`` with no mean term; hence the
PCA is uncentred (an SVD of the displacements themselves).

Each component is scaled so that the coefficients of the training frames lie in
[-1, 1] with max |coefficient| == 1 (shape-key sliders read naturally), and its sign
is chosen so that the training coefficient of largest magnitude is +1 (ties: the
earliest frame).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Work in blocks of about this many float64 values (32 MiB) so no F x D copy is made.
_BLOCK_VALUES = 1 << 22
# Components whose energy is below this fraction of the largest one are numerical noise
# (singular values below 1e-6 of the largest: the float32 rounding level of the data).
_RANK_RTOL = 1e-12


@dataclass(frozen=True)
class BasisError:
    """Reconstruction error of a basis over some frames."""

    rms_mm: float  # root-mean-square per-vertex Euclidean error, millimetres
    max_mm: float  # max per-vertex Euclidean error over all frames, millimetres


def _check_displacements(x: np.ndarray, num_vertices: int | None = None, allow_empty: bool = False) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"displacements must have shape (F, V, 3), got {x.shape}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"displacements must be numeric, got dtype {x.dtype}")
    if num_vertices is not None and x.shape[1] != num_vertices:
        raise ValueError(f"displacements have {x.shape[1]} vertices, the basis has {num_vertices}")
    if x.shape[1] == 0 or (x.shape[0] == 0 and not allow_empty):
        raise ValueError(f"displacements are empty: shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("displacements contain NaN or Inf")
    return x


def _rows_per_block(width: int) -> int:
    return max(1, _BLOCK_VALUES // max(width, 1))


@dataclass(frozen=True, eq=False)
class MotionBasis:
    """Linear motion model: displacement = sum_k coeff_k * components[k]."""

    components: np.ndarray  # (K, V, 3) float32, metres per unit coefficient; orthogonal when flattened

    def __post_init__(self) -> None:
        c = np.asarray(self.components)
        if c.ndim != 3 or c.shape[2] != 3:
            raise ValueError(f"components must have shape (K, V, 3), got {c.shape}")
        c = np.ascontiguousarray(c, dtype=np.float32)
        if not np.isfinite(c).all():
            raise ValueError("components contain NaN or Inf")
        c.setflags(write=False)
        object.__setattr__(self, "components", c)

    @property
    def num_components(self) -> int:
        """K."""
        return self.components.shape[0]

    @property
    def num_vertices(self) -> int:
        """V."""
        return self.components.shape[1]

    def _project64(self, flat: np.ndarray) -> np.ndarray:
        """(F, D) -> (F, K) float64 least-squares coefficients."""
        basis = self.components.reshape(self.num_components, self.num_vertices * 3).astype(np.float64)  # (K, D)
        gram = basis @ basis.T  # (K, K); diagonal for orthogonal components
        out = np.empty((flat.shape[0], self.num_components), np.float64)
        step = _rows_per_block(flat.shape[1])
        for r in range(0, flat.shape[0], step):
            out[r:r + step] = flat[r:r + step].astype(np.float64) @ basis.T
        if self.num_components:
            out = np.linalg.solve(gram, out.T).T
        return out

    def project(self, displacements: np.ndarray) -> np.ndarray:
        """(F, V, 3) displacements in metres -> (F, K) float32 least-squares coefficients."""
        x = _check_displacements(displacements, self.num_vertices, allow_empty=True)
        return self._project64(x.reshape(x.shape[0], x.shape[1] * 3)).astype(np.float32)

    def expand(self, coefficients: np.ndarray) -> np.ndarray:
        """(F, K) coefficients -> (F, V, 3) float32 displacements in metres."""
        c = np.asarray(coefficients)
        if c.ndim != 2 or c.shape[1] != self.num_components:
            raise ValueError(f"coefficients must have shape (F, {self.num_components}), got {c.shape}")
        flat = c.astype(np.float32) @ self.components.reshape(self.num_components, self.num_vertices * 3)
        return flat.reshape(c.shape[0], self.num_vertices, 3)

    def reconstruction_error(self, displacements: np.ndarray) -> BasisError:
        """Error of project-then-expand over (F, V, 3) displacements (metres), reported in mm."""
        x = _check_displacements(displacements, self.num_vertices)
        flat = x.reshape(x.shape[0], x.shape[1] * 3)
        basis = self.components.reshape(self.num_components, self.num_vertices * 3).astype(np.float64)
        sq_sum, sq_max = 0.0, 0.0
        step = _rows_per_block(flat.shape[1])
        for r in range(0, flat.shape[0], step):
            block = flat[r:r + step].astype(np.float64)
            resid = block - self._project64(block) @ basis
            sq = (resid.reshape(-1, 3) ** 2).sum(axis=1)  # per-vertex squared distance, m^2
            sq_sum += float(sq.sum())
            sq_max = max(sq_max, float(sq.max()))
        n = x.shape[0] * x.shape[1]
        return BasisError(rms_mm=1000.0 * float(np.sqrt(sq_sum / n)), max_mm=1000.0 * float(np.sqrt(sq_max)))


def _sampled_svd(flat: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Energies of the sampled rows ``flat[rows]`` (F', D), descending, plus eigenvectors.

    Uses the D x D covariance when D <= F', else the F' x F' Gram matrix; both are
    accumulated in float64 over blocks so no float64 copy of the sample is made.
    Returns ``(energies, cov_vecs, gram_vecs)`` with exactly one of the vector arrays set.
    """
    n, d = len(rows), flat.shape[1]
    if d <= n:
        cov = np.zeros((d, d), np.float64)
        step = _rows_per_block(d)
        for r in range(0, n, step):
            block = flat[rows[r:r + step]].astype(np.float64)
            cov += block.T @ block
        energies, vecs = np.linalg.eigh(cov)
        return energies[::-1], vecs[:, ::-1], None
    gram = np.zeros((n, n), np.float64)
    step = _rows_per_block(n)
    for c in range(0, d, step):
        block = flat[rows, c:c + step].astype(np.float64)  # (F', b)
        gram += block @ block.T
    energies, vecs = np.linalg.eigh(gram)
    return energies[::-1], None, vecs[:, ::-1]


def fit_motion_basis(
    displacements: np.ndarray,
    max_components: int = 64,
    energy: float = 0.9999,
    max_frames: int = 8000,
    seed: int = 0,
) -> MotionBasis:
    """Fit an uncentred PCA basis to (F, V, 3) displacements from the template, in metres.

    K is the smallest number of components whose energy (squared norm) reaches
    ``energy`` of the total, capped at ``max_components`` and at the numerical rank.
    At most ``max_frames`` frames, drawn uniformly at random without replacement
    (``seed``), are used to find the directions; all frames set the scale and sign.
    """
    x = _check_displacements(displacements)
    if isinstance(max_components, bool) or not isinstance(max_components, (int, np.integer)) or max_components < 1:
        raise ValueError(f"max_components must be an integer >= 1, got {max_components!r}")
    if not 0.0 < float(energy) <= 1.0:
        raise ValueError(f"energy must be in (0, 1], got {energy!r}")
    if isinstance(max_frames, bool) or not isinstance(max_frames, (int, np.integer)) or max_frames < 1:
        raise ValueError(f"max_frames must be an integer >= 1, got {max_frames!r}")
    num_frames, num_vertices = x.shape[:2]
    flat = x.reshape(num_frames, -1)  # a view for contiguous input
    if num_frames > max_frames:
        rows = np.sort(np.random.default_rng(seed).choice(num_frames, size=max_frames, replace=False))
    else:
        rows = np.arange(num_frames)

    energies, cov_vecs, gram_vecs = _sampled_svd(flat, rows)
    energies = np.clip(energies, 0.0, None)
    total = float(energies.sum())
    if total <= 0.0:
        raise ValueError("displacements are all zero: there is no motion to fit a basis to")
    rank = int((energies > energies[0] * _RANK_RTOL).sum())
    reached = np.flatnonzero(np.cumsum(energies) >= float(energy) * total)
    k = int(reached[0]) + 1 if reached.size else len(energies)
    k = max(1, min(k, int(max_components), rank))

    if cov_vecs is not None:
        directions = cov_vecs[:, :k]  # (D, K), orthonormal
    else:
        # Right singular vectors v = X^T w / sigma, accumulated over column blocks.
        w = gram_vecs[:, :k]
        directions = np.empty((flat.shape[1], k), np.float64)
        step = _rows_per_block(len(rows))
        for c in range(0, flat.shape[1], step):
            directions[c:c + step] = flat[rows, c:c + step].astype(np.float64).T @ w
        directions /= np.sqrt(energies[:k])
        # Re-orthonormalise (keeps the order and, with diag(R) > 0, the directions).
        q, upper = np.linalg.qr(directions)
        directions = q * np.sign(np.diag(upper))

    # Coefficients of every training frame on the unit directions set scale and sign.
    coeffs = np.empty((num_frames, k), np.float64)
    step = _rows_per_block(flat.shape[1])
    for r in range(0, num_frames, step):
        coeffs[r:r + step] = flat[r:r + step].astype(np.float64) @ directions
    peak = np.abs(coeffs).argmax(axis=0)  # first frame of largest |coefficient|
    signed_max = coeffs[peak, np.arange(k)]
    components = (directions * signed_max).T.reshape(k, num_vertices, 3)
    return MotionBasis(components=components.astype(np.float32))
