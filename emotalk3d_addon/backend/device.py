"""Compute device selection, and the fallback to the CPU when a GPU cannot do a step.

Three resolvers, one per kind of work, all taking "auto" | "cpu" | "cuda" | "mps" (a
``torch.device`` or "cuda:N" is taken as it is named):

* ``resolve_device``: training and rendering. "auto" is CUDA when PyTorch sees a CUDA GPU,
  else the CPU; never Apple's MPS unless it is named.
* ``compute_device``: the speech side (speech encoder, emotion extractor, S2GNet). "auto" is
  CUDA, else MPS (an Apple Silicon GPU), else the CPU.
* ``render_device``: the rasteriser. CUDA or the CPU, never MPS: the rasteriser has a CUDA
  backend and a CPU one, so on a Mac the speech side runs on the GPU while frames are drawn
  on the CPU.

Naming a GPU that PyTorch does not see is an ``InputError`` with the reason.
"""
from __future__ import annotations

from typing import Callable, TypeVar

import torch

from .errors import InputError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
T = TypeVar("T")
CPU = torch.device("cpu")


def cuda_available() -> bool:
    return bool(torch.cuda.is_available())


def mps_available() -> bool:
    """True where PyTorch can use an Apple Silicon GPU (Metal Performance Shaders)."""
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def _named(name: str | torch.device) -> torch.device | None:
    """The device ``name`` asks for (None for "auto"), checked against what PyTorch sees."""
    if isinstance(name, torch.device):
        device = name
    else:
        if not isinstance(name, str) or name.split(":", 1)[0] not in DEVICE_CHOICES:
            raise InputError(f"device must be one of {', '.join(DEVICE_CHOICES)}, got {name!r}")
        if name == "auto":
            return None
        try:
            device = torch.device(name)
        except RuntimeError:
            raise InputError(f"device must be one of {', '.join(DEVICE_CHOICES)}, got {name!r}") from None
    if device.type == "cuda":
        if not cuda_available():
            raise InputError("--device cuda was asked for, but no CUDA GPU is available to PyTorch")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(f"--device {device} was asked for, but PyTorch sees "
                             f"{torch.cuda.device_count()} CUDA GPU(s)")
    elif device.type == "mps":
        if not mps_available():
            raise InputError("--device mps was asked for, but no Apple Silicon GPU (MPS) is available to PyTorch")
    elif device.type != "cpu":
        raise InputError(f"device must be one of {', '.join(DEVICE_CHOICES)}, got {str(device)!r}")
    return device


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """Training and rendering: "auto" -> CUDA if present, else the CPU; a named device as named
    (InputError if PyTorch does not see it)."""
    device = _named(name)
    if device is None:
        return torch.device("cuda") if cuda_available() else CPU
    return device


def compute_device(name: str | torch.device = "auto") -> torch.device:
    """The speech side (encoder, emotion extractor, S2GNet): "auto" -> CUDA, else MPS, else
    the CPU; a named device as named."""
    device = _named(name)
    if device is None:
        if cuda_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_available() else CPU
    return device


def render_device(name: str | torch.device = "auto") -> torch.device:
    """The rasteriser: CUDA or the CPU, never MPS ("mps" draws on the CPU: the rasteriser has
    no Metal backend). A ``torch.device`` is only mapped, not checked again."""
    device = name if isinstance(name, torch.device) else resolve_device(name)
    return CPU if device.type == "mps" else device


def is_out_of_memory(exc: BaseException) -> bool:
    """True for a CUDA out-of-memory error (torch's class, or an older RuntimeError text)."""
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and "CUDA out of memory" in str(exc)


def is_mps_failure(exc: BaseException) -> bool:
    """True for an error of the MPS backend: out of memory ("MPS backend out of memory"), an
    operator it does not implement (NotImplementedError), a dtype it does not support."""
    return isinstance(exc, (RuntimeError, NotImplementedError, TypeError)) and "MPS" in str(exc)


def _empty_cache(device: torch.device) -> None:
    if device.type == "cuda" and cuda_available():
        torch.cuda.empty_cache()
    elif device.type == "mps" and mps_available():
        torch.mps.empty_cache()


def run_with_fallback(run: Callable[[torch.device], T], device: torch.device,
                      warnings: list[str] | None = None, what: str = "this step") -> tuple[T, torch.device]:
    """``run(device)``; on CUDA out-of-memory (or any MPS failure: out of memory, an operator
    Metal lacks), free the cache and ``run(cpu)`` instead.

    Returns (result, the device that produced it); a message for the artist is appended
    to ``warnings`` when it fell back. Other errors pass through unchanged.
    """
    try:
        return run(device), device
    except Exception as exc:  # noqa: BLE001 - filtered just below
        if device.type == "cuda" and is_out_of_memory(exc):
            message = f"the GPU ran out of memory during {what}"
        elif device.type == "mps" and is_mps_failure(exc):
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            message = f"the Apple GPU (MPS) could not do {what} ({reason})"
        else:
            raise
    _empty_cache(device)
    if warnings is not None:
        warnings.append(f"{message}; it was done on the CPU instead (slower, same result)")
    return run(CPU), CPU
