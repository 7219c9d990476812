"""Simple scenes with known answers: symmetry, shifts, depth, early termination, empty input."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from emotalk3d_addon.backend.raster import Camera, intrinsics, look_at, rasterize

from .scenes import max_err, random_scene

D = torch.float64


def _camera(w=33, h=33, fov=50.0, eye=(0.0, 0.0, 0.0)):
    return Camera(intrinsics(w, h, fov, dtype=D), look_at(eye, [eye[0], eye[1], 1.0], dtype=D), w, h)


def _gauss(means, scales, opac, colors, quats=None):
    means = torch.as_tensor(means, dtype=D).reshape(-1, 3)
    n = means.shape[0]
    q = torch.tensor([[1.0, 0, 0, 0]], dtype=D).repeat(n, 1) if quats is None else torch.as_tensor(quats, dtype=D)
    return (means, q, torch.as_tensor(scales, dtype=D).reshape(n, 3), torch.as_tensor(opac, dtype=D).reshape(n),
            torch.as_tensor(colors, dtype=D).reshape(n, 3))


def test_look_at_is_opencv():
    V = look_at([0, 0, -2.0], [0, 0, 0], up=[0, 1, 0], dtype=D)
    # camera at z=-2 looking at +z (right-handed world, +y up): world -x is image right (camera +x),
    # world +y is image up (camera -y), the target is straight ahead
    p = V @ torch.tensor([-1.0, 1.0, 0.0, 1.0], dtype=D)
    assert p[0] > 0 and p[1] < 0 and abs(float(p[2]) - 2.0) < 1e-12
    assert torch.allclose(V[:3, :3] @ V[:3, :3].T, torch.eye(3, dtype=D)) and float(torch.linalg.det(V[:3, :3])) > 0
    cam = Camera(intrinsics(64, 48, 60.0), V.float(), 64, 48)
    assert torch.allclose(cam.center, torch.tensor([0.0, 0.0, -2.0]), atol=1e-6)
    K = intrinsics(64, 48, 60.0, dtype=D)
    assert abs(float(K[0, 0]) - 32 / math.tan(math.radians(30))) < 1e-9 and float(K[0, 2]) == 32.0


def test_single_isotropic_gaussian_is_symmetric_and_peaked_at_centre():
    cam = _camera()
    out = rasterize(*_gauss([0, 0, 2.0], [0.05] * 3, 0.8, [1.0, 0.5, 0.25]), cam)
    a = out.alpha.numpy()
    assert np.unravel_index(a.argmax(), a.shape) == (16, 16)
    assert abs(a[16, 16] - 0.8) < 1e-12  # sigma = 0 at the centre pixel
    np.testing.assert_allclose(a, a[::-1, :], atol=1e-12)
    np.testing.assert_allclose(a, a[:, ::-1], atol=1e-12)
    np.testing.assert_allclose(a, a.T, atol=1e-12)
    np.testing.assert_allclose(out.rgb.numpy(), a[..., None] * np.array([1.0, 0.5, 0.25]), atol=1e-12)


def test_depth_is_the_gaussians_z():
    cam = _camera()
    out = rasterize(*_gauss([0.05, -0.02, 1.7], [0.05, 0.02, 0.3], 0.6, [1, 1, 1],
                            quats=[[0.9, 0.2, 0.3, 0.1]]), cam)
    hit = out.alpha > 0
    assert hit.sum() > 20
    assert torch.allclose(out.depth[hit], torch.full_like(out.depth[hit], 1.7), atol=1e-12)
    assert (out.depth[~hit] == 0).all()


def test_camera_shift_by_one_pixel_shifts_the_image():
    # flat (z-thin, axis-aligned) Gaussians at one depth: their footprint does not depend on where they
    # sit in the image, so moving the camera by z / fx along x moves the image by exactly one pixel
    z, w = 2.0, 40
    cam0 = _camera(w, 30)
    fx = float(cam0.K[0, 0])
    g = torch.Generator().manual_seed(0)
    n = 12
    means = torch.cat([(torch.rand(n, 2, generator=g, dtype=D) - 0.5) * 0.6, torch.full((n, 1), z, dtype=D)], 1)
    means[:, 2] += torch.arange(n, dtype=D) * 1e-9  # distinct depths, same footprint
    scales = torch.cat([torch.rand(n, 2, generator=g, dtype=D) * 0.04 + 0.01, torch.full((n, 1), 1e-7, dtype=D)], 1)
    opac = torch.rand(n, generator=g, dtype=D) * 0.8 + 0.1
    args = _gauss(means, scales, opac, torch.rand(n, 3, generator=g, dtype=D))
    out0 = rasterize(*args, cam0)
    right = cam0.world_to_camera[0, :3]  # camera +x (image right) in world coordinates
    cam1 = _camera(w, 30, eye=tuple((right * z / fx).tolist()))
    out1 = rasterize(*args, cam1)
    np.testing.assert_allclose(out1.rgb[:, :-1].numpy(), out0.rgb[:, 1:].numpy(), atol=1e-7)
    np.testing.assert_allclose(out1.alpha[:, :-1].numpy(), out0.alpha[:, 1:].numpy(), atol=1e-7)
    assert out0.alpha.sum() > 10


def test_early_termination_opaque_stack():
    cam = _camera()
    n = 6
    cols = torch.eye(3, dtype=D).repeat(2, 1)
    args = _gauss([[0, 0, 2.0 + 0.1 * i] for i in range(n)], [[0.2] * 3] * n, [0.95] * n, cols)
    out = rasterize(*args, cam)
    # centre pixel: alpha 0.95 each; T = 0.05, 0.0025, 1.25e-4, then 6.25e-6 <= 1e-4 stops before the 4th
    assert abs(float(out.alpha[16, 16]) - (1 - 0.05 ** 3)) < 1e-12
    expect = sum(0.95 * 0.05 ** i * cols[i] for i in range(3))
    assert torch.allclose(out.rgb[16, 16], expect, atol=1e-12)
    assert float(out.alpha.max()) <= 1 - 1e-4
    # fully opaque (clamped at 0.999): only the front one contributes
    args = _gauss([[0, 0, 2.0 + 0.1 * i] for i in range(n)], [[0.2] * 3] * n, [1.0] * n, cols)
    out = rasterize(*args, cam)
    assert abs(float(out.alpha[16, 16]) - 0.999) < 1e-12
    assert torch.allclose(out.rgb[16, 16], 0.999 * cols[0], atol=1e-12)
    assert float(out.alpha.max()) <= 1 - 1e-4
    assert abs(float(out.depth[16, 16]) - 2.0) < 1e-12


def test_early_termination_matches_reference_random_stack():
    s = random_scene(11, 200, spread=0.3, behind=0.0, scale=(0.08, 0.25))
    s.opacities = 0.9 + 0.1 * s.opacities
    ref = s.reference()
    out = rasterize(*s.args())
    assert (ref["alpha"] > 0.999).mean() > 0.3  # many pixels saturate
    assert max_err(out.rgb, ref["rgb"]) < 1e-9 and max_err(out.alpha, ref["alpha"]) < 1e-9
    assert max_err(out.depth, ref["depth"]) < 1e-9
    assert float(out.alpha.max()) <= 1 - 1e-4


@pytest.mark.parametrize("grad", [False, True])
def test_empty_and_culled(grad):
    cam = _camera(20, 10)
    for n, z in ((0, 2.0), (5, -1.0), (5, 1e11), (5, 0.001)):
        means = torch.zeros(n, 3, dtype=D)
        means[:, 2] = z
        gs = _gauss(means, torch.full((n, 3), 0.1, dtype=D), torch.full((n,), 0.5, dtype=D), torch.ones(n, 3, dtype=D))
        args = [t.requires_grad_(grad) for t in gs]
        out = rasterize(*args, cam, extra=torch.ones(n, 2, dtype=D))
        for t in (out.rgb, out.alpha, out.depth, out.extra):
            assert t.shape[:2] == (10, 20) and (t == 0).all()
        if grad and n:
            (out.rgb.sum() + out.alpha.sum() + out.depth.sum()).backward()
            assert all(torch.isfinite(a.grad).all() and (a.grad == 0).all() for a in args)


def test_offscreen_gaussians_render_nothing():
    cam = _camera(20, 10)
    out = rasterize(*_gauss([[5.0, 0, 2.0], [0, -5.0, 2.0]], [[0.05] * 3] * 2, [0.9, 0.9], [[1, 1, 1]] * 2), cam)
    assert (out.alpha == 0).all()


def test_low_opacity_is_invisible():
    cam = _camera(20, 10)
    out = rasterize(*_gauss([0, 0, 2.0], [0.3] * 3, 1.0 / 256, [1, 1, 1]), cam)
    assert (out.alpha == 0).all()
