"""Preferences show Install Backend's plan for this machine before it runs."""
from __future__ import annotations

import pytest

from .conftest import bpy
from .test_panels import RecordingLayout


def _labels(monkeypatch, platform: str, nvidia: bool, device: str) -> list[str]:
    from emotalk3d_addon.bridge import install_plan

    monkeypatch.setattr(install_plan, "current_platform", lambda: platform)
    monkeypatch.setattr(install_plan, "nvidia_driver_present", lambda: nvidia)
    prefs = bpy.context.preferences.addons["emotalk3d_addon"].preferences
    prefs.device = device

    class Proxy:
        def __init__(self, log):
            self.layout = RecordingLayout(log)

        def __getattr__(self, name):
            return getattr(prefs, name)

    log: list = []
    type(prefs).draw(Proxy(log), bpy.context)
    prefs.device = "cpu"
    return [text for kind, text in log if kind == "label"]


@pytest.mark.parametrize("platform", ["linux_x86_64", "win_amd64"])
def test_preferences_show_the_cuda_plan_with_its_size(scene, monkeypatch, platform):
    labels = _labels(monkeypatch, platform, True, "auto")
    plan = [t for t in labels if t.startswith("Install Backend downloads")]
    assert plan == [f"Install Backend downloads PyTorch with CUDA 12.8 for your NVIDIA GPU, about "
                    f"{'3.3' if platform == 'linux_x86_64' else '3.2'} GB"]


def test_preferences_show_the_cpu_plan_and_why(scene, monkeypatch):
    labels = _labels(monkeypatch, "linux_x86_64", True, "cpu")
    assert "Install Backend downloads PyTorch for the CPU, about 500 MB" in labels
    labels = _labels(monkeypatch, "win_amd64", False, "cuda")
    assert any("PyTorch for the CPU" in t for t in labels)
    assert "Device is CUDA but no NVIDIA driver was found: installing the CPU build" in labels


def test_preferences_say_when_the_machine_is_not_supported(scene, monkeypatch):
    labels = _labels(monkeypatch, "macos_x86_64", False, "auto")
    assert any(t.startswith("Intel Macs are not supported") for t in labels)
    assert not any(t.startswith("Install Backend downloads") for t in labels)
