"""Brute-force float64 reference renderer (numpy), for tests on tiny images only.

Written independently of ``projection``/``cpu``: every pixel looks at every Gaussian, with no
tiles, no bounding boxes and no spans; it shares only the conventions (gsplat classic mode):
pixel centres at +0.5, cull camera z outside [near, far], Jacobian at the mean with x/z, y/z
clamped to 1.3x the frustum, 2D covariance + 0.3, alpha = min(0.999, o exp(-sigma)), skip
sigma < 0 and alpha < 1/255, front to back in (stable) z order, stop before the Gaussian that
would bring transmittance to <= 1e-4. ``antialiased=True``: the opacity is scaled by
sqrt(det(cov2) / det(cov2 + 0.3 I)) first (Mip-Splatting's 2D mip filter, gsplat's antialiased mode).
"""
from __future__ import annotations

import numpy as np

# INRIA 3DGS real SH constants, by degree
_C0 = 0.28209479177387814
_C1 = 0.4886025119029199
_C2 = np.array([1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792,
                0.5462742152960396])
_C3 = np.array([-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
                -0.4570457994644658, 1.445305721320277, -0.5900435899266435])


def _np64(x):
    if x is None:
        return None
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _sh_colour(deg: int, sh: np.ndarray, d: np.ndarray) -> np.ndarray:
    """sh (N,K,3), unit d (N,3) -> (N,3), before the +0.5 / clamp."""
    x, y, z = d[:, 0:1], d[:, 1:2], d[:, 2:3]
    res = _C0 * sh[:, 0]
    if deg > 0:
        res = res - _C1 * y * sh[:, 1] + _C1 * z * sh[:, 2] - _C1 * x * sh[:, 3]
    if deg > 1:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        res = (res + _C2[0] * xy * sh[:, 4] + _C2[1] * yz * sh[:, 5] + _C2[2] * (2 * zz - xx - yy) * sh[:, 6]
               + _C2[3] * xz * sh[:, 7] + _C2[4] * (xx - yy) * sh[:, 8])
    if deg > 2:
        res = (res + _C3[0] * y * (3 * xx - yy) * sh[:, 9] + _C3[1] * xy * z * sh[:, 10]
               + _C3[2] * y * (4 * zz - xx - yy) * sh[:, 11] + _C3[3] * z * (2 * zz - 3 * xx - 3 * yy) * sh[:, 12]
               + _C3[4] * x * (4 * zz - xx - yy) * sh[:, 13] + _C3[5] * z * (xx - yy) * sh[:, 14]
               + _C3[6] * x * (xx - 3 * yy) * sh[:, 15])
    return res


def _rotation(q: np.ndarray) -> np.ndarray:
    """(N,3,3) from wxyz quaternions, as L(q) R(q*) restricted to the vector part."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    out = np.empty((q.shape[0], 3, 3))
    for n, (w, x, y, z) in enumerate(q):
        v = np.array([x, y, z])
        vx = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
        out[n] = (w * w - v @ v) * np.eye(3) + 2 * np.outer(v, v) + 2 * w * vx
    return out


def render_reference(means, quats, scales, opacities, colors, K, world_to_camera, width: int, height: int,
                     near: float = 0.01, far: float = 1e10, sh_degree: int | None = None, extra=None,
                     antialiased: bool = False) -> dict:
    """dict of float64 arrays: rgb (H,W,3), alpha (H,W), depth (H,W), extra (H,W,C) or None."""
    means, quats, scales, opac = _np64(means), _np64(quats), _np64(scales), _np64(opacities).reshape(-1)
    colors, K, V, extra = _np64(colors), _np64(K), _np64(world_to_camera), _np64(extra)
    n = means.shape[0]
    C = 0 if extra is None else extra.shape[1]
    # camera space
    Rv, tv = V[:3, :3], V[:3, 3]
    pc = means @ Rv.T + tv
    keep = (pc[:, 2] >= near) & (pc[:, 2] <= far)
    # colours
    if sh_degree is None:
        rgb = colors.reshape(n, 3)
    else:
        centre = -Rv.T @ tv
        d = means - centre
        d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
        rgb = np.maximum(_sh_colour(sh_degree, colors, d) + 0.5, 0.0)
    feats = np.concatenate([rgb, pc[:, 2:3]] + ([extra] if C else []), axis=1)
    out = {"rgb": np.zeros((height, width, 3)), "alpha": np.zeros((height, width)),
           "depth": np.zeros((height, width)), "extra": np.zeros((height, width, C)) if C else None}
    idx = np.nonzero(keep)[0]
    if idx.size == 0:
        return out
    idx = idx[np.argsort(pc[idx, 2], kind="stable")]
    pc, feats, opac = pc[idx], feats[idx], opac[idx]
    # 3D covariance in camera space: (Rv Rq S)(Rv Rq S)^T
    A = Rv[None] @ _rotation(quats[idx]) @ (scales[idx][:, :, None] * np.eye(3)[None])
    cov3 = A @ np.transpose(A, (0, 2, 1))
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    z = pc[:, 2]
    u = fx * pc[:, 0] / z + cx
    v = fy * pc[:, 1] / z + cy
    # Jacobian of (fx x/z, fy y/z) at the mean, x/z and y/z clamped to 1.3x the frustum
    hx, hy = 0.5 * width / fx, 0.5 * height / fy
    xz = np.clip(pc[:, 0] / z, -(cx / fx + 0.3 * hx), (width - cx) / fx + 0.3 * hx)
    yz = np.clip(pc[:, 1] / z, -(cy / fy + 0.3 * hy), (height - cy) / fy + 0.3 * hy)
    J = np.zeros((idx.size, 2, 3))
    J[:, 0, 0] = fx / z
    J[:, 0, 2] = -fx * xz / z
    J[:, 1, 1] = fy / z
    J[:, 1, 2] = -fy * yz / z
    cov2 = J @ cov3 @ np.transpose(J, (0, 2, 1))
    if antialiased:
        opac = opac * np.sqrt(np.maximum(np.linalg.det(cov2) / np.linalg.det(cov2 + 0.3 * np.eye(2)[None]), 0.0))
    cov2 = cov2 + 0.3 * np.eye(2)[None]
    prec = np.linalg.inv(cov2)  # (M, 2, 2)
    # every pixel against every Gaussian: (P, M)
    jj, ii = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    dx = u[None, :] - jj.reshape(-1, 1)
    dy = v[None, :] - ii.reshape(-1, 1)
    sigma = 0.5 * (prec[:, 0, 0] * dx * dx + prec[:, 1, 1] * dy * dy) + prec[:, 0, 1] * dx * dy
    alpha = np.minimum(0.999, opac[None, :] * np.exp(-sigma))
    used = (sigma >= 0) & (alpha >= 1.0 / 255.0)
    a = np.where(used, alpha, 0.0)
    after = np.cumprod(1.0 - a, axis=1)          # T after each Gaussian if nothing stopped
    used &= after > 1e-4                           # the first failing one stops the pixel; later ones fail too
    a = np.where(used, alpha, 0.0)
    T_after = np.cumprod(1.0 - a, axis=1)
    T_before = np.concatenate([np.ones((a.shape[0], 1)), T_after[:, :-1]], axis=1)
    w = a * T_before                               # (P, M)
    img = (w @ feats).reshape(height, width, -1)
    acc = 1.0 - T_after[:, -1].reshape(height, width)
    out["rgb"] = img[..., :3]
    out["alpha"] = acc
    out["depth"] = np.where(acc > 0, img[..., 3] / np.where(acc > 0, acc, 1.0), 0.0)
    if C:
        out["extra"] = img[..., 4:]
    return out
