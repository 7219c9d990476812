"""Backend selection, the gsplat (CUDA) path and input validation."""
from __future__ import annotations

import pytest
import torch

from emotalk3d_addon.backend.raster import Camera, intrinsics, look_at, rasterize
from emotalk3d_addon.backend.raster import gsplat_backend
from emotalk3d_addon.backend.raster.api import resolve_backend

from .scenes import random_scene

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="gsplat needs a CUDA GPU")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_gsplat_without_cuda_raises_clear_error():
    s = random_scene(0, 10, dtype=torch.float32)
    with pytest.raises(RuntimeError, match="gsplat needs a CUDA GPU; use the CPU rasteriser"):
        rasterize(*s.args(), backend="gsplat")


def test_auto_picks_cpu_for_cpu_tensors():
    assert resolve_backend("auto", torch.zeros(1, 3)) == "cpu"
    assert resolve_backend("cpu", torch.zeros(1, 3)) == "cpu"
    with pytest.raises(ValueError, match="backend"):
        resolve_backend("vulkan", torch.zeros(1, 3))


def test_gsplat_build_failure_is_reported(monkeypatch):
    pytest.importorskip("packaging")
    gsplat = pytest.importorskip("gsplat")

    def broken(*args, **kwargs):
        raise AttributeError("'NoneType' object has no attribute 'CameraModelType'")

    monkeypatch.setattr(gsplat_backend, "cuda_available", lambda: True)
    monkeypatch.setattr(gsplat_backend, "_ready", False)
    monkeypatch.setattr(gsplat, "rasterization", broken)
    s = random_scene(0, 10, dtype=torch.float32)
    monkeypatch.setattr(gsplat_backend, "_target_device", lambda t: t.device)  # let CPU tensors reach gsplat
    with pytest.raises(RuntimeError, match="failed to build or load") as info:
        gsplat_backend.rasterize_gsplat(*s.args()[:5], s.camera, None, None)
    msg = str(info.value)
    assert "CameraModelType" in msg and "MAX_JOBS" in msg and "VERBOSE" in msg and "CUDA toolkit" in msg
    assert isinstance(info.value.__cause__, AttributeError)
    # after a successful first call, later errors pass through unchanged
    monkeypatch.setattr(gsplat_backend, "_ready", True)
    with pytest.raises(AttributeError):
        gsplat_backend.rasterize_gsplat(*s.args()[:5], s.camera, None, None)


@pytest.mark.parametrize("bad", ["means", "quats", "scales", "opacities", "colors", "sh", "extra"])
def test_input_validation(bad):
    s = random_scene(0, 5, dtype=torch.float32)
    kw = dict(sh_degree=None, extra=None)
    args = list(s.args())
    if bad == "means":
        args[0] = args[0][:, :2]
    elif bad == "quats":
        args[1] = args[1][:4]
    elif bad == "scales":
        args[2] = args[2][:, :2]
    elif bad == "opacities":
        args[3] = args[3][:3]
    elif bad == "colors":
        args[4] = args[4][:, :2]
    elif bad == "sh":
        kw["sh_degree"] = 2
        args[4] = torch.zeros(5, 4, 3)
    elif bad == "extra":
        kw["extra"] = torch.zeros(4, 1)
    with pytest.raises(ValueError):
        rasterize(*args, **kw)


def test_opacities_n_by_1_and_camera_checks():
    s = random_scene(1, 20, dtype=torch.float32)
    a = rasterize(*s.args())
    args = list(s.args())
    args[3] = args[3][:, None]
    b = rasterize(*args)
    assert torch.equal(a.rgb, b.rgb)
    with pytest.raises(ValueError):
        Camera(torch.eye(3), torch.eye(4), 0, 10)
    with pytest.raises(ValueError):
        Camera(torch.eye(3), torch.eye(3), 10, 10)
    with pytest.raises(ValueError):
        look_at([0, 0, 0], [0, 1, 0], up=[0, 1, 0])


def test_grad_and_no_grad_paths_agree_float32():
    s = random_scene(3, 300, sh_degree=3, extra=2, dtype=torch.float32)
    with torch.no_grad():
        a = rasterize(*s.args(), sh_degree=3, extra=s.extra)
    args = [t.clone().requires_grad_() for t in s.args()[:5]]
    b = rasterize(*args, s.camera, sh_degree=3, extra=s.extra)
    for x, y in ((a.rgb, b.rgb), (a.alpha, b.alpha), (a.extra, b.extra)):
        assert float((x - y.detach()).abs().max()) < 1e-4
    b.rgb.sum().backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in args)


# ----------------------------------------------------------------------------------------- CUDA only


def _close_except_threshold_flips(x, y, tol=1e-3, max_flips=3):
    """max |x - y| < tol, except at most ``max_flips`` pixels where one Gaussian sits exactly at the
    alpha = 1/255 cut-off (gsplat's float32 __expf vs our float64 exp can decide it differently;
    such a pixel differs by at most ~1/255 of a colour)."""
    err = (x.detach().cpu().double() - y.detach().cpu().double()).abs().reshape(x.shape[0], x.shape[1], -1).amax(-1)
    return int((err >= tol).sum()) <= max_flips and float(err.max()) < 1.5 / 255


@needs_cuda
@pytest.mark.parametrize("deg,extra,mode", [(None, 0, "classic"), (3, 2, "classic"), (1, 1, "antialiased")])
def test_gsplat_matches_cpu(deg, extra, mode):
    s = random_scene(4, 2000, 160, 120, deg, extra, spread=1.2, scale=(0.003, 0.05), dtype=torch.float32)
    cpu_out = rasterize(*s.args(), sh_degree=deg, extra=s.extra, backend="cpu", mode=mode)
    dev = torch.device("cuda")
    args = [t.to(dev) for t in s.args()[:5]]
    gpu = rasterize(*args, s.camera, sh_degree=deg, extra=None if s.extra is None else s.extra.to(dev),
                    backend="auto", mode=mode)
    assert gpu.rgb.device.type == "cuda" and gpu.rgb.shape == cpu_out.rgb.shape
    assert (cpu_out.alpha > 0.5).float().mean() > 0.2
    assert _close_except_threshold_flips(gpu.rgb, cpu_out.rgb)
    assert _close_except_threshold_flips(gpu.alpha, cpu_out.alpha)
    if extra:
        assert _close_except_threshold_flips(gpu.extra, cpu_out.extra)
    # expected depth is a ratio: compare where there is some coverage
    covered = (cpu_out.alpha > 0.05) & (gpu.alpha.cpu() > 0.05)
    assert _close_except_threshold_flips(gpu.depth.cpu()[covered][:, None, None], cpu_out.depth[covered][:, None, None])


@needs_cuda
def test_gsplat_gradients_close_to_cpu():
    s = random_scene(5, 300, 64, 48, 1, 1, scale=(0.01, 0.08), dtype=torch.float32)
    grads = []
    for dev in ("cpu", "cuda"):
        xs = [t.to(dev).requires_grad_() for t in s.args()[:5]] + [s.extra.to(dev).requires_grad_()]
        out = rasterize(*xs[:5], s.camera, sh_degree=1, extra=xs[5], backend="cpu" if dev == "cpu" else "gsplat")
        loss = out.rgb.sum() + out.alpha.sum() + (out.depth * out.alpha.detach()).sum() + out.extra.sum()
        loss.backward()
        grads.append([x.grad.cpu() for x in xs])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-2, atol=1e-2 * float(a.abs().max()))
