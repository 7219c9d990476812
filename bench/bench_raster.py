"""Gaussian-splatting rasteriser on a head-sized scene (goals: CPU forward <= 0.5 s, gsplat >= 300 fps).

Scene: ~110k Gaussians in a ~0.25 m head: 25k on an ellipsoid "face" shell, the rest spread in a
volume around it; scales 1-3 mm, opacities 0.3-0.9, SH degree 3; camera 0.6 m away, 512x512,
30 degree field of view. Prints the CPU forward time (best after warm-up), forward+backward,
the Gaussian-pixel pairs evaluated and their rate, the projection / binning / compositing split,
and gsplat's frame rate when CUDA is available.

    python bench/bench_raster.py [--gaussians 110500] [--size 512] [--sh-degree 3] [--extra 0]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emotalk3d_addon.backend.raster import Camera, ForwardStats, intrinsics, look_at, rasterize  # noqa: E402
from emotalk3d_addon.backend.raster import cpu as raster_cpu  # noqa: E402
from emotalk3d_addon.backend.raster import cpu_binning  # noqa: E402
from emotalk3d_addon.backend.raster.cpu_projection import project_features  # noqa: E402
from emotalk3d_addon.backend.raster.projection import project  # noqa: E402


def head_scene(n: int = 110_500, sh_degree: int = 3, extra: int = 0, seed: int = 0):
    """(means, quats, scales, opacities, colors, extra) of a synthetic head, float32 CPU tensors."""
    rng = np.random.default_rng(seed)
    radii = np.array([0.080, 0.110, 0.095])            # ellipsoid half-axes: ~0.22 m tall, 0.16 m wide
    n_shell = min(n, 25_000)
    n_vol = n - n_shell
    d = rng.standard_normal((n_shell, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    shell = d * radii * (1.0 + 0.01 * rng.standard_normal((n_shell, 1)))
    d = rng.standard_normal((n_vol, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    r = rng.uniform(0.85, 1.25, (n_vol, 1)) ** (1 / 3) * rng.uniform(0.9, 1.0, (n_vol, 1))
    vol = d * radii * r
    means = np.concatenate([shell, vol]).astype(np.float32)
    scales = np.exp(rng.uniform(np.log(1e-3), np.log(3e-3), (n, 3))).astype(np.float32)
    scales[:n_shell, 2] *= 0.3                           # flat splats on the surface
    quats = rng.standard_normal((n, 4)).astype(np.float32)
    opac = rng.uniform(0.3, 0.9, n).astype(np.float32)
    k = (sh_degree + 1) ** 2
    sh = (rng.standard_normal((n, k, 3)) * 0.1).astype(np.float32)
    sh[:, 0] = (rng.uniform(0.2, 0.8, (n, 3)) - 0.5) / 0.28209479177387814
    ext = rng.random((n, extra)).astype(np.float32) if extra else None
    t = torch.from_numpy
    return t(means), t(quats), t(scales), t(opac), t(sh), (t(ext) if ext is not None else None)


def camera(size: int) -> Camera:
    return Camera(intrinsics(size, size, 30.0), look_at([0.0, -0.02, 0.6], [0.0, 0.0, 0.0]),
                  size, size)


def best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gaussians", type=int, default=110_500)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--sh-degree", type=int, default=3)
    ap.add_argument("--extra", type=int, default=0, help="extra channels per Gaussian (e.g. 1 for a face matte)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="numba and torch threads (default: all cores)")
    args = ap.parse_args(argv)
    if args.threads:
        raster_cpu.set_threads(args.threads)
        torch.set_num_threads(args.threads)

    m, q, s, o, c, e = head_scene(args.gaussians, args.sh_degree, args.extra)
    cam = camera(args.size)
    kw = dict(sh_degree=args.sh_degree, extra=e, backend="cpu")
    print(f"{args.gaussians} Gaussians, {args.size}x{args.size}, SH degree {args.sh_degree}, extra {args.extra}, "
          f"torch threads {torch.get_num_threads()}, numba threads {raster_cpu.numba.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (wall times below are best of "
          f"{args.repeats}; other processes slow them down)")

    stats = ForwardStats()
    with torch.no_grad():
        out = rasterize(m, q, s, o, c, cam, stats=stats, **kw)        # warm-up (numba cache load)
        t_fwd = best_of(lambda: rasterize(m, q, s, o, c, cam, **kw), args.repeats)
        # split: projection (numba when no grad is needed; torch autograd when training) / binning / compositing
        p, feats = project_features(m, q, s, o, c, cam, args.sh_degree, e)
        t_proj = best_of(lambda: project_features(m, q, s, o, c, cam, args.sh_degree, e), args.repeats)
        t_proj_torch = best_of(lambda: project(m, q, s, o, c, cam, args.sh_degree), args.repeats)
        bins = cpu_binning.bin_gaussians(p.means2d, p.conics, o, p.depths, p.visible, cam.width, cam.height)
        t_bin = best_of(lambda: cpu_binning.bin_gaussians(p.means2d, p.conics, o, p.depths, p.visible,
                                                         cam.width, cam.height), args.repeats)
        t_comp = best_of(lambda: raster_cpu.composite(p.means2d, p.conics, feats, o, bins), args.repeats)

    params = [t.clone().requires_grad_() for t in (m, q, s, o, c) + ((e,) if e is not None else ())]

    def fwd_bwd():
        r = rasterize(*params[:5], cam, sh_degree=args.sh_degree, extra=params[5] if e is not None else None,
                      backend="cpu")
        loss = r.rgb.sum() + r.alpha.sum() + 0.1 * r.depth.sum() + (r.extra.sum() if r.extra is not None else 0)
        loss.backward()

    fwd_bwd()
    t_fb = best_of(fwd_bwd, max(2, args.repeats // 2))

    visible = int(p.visible.sum())
    coverage = float((out.alpha > 0.5).float().mean())
    res = {"forward_s": t_fwd, "forward_backward_s": t_fb, "projection_s": t_proj,
           "projection_torch_s": t_proj_torch, "binning_s": t_bin,
           "compositing_s": t_comp, "pairs_evaluated": stats.pairs_evaluated, "pairs_binned": stats.pairs_binned}
    print(f"visible {visible}, tile-Gaussian pairs {stats.pairs_binned:,}, pixels with alpha > 0.5: {coverage:.1%}")
    print(f"CPU forward {t_fwd * 1000:.1f} ms (goal <= 500 ms) | forward+backward {t_fb * 1000:.1f} ms")
    print(f"  projection+SH (numba) {t_proj * 1000:.1f} ms [torch autograd version, used when training: "
          f"{t_proj_torch * 1000:.1f} ms] | binning (numba) {t_bin * 1000:.1f} ms | "
          f"compositing (numba) {t_comp * 1000:.1f} ms")
    rate = stats.pairs_evaluated / t_comp
    print(f"  Gaussian-pixel pairs evaluated {stats.pairs_evaluated:,} = {rate / 1e6:.0f} M/s in compositing "
          f"({rate / raster_cpu.numba.get_num_threads() / 1e6:.0f} M/s per thread)")

    if torch.cuda.is_available():
        dev = torch.device("cuda")
        g = [t.to(dev) for t in (m, q, s, o, c)]
        ge = e.to(dev) if e is not None else None
        with torch.no_grad():
            rasterize(*g, cam, sh_degree=args.sh_degree, extra=ge, backend="gsplat")
            torch.cuda.synchronize()
            n_frames = 200
            t = time.perf_counter()
            for _ in range(n_frames):
                rasterize(*g, cam, sh_degree=args.sh_degree, extra=ge, backend="gsplat")
            torch.cuda.synchronize()
            fps = n_frames / (time.perf_counter() - t)
        res["gsplat_fps"] = fps
        print(f"gsplat forward {fps:.0f} fps (goal >= 300) on {torch.cuda.get_device_name()}")
    else:
        print("gsplat: no CUDA device, skipped")
    return res


if __name__ == "__main__":
    main()
