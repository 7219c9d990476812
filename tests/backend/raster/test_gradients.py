"""Gradients of the CPU path (torch projection + numba compositing) against finite differences (float64)."""
from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from emotalk3d_addon.backend.raster import Camera, intrinsics, look_at, rasterize
from emotalk3d_addon.backend.raster import cpu, cpu_binning

D = torch.float64


def _small_scene(seed, n=7, w=13, h=10, sh_degree=None, extra=2, opac=(0.2, 0.8)):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g, dtype=D) * torch.tensor([0.5, 0.4, 0.3], dtype=D)
    means += torch.tensor([0.0, 0.0, 2.0], dtype=D)
    quats = torch.randn(n, 4, generator=g, dtype=D)
    scales = torch.rand(n, 3, generator=g, dtype=D) * 0.2 + 0.1
    o = torch.rand(n, generator=g, dtype=D) * (opac[1] - opac[0]) + opac[0]
    if sh_degree is None:
        colors = torch.rand(n, 3, generator=g, dtype=D)
    else:
        colors = torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g, dtype=D) * 0.3
    ext = torch.rand(n, extra, generator=g, dtype=D) if extra else None
    cam = Camera(intrinsics(w, h, 60.0, dtype=D), look_at([0.1, 0.05, 0.0], [0.0, 0.0, 2.0], dtype=D), w, h)
    return [means, quats, scales, o, colors] + ([ext] if ext is not None else []), cam


def fd_check(f, inputs, eps=1e-6, rtol=1e-4, atol=1e-7, seed=0):
    """Gradient of a random weighting of f's outputs vs central differences, element by element."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        weights = [torch.rand(o.shape, generator=g, dtype=D) - 0.3 for o in f(*inputs)]

    def loss(*xs):
        return sum((o * w).sum() for o, w in zip(f(*xs), weights))

    xs = [t.detach().clone().requires_grad_() for t in inputs]
    analytic = torch.autograd.grad(loss(*xs), xs)
    for x, ga in zip(xs, analytic):
        num = torch.zeros_like(x)
        flat = x.detach().view(-1)
        for i in range(flat.numel()):
            orig = float(flat[i])
            with torch.no_grad():
                flat[i] = orig + eps
                up = float(loss(*xs))
                flat[i] = orig - eps
                down = float(loss(*xs))
                flat[i] = orig
            num.view(-1)[i] = (up - down) / (2 * eps)
        assert torch.allclose(ga, num, rtol=rtol, atol=atol), (x.shape, (ga - num).abs().max(), num.abs().max())
    return analytic


def _fn(cam, sh_degree, has_extra, mode="classic"):
    def f(*args):
        out = rasterize(*args[:5], cam, sh_degree=sh_degree, extra=args[5] if has_extra else None, backend="cpu",
                        mode=mode)
        return (out.rgb, out.alpha, out.depth) + ((out.extra,) if has_extra else ())
    return f


@pytest.mark.parametrize("seed,sh_degree,extra", [(0, None, 2), (1, 3, 1), (2, 1, 0)])
def test_full_chain_gradcheck(seed, sh_degree, extra):
    inputs, cam = _small_scene(seed, sh_degree=sh_degree, extra=extra)
    inputs = [t.clone().requires_grad_() for t in inputs]
    out = _fn(cam, sh_degree, bool(extra))(*inputs)
    assert float(out[1].detach().max()) > 0.3  # the Gaussians really overlap the image
    grads = fd_check(_fn(cam, sh_degree, bool(extra)), inputs)
    assert all(float(g.abs().max()) > 0 for g in grads)


def test_antialiased_gradcheck():
    # small Gaussians (a few pixels wide): the compensation's gradient w.r.t. scales and quats matters
    inputs, cam = _small_scene(4, n=9, sh_degree=1, extra=1)
    inputs[2] = inputs[2] * 0.4
    inputs = [t.clone().requires_grad_() for t in inputs]
    f = _fn(cam, 1, True, "antialiased")
    classic = _fn(cam, 1, True)(*inputs)[1]
    alpha = f(*inputs)[1]
    assert float(alpha.detach().max()) > 0.1 and float((classic - alpha).detach().abs().max()) > 0.05
    grads = fd_check(f, inputs)
    assert float(grads[2].abs().max()) > 0


def test_torch_gradcheck_fast_mode():
    inputs, cam = _small_scene(6, sh_degree=2, extra=1)
    inputs = [t.clone().requires_grad_() for t in inputs]
    assert gradcheck(_fn(cam, 2, True), inputs, eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


def test_gradcheck_with_early_termination():
    # near-opaque, overlapping: many pixels stop early, exercising T recovery in the backward pass
    inputs, cam = _small_scene(3, n=8, extra=0, opac=(0.9, 0.98))
    inputs[0][:, :2] *= 0.3
    inputs = [t.clone().requires_grad_() for t in inputs]
    f = _fn(cam, None, False)
    out = f(*inputs)
    assert float(out[1].detach().max()) > 0.9999 - 1e-6
    fd_check(f, inputs)


def test_composite_function_gradcheck():
    # the autograd.Function alone, w.r.t. means2d, conics, colours (+ depth/extra channels), opacities
    g = torch.Generator().manual_seed(4)
    n, w, h = 9, 20, 18
    means2d = torch.rand(n, 2, generator=g, dtype=D) * torch.tensor([w, h], dtype=D)
    L = torch.randn(n, 2, 2, generator=g, dtype=D) * 0.15
    prec = L @ L.transpose(1, 2) + 0.05 * torch.eye(2, dtype=D)
    conics = torch.stack([prec[:, 0, 0], prec[:, 0, 1], prec[:, 1, 1]], -1)
    colors = torch.rand(n, 5, generator=g, dtype=D)
    opac = torch.rand(n, generator=g, dtype=D) * 0.6 + 0.35
    depths = torch.rand(n, generator=g, dtype=D) + 1
    bins = cpu_binning.bin_gaussians(means2d, conics, opac, depths, torch.ones(n, dtype=torch.bool), w, h)

    def f(m, q, c, o):
        # bins/records are built from the unperturbed values; rebuild them so finite differences see the change
        b = cpu_binning.bin_gaussians(m, q, o, depths, torch.ones(n, dtype=torch.bool), w, h)
        return cpu.composite(m, q, c, o, b)

    assert bins.n_pairs > n
    fd_check(f, [means2d, conics, colors, opac])


def test_float32_gradients_close_to_float64():
    inputs, cam = _small_scene(5, n=20, w=24, h=20, sh_degree=2, extra=1)
    grads = {}
    for dt in (torch.float32, torch.float64):
        xs = [t.detach().to(dt).requires_grad_() for t in inputs]
        out = rasterize(*xs[:5], cam.to(None, dt), sh_degree=2, extra=xs[5])
        w = torch.linspace(0, 1, out.rgb.numel(), dtype=dt).reshape(out.rgb.shape)
        ((out.rgb * w).sum() + out.alpha.sum() + 0.3 * out.depth.sum() + out.extra.sum()).backward()
        grads[dt] = [x.grad.double() for x in xs]
    for g32, g64 in zip(grads[torch.float32], grads[torch.float64]):
        assert torch.allclose(g32, g64, rtol=2e-3, atol=2e-3 * float(g64.abs().max()))
