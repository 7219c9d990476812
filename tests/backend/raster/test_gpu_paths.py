"""The GPU paths' self-check and fallback: which path draws, what the artist is told, and how often."""
from __future__ import annotations

import pytest
import torch

from emotalk3d_addon.backend.raster import api, gpu_paths, rasterize
from emotalk3d_addon.backend.raster.gpu_paths import GpuPaths

from .scenes import random_scene

CUDA = torch.device("cuda")


def _paths(monkeypatch, outcomes: dict) -> GpuPaths:
    """A fresh GpuPaths whose self-check gives ``outcomes[name]``: an error to raise, or the probe's max error."""
    calls = []

    def check(name, device):
        calls.append(name)
        result = outcomes[name]
        if isinstance(result, BaseException):
            raise result
        return result

    paths = GpuPaths()
    paths.calls = calls
    paths.check = check
    return paths


def test_a_gsplat_that_cannot_build_gives_way_to_triton_with_one_notice(monkeypatch):
    paths = _paths(monkeypatch, {"gsplat": RuntimeError("gsplat's CUDA kernels failed to build or load"),
                                 "triton": 1e-6})
    assert paths.usable(CUDA, paths.check) == ["triton"]
    assert paths.usable(CUDA, paths.check) == ["triton"] and paths.calls == ["gsplat", "triton"]   # checked once per process
    notice = paths.take_notice()
    assert notice.startswith("GPU rasteriser: rendering with the built-in GPU rasteriser (Triton)")
    assert "gsplat could not be used: RuntimeError: gsplat's CUDA kernels failed to build" in notice
    assert "CUDA toolkit" in notice
    assert paths.take_notice() is None


def test_a_path_that_is_simply_not_installed_is_not_worth_a_message(monkeypatch):
    paths = _paths(monkeypatch, {"gsplat": ModuleNotFoundError("No module named 'gsplat'", name="gsplat"),
                                 "triton": 0.0})
    assert paths.usable(CUDA, paths.check) == ["triton"]
    assert paths.states["gsplat"].why == "not installed (gsplat)"
    assert paths.take_notice() is None


def test_wrong_pixels_and_a_missing_compiler_leave_the_cpu_and_say_what_to_do(monkeypatch):
    paths = _paths(monkeypatch, {"gsplat": 3.0 / 255.0,
                                 "triton": RuntimeError("Failed to find C compiler. Please specify via CC")})
    assert paths.usable(CUDA, paths.check) == []
    notice = paths.take_notice()
    assert "rendering on the CPU" in notice
    assert "differs from the CPU rasteriser by 3.0/255 (wrong pixels)" in notice
    assert "Failed to find C compiler" in notice and "sudo apt install gcc" in notice
    assert paths.take_notice() is None


def test_a_path_that_fails_on_a_real_frame_is_set_aside_and_said_once_more(monkeypatch):
    paths = _paths(monkeypatch, {"gsplat": 0.0, "triton": 0.0})
    assert paths.usable(CUDA, paths.check) == ["gsplat", "triton"] and paths.take_notice() is None
    paths.set_aside("gsplat", torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert paths.usable(CUDA, paths.check) == ["triton"]
    notice = paths.take_notice()
    assert "gsplat could not be used: the GPU ran out of memory" in notice and "Triton" in notice
    assert paths.take_notice() is None


def test_rasterize_auto_falls_back_to_the_cpu_and_still_draws_the_frame(monkeypatch):
    paths = _paths(monkeypatch, {"gsplat": ModuleNotFoundError("gsplat", name="gsplat"), "triton": 0.0})
    monkeypatch.setattr(gpu_paths, "CHOICE", paths)
    # CPU tensors stand in for CUDA ones: auto picks the first usable GPU path, which then fails mid-frame
    monkeypatch.setattr(api, "resolve_backend",
                        lambda backend, means: (paths.usable(CUDA, paths.check) or ["cpu"])[0] if backend == "auto" else backend)
    drawn = []

    def failing(which, *args):
        drawn.append(which)
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(api, "_draw_gpu", failing)
    s = random_scene(8, 40, width=24, height=20, dtype=torch.float32)
    out = rasterize(*s.args(), backend="auto")
    want = rasterize(*s.args(), backend="cpu")
    assert drawn == ["triton"]
    assert torch.equal(out.rgb, want.rgb) and torch.equal(out.alpha, want.alpha) and float(out.alpha.max()) > 0.5
    assert "illegal memory access" in paths.take_notice()
    with pytest.raises(RuntimeError, match="illegal memory access"):    # an explicit backend never falls back
        rasterize(*s.args(), backend="triton")


def test_gpu_check_reports_every_rasteriser_on_a_machine_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("reports this machine's GPU instead")
    from emotalk3d_addon.backend.tools.gpu_check import gpu_check

    report = gpu_check()
    assert report["cuda_available"] is False
    assert set(report["rasterisers"]) == {"cpu", "gsplat", "triton"}
    assert report["rasterisers"]["cpu"] == {"ok": True, "why": ""}
    for name in ("gsplat", "triton"):
        entry = report["rasterisers"][name]
        assert entry["ok"] is False and "no CUDA GPU is visible to PyTorch" in entry["why"]
