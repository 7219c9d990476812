"""GPU rasterisers on a CUDA device: frame rate at 512x512 and 1920x1080, forward+backward time, and
parity with the CPU rasteriser (goals: toolkit-free Triton path >= 300 fps at 1080p on the demo head,
within 1.5x of gsplat's time where gsplat builds, parity within 1/255).

Scenes: the demo subject's head (front view, its trained raster mode, G2ANet evaluated once outside
the timing) and bench_raster's synthetic 110,500-Gaussian head (SH degree 3, one extra channel).
Every GPU path in ``raster.gpu_paths.GPU_PATHS`` that draws here is measured; one that cannot is
reported with its reason. Without CUDA it says so and exits 0.

    python bench/bench_gpu_raster.py [--frames 100] [--sizes 512x512,1920x1080]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_raster import head_scene  # noqa: E402
from emotalk3d_addon.backend.raster import Camera, intrinsics, look_at, rasterize  # noqa: E402
from emotalk3d_addon.backend.raster.gpu_paths import GPU_PATHS  # noqa: E402


def demo_scene():
    """(means, quats, scales, opacities, sh, extra, sh_degree, mode, view defaults) of the demo head, CPU."""
    from emotalk3d_addon.backend.emotions import EMOTIONS
    from emotalk3d_addon.backend.render.frame import emotion_input
    from emotalk3d_addon.backend.subject import load_subject, resolve_subject

    subject = load_subject(resolve_subject("demo"))
    head = subject.appearance
    weights = np.zeros(len(EMOTIONS), np.float32)
    weights[EMOTIONS.index("happy")] = 1.0
    with torch.no_grad():
        frame = head.frame(torch.from_numpy(np.asarray(subject.geometry.template, np.float32)),
                           emotion_input(weights, 1.0))
    k = (frame.sh_degree + 1) ** 2
    return ((frame.means, frame.quats, frame.scales, frame.opacities, frame.sh[:, :k], frame.matte[:, None]),
            frame.sh_degree, head.raster_mode, dict(subject.manifest["appearance"]["view"]))


def cameras(kind: str, view: dict | None, width: int, height: int) -> Camera:
    if kind == "demo":
        from emotalk3d_addon.backend.render.views import orbit_camera

        return orbit_camera(view, "front", width, height)
    return Camera(intrinsics(width, height, 30.0), look_at([0.0, -0.02, 0.6], [0.0, 0.0, 0.0]), width, height)


def measure(tensors, sh_degree, mode, cam, backend, frames):
    """(fps forward, ms forward+backward, max |difference| from the CPU rasteriser)."""
    dev = torch.device("cuda")
    g = [t.to(dev) for t in tensors]
    cam_d = cam.to(dev)
    kw = dict(sh_degree=sh_degree, backend=backend, mode=mode)
    with torch.no_grad():
        out = rasterize(*g[:5], cam_d, extra=g[5], **kw)           # first use: compiles
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(frames):
            rasterize(*g[:5], cam_d, extra=g[5], **kw)
        torch.cuda.synchronize()
        fps = frames / (time.perf_counter() - t)
    leaves = [x.clone().requires_grad_(True) for x in g]
    best = float("inf")
    for _ in range(5):
        torch.cuda.synchronize()
        t = time.perf_counter()
        o = rasterize(*leaves[:5], cam_d, extra=leaves[5], **kw)
        (o.rgb.sum() + o.alpha.sum() + o.extra.sum()).backward()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    with torch.no_grad():
        ref = rasterize(*tensors[:5], cam, extra=tensors[5], sh_degree=sh_degree, backend="cpu", mode=mode)
    err = max(float((a.float().cpu() - b.float()).abs().max()) for a, b in
              ((out.rgb, ref.rgb), (out.alpha, ref.alpha), (out.extra, ref.extra)))
    return fps, best * 1000.0, err


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--sizes", default="512x512,1920x1080")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_gpu_raster: no CUDA device, skipped")
        return 0
    print(f"GPU rasterisers on {torch.cuda.get_device_name()} (torch {torch.__version__}, CUDA {torch.version.cuda})")
    demo, demo_deg, demo_mode, view = demo_scene()
    synth = head_scene(110_500, 3, 1)
    scenes = [("demo head", "demo", demo, demo_deg, demo_mode), ("110k synthetic head", "synth", synth, 3, "classic")]
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    print("| scene | Gaussians | size | rasteriser | forward fps | forward+backward ms | max abs diff vs CPU (x255) |")
    print("|---|---|---|---|---|---|---|")
    times: dict = {}
    for label, kind, tensors, deg, mode in scenes:
        for w, h in sizes:
            cam = cameras(kind, view, w, h)
            for backend in GPU_PATHS:
                try:
                    fps, ms, err = measure(tensors, deg, mode, cam, backend, args.frames)
                except Exception as exc:  # noqa: BLE001 - a path that cannot run here is reported
                    print(f"| {label} | {tensors[0].shape[0]:,} | {w}x{h} | {backend} | - | - | "
                          f"cannot run: {type(exc).__name__}: {' '.join(str(exc).split())[:120]} |")
                    continue
                times[(label, w, h, backend)] = 1.0 / fps
                print(f"| {label} | {tensors[0].shape[0]:,} | {w}x{h} | {backend} | {fps:.0f} | {ms:.1f} | "
                      f"{err * 255:.3f} |")
    for (label, w, h, backend), t in times.items():
        if backend == "triton" and (label, w, h, "gsplat") in times:
            print(f"triton / gsplat frame time, {label} {w}x{h}: {t / times[(label, w, h, 'gsplat')]:.2f} (goal <= 1.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
