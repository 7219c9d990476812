"""EWA projection of 3D Gaussians to the image plane (torch, differentiable).

Matches gsplat's pinhole projection (``_torch_impl._fully_fused_projection`` and the CUDA
kernel): world -> camera with the 4x4, near/far culling on camera z, perspective Jacobian
evaluated at the mean with x/z, y/z clamped to the frustum widened by 30 %, 2D covariance
+ ``eps2d`` on the diagonal, conic = the 3 unique entries of its inverse.

Two modes, gsplat's ``rasterize_mode``: ``classic`` (3DGS: the dilation adds area, so a
Gaussian smaller than a pixel is drawn as a pixel-sized blob at full opacity) and
``antialiased`` (Mip-Splatting's 2D mip filter: the same dilation, with the opacity scaled
by sqrt(det(cov2d) / det(cov2d + eps2d I)) so that the blob carries the energy of the
Gaussian it stands for; what keeps thin or distant detail from thickening and flickering
when rendered coarser than it was trained).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .camera import Camera
from .sh import sh_to_rgb

EPS2D = 0.3
ALPHA_MIN = 1.0 / 255.0
RASTER_MODES = ("classic", "antialiased")


def check_mode(mode: str) -> bool:
    """True for ``antialiased``, False for ``classic``; anything else is a ValueError."""
    if mode not in RASTER_MODES:
        raise ValueError(f"raster mode must be one of {RASTER_MODES}, got {mode!r}")
    return mode == "antialiased"


@dataclass
class Projected:
    """Per-Gaussian screen-space quantities (N rows; rows of culled Gaussians are finite but unused)."""

    means2d: torch.Tensor   # (N, 2) pixels
    conics: torch.Tensor    # (N, 3) inverse 2D covariance (a, b, c): sigma = 0.5 (a dx^2 + c dy^2) + b dx dy
    depths: torch.Tensor    # (N,) camera-space z
    radii: torch.Tensor     # (N, 2) int32 screen half-extents, 0 where culled (no grad)
    visible: torch.Tensor   # (N,) bool: in front, within near/far, opacity >= 1/255, touches the image
    colors: torch.Tensor    # (N, 3) RGB (after SH when sh_degree is given)
    opacities: torch.Tensor  # (N,) the opacities to composite with: the input's, times the
                             # compensation in antialiased mode


def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) rotation matrices from wxyz quaternions (normalised here)."""
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(quats.shape[:-1] + (3, 3))


def covariances(quats: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """World-space 3D covariances (N, 3, 3) = R S S R^T, scales linear."""
    M = quat_to_rotmat(quats) * scales[:, None, :]
    return M @ M.transpose(-1, -2)


def project(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, opacities: torch.Tensor,
            colors: torch.Tensor, camera: Camera, sh_degree: int | None = None, eps2d: float = EPS2D,
            mode: str = "classic") -> Projected:
    """Project N Gaussians through ``camera``; differentiable w.r.t. every Gaussian input (not the camera).
    ``mode``: ``classic`` or ``antialiased`` (the module docstring).

    Written column-wise (one (N,) tensor per matrix entry, camera entries as Python floats):
    the 2D covariance is T T^T with T = J R_view R_quat S, which avoids batched 3x3 matmuls and is
    several times faster on the CPU than the textbook J W Sigma W^T J^T form (same value).
    """
    W, H = int(camera.width), int(camera.height)
    K = camera.K.detach().double().tolist()
    V = camera.world_to_camera.detach().double().tolist()
    fx, fy, cx, cy = K[0][0], K[1][1], K[0][2], K[1][2]

    mx, my, mz = means.unbind(-1)
    x = V[0][0] * mx + V[0][1] * my + V[0][2] * mz + V[0][3]
    y = V[1][0] * mx + V[1][1] * my + V[1][2] * mz + V[1][3]
    z = V[2][0] * mx + V[2][1] * my + V[2][2] * mz + V[2][3]
    valid = (z >= camera.near) & (z <= camera.far)
    zs = torch.where(valid, z, torch.ones_like(z))  # keeps culled rows finite (and their gradients zero)
    rz = 1.0 / zs

    # M = R_quat diag(scales), column j = scale_j * R[:, j]
    w, qx, qy, qz = F.normalize(quats, dim=-1).unbind(-1)
    sx, sy, sz = scales.unbind(-1)
    xx, yy, zz, xy, xz, yz, wx, wy, wz = qx * qx, qy * qy, qz * qz, qx * qy, qx * qz, qy * qz, w * qx, w * qy, w * qz
    Rq = ((1 - 2 * (yy + zz), 2 * (xy - wz), 2 * (xz + wy)),
          (2 * (xy + wz), 1 - 2 * (xx + zz), 2 * (yz - wx)),
          (2 * (xz - wy), 2 * (yz + wx), 1 - 2 * (xx + yy)))
    M = [[Rq[r][0] * sx, Rq[r][1] * sy, Rq[r][2] * sz] for r in range(3)]
    # camera-space M_c = R_view M, rows 0..2
    Mc = [[V[r][0] * M[0][j] + V[r][1] * M[1][j] + V[r][2] * M[2][j] for j in range(3)] for r in range(3)]

    # perspective Jacobian at the mean, x/z and y/z clamped to the frustum widened by 30 % (as gsplat)
    tan_fovx, tan_fovy = 0.5 * W / fx, 0.5 * H / fy
    lim_x_pos, lim_x_neg = (W - cx) / fx + 0.3 * tan_fovx, cx / fx + 0.3 * tan_fovx
    lim_y_pos, lim_y_neg = (H - cy) / fy + 0.3 * tan_fovy, cy / fy + 0.3 * tan_fovy
    u = torch.clamp(x * rz, -lim_x_neg, lim_x_pos)
    v = torch.clamp(y * rz, -lim_y_neg, lim_y_pos)
    j00, j02 = fx * rz, -fx * u * rz
    j11, j12 = fy * rz, -fy * v * rz
    T0 = [j00 * Mc[0][k] + j02 * Mc[2][k] for k in range(3)]
    T1 = [j11 * Mc[1][k] + j12 * Mc[2][k] for k in range(3)]
    antialiased = check_mode(mode)
    b00 = T0[0] * T0[0] + T0[1] * T0[1] + T0[2] * T0[2]
    b11 = T1[0] * T1[0] + T1[1] * T1[1] + T1[2] * T1[2]
    c00, c11 = b00 + eps2d, b11 + eps2d
    c01 = T0[0] * T1[0] + T0[1] * T1[1] + T0[2] * T1[2]
    det = torch.clamp_min(c00 * c11 - c01 * c01, 1e-10)
    if antialiased:  # (the floor keeps the gradient finite; a Gaussian it touches is culled anyway)
        opacities = opacities * torch.sqrt(torch.clamp_min((b00 * b11 - c01 * c01) / det, 1e-12))
    rdet = 1.0 / det
    conics = torch.stack([c11 * rdet, -c01 * rdet, c00 * rdet], dim=-1)
    means2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], dim=-1)

    with torch.no_grad():
        o = opacities.detach()
        extend = torch.sqrt(2.0 * torch.log(torch.clamp_min(o, ALPHA_MIN) / ALPHA_MIN)).clamp_max(3.33)
        rx = torch.ceil(extend * torch.sqrt(c00.detach()))
        ry = torch.ceil(extend * torch.sqrt(c11.detach()))
        m = means2d.detach()
        visible = (valid & (o >= ALPHA_MIN) & (m[:, 0] + rx > 0) & (m[:, 0] - rx < W)
                   & (m[:, 1] + ry > 0) & (m[:, 1] - ry < H) & torch.isfinite(m).all(-1))
        radii = torch.where(visible[:, None], torch.stack([rx, ry], -1), torch.zeros_like(m)).to(torch.int32)

    if sh_degree is not None:
        R = camera.world_to_camera.detach().double()
        center = (-(R[:3, :3].T @ R[:3, 3])).to(device=means.device, dtype=means.dtype)
        rgb = sh_to_rgb(sh_degree, colors, means, center)
    else:
        rgb = colors
    return Projected(means2d, conics, z, radii, visible, rgb, opacities)


__all__ = ["Projected", "project", "quat_to_rotmat", "covariances", "check_mode", "EPS2D", "ALPHA_MIN",
           "RASTER_MODES"]
