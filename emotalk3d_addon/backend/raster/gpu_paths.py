"""Which GPU rasteriser this process draws with: a self-check on first use, a fallback on any failure.

On CUDA tensors ``rasterize(backend="auto")`` tries the GPU paths in ``GPU_PATHS`` order: gsplat
(where its kernels build: it needs a CUDA toolkit and a C++ compiler), then the toolkit-free Triton
rasteriser. Before a path draws its first frame in a process, it draws a small probe scene
(``probe_scene``) that is compared with the CPU rasteriser (``api.self_check``); a path that cannot be imported, fails to
compile, runs out of memory or draws wrong pixels is set aside for the rest of the process, and
the frame goes to the next path and, last, to the CPU rasteriser. It is still rendered.

What happened is said once per process (``take_notice``): why a path was set aside and what to
do about it, not once per frame.
"""
from __future__ import annotations

import threading
from typing import Callable
from dataclasses import dataclass, field

import torch

GPU_PATHS = ("gsplat", "triton")
PROBE_TOLERANCE = 1.0 / 255.0   # colour, alpha and extra channels: the largest difference a path may show
PROBE_SIZE = (64, 48)

_HINTS = {
    "gsplat": "gsplat builds its kernels with a CUDA toolkit (nvcc) and a C++ compiler; without them the "
              "built-in GPU rasteriser draws instead, at similar speed",
    "triton": "the built-in GPU rasteriser needs a C compiler for Triton's small launcher on first use "
              "(Linux: install gcc, e.g. `sudo apt install gcc`; Windows: the triton-windows package brings one); "
              "run `emotalk3d gpu-check` for details",
}


@dataclass
class PathState:
    """One GPU path's standing in this process: ``ok`` None until checked."""

    ok: bool | None = None
    why: str = ""
    max_error: float | None = None


@dataclass
class GpuPaths:
    """The self-checked GPU paths of one process (``CHOICE`` below is the process's)."""

    states: dict[str, PathState] = field(default_factory=lambda: {n: PathState() for n in GPU_PATHS})
    notice: str = ""
    noticed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def usable(self, device: torch.device, check: Callable[[str, torch.device], float]) -> list[str]:
        """The GPU paths to try for ``device``, in order, each self-checked on first use by ``check``
        (``api.self_check``: the probe's largest difference from the CPU rasteriser)."""
        names = []
        for name in GPU_PATHS:
            state = self.states[name]
            if state.ok is None:
                with self.lock:
                    if state.ok is None:
                        self._check(name, device, check)
            if state.ok:
                names.append(name)
        return names

    def set_aside(self, name: str, exc: BaseException) -> None:
        """A path that failed on a real frame: never used again in this process."""
        state = self.states[name]
        state.ok, state.why = False, _describe(exc)
        self._tell()

    def take_notice(self) -> str | None:
        """The message for the artist, once per process (None when there is nothing new to say)."""
        if self.noticed or not self.notice:
            return None
        self.noticed = True
        return self.notice

    def _check(self, name: str, device: torch.device, check: Callable[[str, torch.device], float]) -> None:
        state = self.states[name]
        try:
            state.max_error = check(name, device)
        except Exception as exc:  # noqa: BLE001 - any failure sets the path aside; the reason is reported
            state.ok, state.why = False, _describe(exc)
        else:
            good = state.max_error <= PROBE_TOLERANCE
            state.ok = good
            state.why = "" if good else (f"its probe render differs from the CPU rasteriser by "
                                         f"{state.max_error * 255:.1f}/255 (wrong pixels)")
        self._tell()

    def _tell(self) -> None:
        failed = [(n, s) for n, s in self.states.items() if s.ok is False and not _quiet(s)]
        if not failed:
            return
        working = next((n for n, s in self.states.items() if s.ok), None)
        using = f"rendering with {_LABEL[working]}" if working else "rendering on the CPU (slower, same pixels)"
        reasons = "; ".join(f"{_LABEL[n]} could not be used: {s.why} ({_HINTS[n]})" for n, s in failed)
        self.notice = f"GPU rasteriser: {using}. {reasons}"
        self.noticed = False


_LABEL = {"gsplat": "gsplat", "triton": "the built-in GPU rasteriser (Triton)", None: "the CPU"}


def _quiet(state: PathState) -> bool:
    """Not worth a message: a path that is simply not installed (gsplat on Windows, say)."""
    return "not installed" in state.why


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ModuleNotFoundError):
        return f"not installed ({exc.name})"
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return "the GPU ran out of memory"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def probe_scene(device: torch.device, n: int = 400, seed: int = 7):
    """A small fixed scene for the self-check: (means, quats, scales, opacities, sh (N, 4, 3), extra (N, 1), camera)
    with Gaussians of many sizes, overlapping, some off-screen, SH degree 1."""
    from .camera import Camera, intrinsics, look_at

    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g) * torch.tensor([0.5, 0.4, 0.3]) + torch.tensor([0.0, 0.0, 2.0])
    quats = torch.randn(n, 4, generator=g)
    scales = torch.rand(n, 3, generator=g) * 0.08 + 0.003
    opacities = torch.rand(n, generator=g) * 0.9 + 0.05
    sh = torch.randn(n, 4, 3, generator=g) * 0.3
    extra = torch.rand(n, 1, generator=g)
    w, h = PROBE_SIZE
    camera = Camera(intrinsics(w, h, 50.0), look_at([0.05, -0.05, 0.0], [0.0, 0.0, 2.0]), w, h)
    tensors = tuple(t.to(device) for t in (means, quats, scales, opacities, sh, extra))
    return (*tensors, camera.to(device))


CHOICE = GpuPaths()
