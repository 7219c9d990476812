"""Placing a subject's Gaussians in a scene with an object-to-world matrix.

An object matrix ``M = [A | t]`` is split into a rigid part ``[R | t]`` (R a proper
rotation, the polar factor of A) and a symmetric linear part ``L`` with ``A = R L``.
The rigid part is folded into the camera (``world_to_camera @ [R | t]``), so the
rasteriser still sees an orthonormal view and evaluates view-dependent colour with the
view direction in the subject's own frame, which is what the SH coefficients were
trained in. ``L`` is applied to the Gaussians themselves: a uniform scale exactly
(means and standard deviations times s), anything else (non-uniform scale, shear, a
mirror) through the covariance ``L Σ Lᵀ`` and its eigen-decomposition.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..raster.projection import quat_to_rotmat

UNIFORM_TOL = 1e-6      # relative: L within this of s·I counts as a uniform scale


@dataclass(frozen=True)
class Placement:
    """``rigid`` (4, 4) float64 proper rigid transform; ``linear`` (3, 3) float64 symmetric."""

    rigid: np.ndarray
    linear: np.ndarray

    @property
    def uniform_scale(self) -> float | None:
        """s when ``linear`` is s·I with s > 0 (within UNIFORM_TOL), else None."""
        s = float(np.trace(self.linear)) / 3.0
        if s <= 0.0:
            return None
        if np.abs(self.linear - s * np.eye(3)).max() <= UNIFORM_TOL * s:
            return s
        return None


def split_object_matrix(matrix) -> Placement:
    """Split a (4, 4) object-to-world matrix (metres) into rigid and linear parts.

    Raises ValueError for a matrix that is not affine, not finite, or collapses space
    (a zero scale on some axis).
    """
    M = np.asarray(matrix, dtype=np.float64)
    if M.shape != (4, 4):
        raise ValueError(f"object matrix must be 4x4, got {M.shape}")
    if not np.isfinite(M).all():
        raise ValueError("object matrix has NaN or infinite entries")
    if np.abs(M[3] - np.array([0.0, 0.0, 0.0, 1.0])).max() > 1e-9:
        raise ValueError("object matrix must be affine (last row 0 0 0 1)")
    A = M[:3, :3]
    U, S, Vt = np.linalg.svd(A)
    if S.min() <= 1e-9 * max(S.max(), 1e-30):
        raise ValueError("object matrix collapses the head (a zero scale)")
    R = U @ Vt
    if np.linalg.det(R) < 0:             # a mirror: keep R proper, the reflection goes into L
        U = U.copy()
        U[:, -1] *= -1.0
        R = U @ Vt
    L = R.T @ A
    L = 0.5 * (L + L.T)
    rigid = np.eye(4)
    rigid[:3, :3] = R
    rigid[:3, 3] = M[:3, 3]
    return Placement(rigid, L)


def rotmat_to_quat(R: torch.Tensor) -> torch.Tensor:
    """(N, 4) unit wxyz quaternions (w >= 0) from (N, 3, 3) proper rotation matrices."""
    m = R
    t = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    cand = torch.stack([
        torch.stack([1 + t, m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]], -1),
        torch.stack([m[:, 2, 1] - m[:, 1, 2], 1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2],
                     m[:, 0, 1] + m[:, 1, 0], m[:, 0, 2] + m[:, 2, 0]], -1),
        torch.stack([m[:, 0, 2] - m[:, 2, 0], m[:, 0, 1] + m[:, 1, 0],
                     1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2], m[:, 1, 2] + m[:, 2, 1]], -1),
        torch.stack([m[:, 1, 0] - m[:, 0, 1], m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1],
                     1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]], -1),
    ], dim=1)                                                     # (N, 4 candidates, 4)
    diag = torch.stack([t, m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], -1)
    best = diag.argmax(-1)                                        # the numerically largest component
    q = cand[torch.arange(m.shape[0], device=m.device), best]
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[:, :1] < 0, -q, q)


def apply_linear(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor,
                 placement: Placement) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gaussians after ``placement.linear``: means (N, 3), quats (N, 4) wxyz, scales (N, 3) linear."""
    s = placement.uniform_scale
    if s is not None:
        if s == 1.0:
            return means, quats, scales
        return means * s, quats, scales * s
    L = torch.as_tensor(placement.linear, dtype=torch.float64, device=means.device)
    means_out = (means.double() @ L.T).to(means.dtype)
    Rq = quat_to_rotmat(quats.double())
    T = L @ (Rq * scales.double()[:, None, :])                    # L R S; covariance T Tᵀ
    cov = T @ T.transpose(1, 2)
    vals, vecs = torch.linalg.eigh(cov)
    flip = torch.linalg.det(vecs) < 0
    vecs[flip, :, 0] *= -1.0                                       # a proper rotation, same covariance
    quats_out = rotmat_to_quat(vecs).to(quats.dtype)
    scales_out = vals.clamp_min(0.0).sqrt().to(scales.dtype)
    return means_out, quats_out, scales_out


__all__ = ["Placement", "split_object_matrix", "apply_linear", "rotmat_to_quat"]
