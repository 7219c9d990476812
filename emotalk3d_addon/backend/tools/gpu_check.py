"""``emotalk3d gpu-check``: what this machine's PyTorch sees, and which rasterisers run here and why not.

For support: torch's build (its CUDA version, or CPU) and devices; for each rasteriser (``cpu``,
``gsplat``, ``triton``) whether it draws the self-check's probe scene here, and if not, why
(``raster.gpu_paths``). ``--emulate`` also runs the toolkit-free Triton kernels in Triton's
interpreter on the CPU (a child process: the interpreter is chosen when triton is imported) on
the demo head, and reports the largest difference from the CPU rasteriser.

JSON (``--json``): ``cuda_available`` (bool), ``torch`` / ``torch_cuda`` / ``devices``,
``rasterisers``: ``{name: {"ok": bool, "why": str}}``, and with ``--emulate``
``emulated_parity``: ``{"max_abs_error": float, "size": [w, h]}``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import torch

EMULATE_SIZE = (64, 64)


def torch_build() -> dict:
    """torch's version, its CUDA build (or "cpu"), the CUDA devices it sees, and MPS."""
    cuda = torch.cuda.is_available()
    devices = []
    if cuda:
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            devices.append({"index": i, "name": p.name, "capability": f"{p.major}.{p.minor}",
                            "memory_gb": round(p.total_memory / 2**30, 1)})
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    return {"torch": torch.__version__, "torch_cuda": torch.version.cuda or "cpu", "cuda_available": cuda,
            "devices": devices, "mps_available": mps}


def _module_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def rasterisers(cuda: bool) -> dict:
    """{name: {"ok", "why", ...}} for cpu and every GPU path (self-checked on CUDA device 0)."""
    from ..raster import gpu_paths, rasterize
    from ..raster.api import self_check

    out: dict[str, dict] = {}
    try:   # the CPU rasteriser is the others' yardstick: here it only has to draw the probe scene
        means, quats, scales, opacities, sh, extra, camera = gpu_paths.probe_scene(torch.device("cpu"))
        drawn = rasterize(means, quats, scales, opacities, sh, camera, sh_degree=1, extra=extra, backend="cpu")
        covered = bool(torch.isfinite(drawn.rgb).all()) and float(drawn.alpha.max()) > 0.5
        out["cpu"] = {"ok": covered, "why": "" if covered else "its probe render came out empty or not finite"}
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        out["cpu"] = {"ok": False, "why": f"{type(exc).__name__}: {exc}"}
    versions = {"gsplat": _module_version("gsplat"), "triton": _module_version("triton") or
                _module_version("triton-windows")}
    if cuda:
        gpu_paths.CHOICE.usable(torch.device("cuda", 0), self_check)
    for name in gpu_paths.GPU_PATHS:
        if cuda:
            state = gpu_paths.CHOICE.states[name]
            entry = {"ok": bool(state.ok), "why": state.why, "max_error": state.max_error}
        elif versions[name] is None:
            entry = {"ok": False, "why": f"not installed, and no CUDA GPU is visible to PyTorch"}
        else:
            entry = {"ok": False, "why": f"no CUDA GPU is visible to PyTorch (torch build: "
                                         f"{'CUDA ' + torch.version.cuda if torch.version.cuda else 'CPU only'})"}
        entry["version"] = versions[name]
        out[name] = entry
    return out


def emulated_parity(width: int = EMULATE_SIZE[0], height: int = EMULATE_SIZE[1], timeout: float = 1800.0) -> dict:
    """The Triton kernels under the interpreter against the CPU rasteriser on the demo head (a child process)."""
    env = dict(os.environ, TRITON_INTERPRET="1")
    cmd = [sys.executable, "-m", "emotalk3d_addon.backend.tools.gpu_check", "--emulate-child", str(width), str(height)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        tail = " ".join(done.stderr.strip().splitlines()[-3:])
        return {"max_abs_error": None, "size": [width, height], "error": tail or f"exit code {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _emulate_child(width: int, height: int) -> dict:
    """In a process with TRITON_INTERPRET=1: the demo head, front view, by both rasterisers."""
    import numpy as np

    from ..emotions import EMOTIONS
    from ..render.frame import emotion_input, render_head
    from ..render.views import orbit_camera
    from ..subject import load_subject, resolve_subject

    subject = load_subject(resolve_subject("demo"))
    head = subject.appearance
    camera = orbit_camera(dict(subject.manifest["appearance"]["view"]), "front", width, height)
    vertices = torch.from_numpy(np.asarray(subject.geometry.template, np.float32))
    weights = np.zeros(len(EMOTIONS), np.float32)
    weights[EMOTIONS.index("happy")] = 1.0
    emotion = emotion_input(weights, 1.0)
    worst = 0.0
    clock = time.perf_counter()
    with torch.inference_mode():
        tri = render_head(head, vertices, emotion, camera, backend="triton")
        seconds = time.perf_counter() - clock
        cpu = render_head(head, vertices, emotion, camera, backend="cpu")
    for a, b in ((tri.rgb, cpu.rgb), (tri.alpha, cpu.alpha), (tri.extra, cpu.extra)):
        worst = max(worst, float((a.float() - b.float()).abs().max()))
    return {"max_abs_error": worst, "size": [width, height], "coverage": float(cpu.alpha.mean()),
            "gaussians": int(head.canonical.num), "seconds": round(seconds, 2)}


def gpu_check(emulate: bool = False) -> dict:
    report = torch_build()
    report["rasterisers"] = rasterisers(report["cuda_available"])
    if emulate:
        report["emulated_parity"] = emulated_parity()
    return report


def print_report(report: dict) -> None:
    devices = ", ".join(f"{d['name']} (sm {d['capability']}, {d['memory_gb']} GB)" for d in report["devices"]) \
        or "none"
    print(f"torch {report['torch']} (CUDA build: {report['torch_cuda']}); CUDA devices: {devices}; "
          f"Apple MPS: {'yes' if report['mps_available'] else 'no'}")
    for name, entry in report["rasterisers"].items():
        version = f" {entry['version']}" if entry.get("version") else ""
        state = "runs here" if entry["ok"] else f"does not run here: {entry['why']}"
        print(f"  {name}{version}: {state}")
    parity = report.get("emulated_parity")
    if parity:
        if parity.get("max_abs_error") is None:
            print(f"  emulated Triton kernels: failed: {parity.get('error')}")
        else:
            w, h = parity["size"]
            print(f"  emulated Triton kernels vs CPU on the demo head at {w}x{h}: "
                  f"max |difference| {parity['max_abs_error']:.2e} ({parity['max_abs_error'] * 255:.4f}/255)")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--emulate-child"]:
        print(json.dumps(_emulate_child(int(argv[1]), int(argv[2]))))
        return 0
    raise SystemExit("usage: emotalk3d gpu-check [--json] [--emulate]")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
