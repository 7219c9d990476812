"""Real spherical harmonics up to degree 3 in the INRIA 3DGS / gsplat convention (torch)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
         -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def num_sh_bases(degree: int) -> int:
    return (degree + 1) ** 2


def _basis_list(degree: int, dirs: torch.Tensor) -> list:
    """The (degree+1)^2 basis functions at unit ``dirs`` (..., 3), each (...,) (a Python float for Y_00)."""
    if not 0 <= degree <= 3:
        raise ValueError(f"sh_degree must be 0..3, got {degree}")
    out = [SH_C0]
    if degree == 0:
        return out
    x, y, z = dirs.unbind(-1)
    out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [SH_C2[0] * x * y, SH_C2[1] * y * z, SH_C2[2] * (2.0 * zz - xx - yy),
                SH_C2[3] * x * z, SH_C2[4] * (xx - yy)]
    if degree >= 3:
        out += [SH_C3[0] * y * (3.0 * xx - yy), SH_C3[1] * x * y * z, SH_C3[2] * y * (4.0 * zz - xx - yy),
                SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy), SH_C3[4] * x * (4.0 * zz - xx - yy),
                SH_C3[5] * z * (xx - yy), SH_C3[6] * x * (xx - 3.0 * yy)]
    return out


def sh_bases(degree: int, dirs: torch.Tensor) -> torch.Tensor:
    """Basis values (..., (degree+1)^2) at unit directions ``dirs`` (..., 3)."""
    b = _basis_list(degree, dirs)
    b[0] = torch.full_like(dirs[..., 0], SH_C0)
    return torch.stack(b, dim=-1)


def eval_sh(degree: int, coeffs: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Raw SH sum (N, 3) of ``coeffs`` (N, K, 3), K >= (degree+1)^2, along ``dirs`` (N, 3) (normalised here)."""
    k = num_sh_bases(degree)
    if coeffs.dim() != 3 or coeffs.shape[-1] != 3 or coeffs.shape[1] < k:
        raise ValueError(f"SH coefficients must be (N, >= {k}, 3) for degree {degree}, got {tuple(coeffs.shape)}")
    basis = _basis_list(degree, F.normalize(dirs, dim=-1) if degree > 0 else dirs)
    # accumulate term by term: much faster on the CPU than stacking the basis and a (N, K, 3) product;
    # unbind (not indexing) so the backward pass stacks the K gradients once
    cs = coeffs[:, :k, :].unbind(1)
    out = cs[0] * basis[0]
    for i in range(1, k):
        out = out + cs[i] * basis[i][:, None]
    return out


def sh_to_rgb(degree: int, coeffs: torch.Tensor, means: torch.Tensor, camera_center: torch.Tensor) -> torch.Tensor:
    """Colours seen from ``camera_center``: SH along (mean - centre), + 0.5, clamped at 0 (no upper clamp)."""
    return torch.clamp_min(eval_sh(degree, coeffs, means - camera_center) + 0.5, 0.0)


def rgb_to_sh0(rgb: torch.Tensor) -> torch.Tensor:
    """DC coefficient (N, 1, 3) reproducing colour ``rgb`` (N, 3) from every direction."""
    return ((rgb - 0.5) / SH_C0)[:, None, :]
