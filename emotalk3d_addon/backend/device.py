"""Compute device selection: "auto" picks CUDA when present, else the CPU."""
from __future__ import annotations

import torch

from .errors import InputError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """torch.device for "auto" | "cpu" | "cuda"; InputError if CUDA is asked for but absent."""
    if name not in DEVICE_CHOICES:
        raise InputError(f"device must be one of {', '.join(DEVICE_CHOICES)}, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for, but no CUDA GPU is available to PyTorch")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
