"""Compute device selection: "auto" picks CUDA when present, else the CPU; CPU fallback on CUDA OOM."""
from __future__ import annotations

from typing import Callable, TypeVar

import torch

from .errors import InputError

DEVICE_CHOICES = ("auto", "cpu", "cuda")
T = TypeVar("T")


def resolve_device(name: str = "auto") -> torch.device:
    """torch.device for "auto" | "cpu" | "cuda"; InputError if CUDA is asked for but absent."""
    if name not in DEVICE_CHOICES:
        raise InputError(f"device must be one of {', '.join(DEVICE_CHOICES)}, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for, but no CUDA GPU is available to PyTorch")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def is_out_of_memory(exc: BaseException) -> bool:
    """True for a CUDA out-of-memory error (torch's class, or an older RuntimeError text)."""
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and "CUDA out of memory" in str(exc)


def run_with_fallback(run: Callable[[torch.device], T], device: torch.device,
                      warnings: list[str] | None = None, what: str = "this step") -> tuple[T, torch.device]:
    """``run(device)``; on CUDA out-of-memory, free the cache and ``run(cpu)`` instead.

    Returns (result, the device that produced it); a message for the artist is appended
    to ``warnings`` when it fell back. Other errors pass through unchanged.
    """
    try:
        return run(device), device
    except Exception as exc:  # noqa: BLE001 - filtered just below
        if device.type != "cuda" or not is_out_of_memory(exc):
            raise
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    cpu = torch.device("cpu")
    if warnings is not None:
        warnings.append(f"the GPU ran out of memory during {what}; it was done on the CPU instead (slower, same result)")
    return run(cpu), cpu
