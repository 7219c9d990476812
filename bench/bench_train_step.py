"""One training step on CUDA against the CPU: appearance (the demo head rendered at 512x512, the
photometric loss, backward through the rasteriser and G2ANet, an Adam step) and S2GNet (a batch of
8 four-second clips at 25 fps, backward, an Adam step). Prints the best step time of each on each
device and the CPU/CUDA ratio, and the largest relative difference of the first step's loss.

The appearance target is the head's own render with a little noise, so the step is the real
work of a training step without a dataset on disk. Without CUDA only the CPU rows are printed.

    python bench/bench_train_step.py [--repeats 5] [--size 512]
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emotalk3d_addon.backend.emotions import CONDITION_DIM, EMOTIONS  # noqa: E402
from emotalk3d_addon.backend.geometry.s2gnet import S2GConfig, S2GNet  # noqa: E402
from emotalk3d_addon.backend.render.frame import emotion_input, render_head  # noqa: E402
from emotalk3d_addon.backend.render.views import orbit_camera  # noqa: E402
from emotalk3d_addon.backend.subject import load_subject, resolve_subject  # noqa: E402
from emotalk3d_addon.backend.train.image_losses import photometric_loss  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_steps(step, device: torch.device, repeats: int) -> tuple[float, float]:
    """(first step's loss, best seconds per step over ``repeats`` after one warm-up)."""
    first = step()
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        step()
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return first, best


def appearance_step(subject, device: torch.device, size: int):
    head = copy.deepcopy(subject.appearance).move_to_(device)
    head.net.requires_grad_(True)
    params = [p for p in head.net.parameters()] + [t for t in head.canonical.tensors() if t.is_floating_point()]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=1e-4)
    camera = orbit_camera(dict(subject.manifest["appearance"]["view"]), "front", size, size).to(device)
    weights = np.zeros(len(EMOTIONS), np.float32)
    weights[EMOTIONS.index("happy")] = 1.0
    vertices = torch.from_numpy(np.asarray(subject.geometry.template, np.float32)).to(device)
    emotion = emotion_input(weights, 1.0).to(device)
    with torch.no_grad():
        out = render_head(head, vertices, emotion, camera)
        g = torch.Generator().manual_seed(0)
        target = torch.cat([out.rgb, out.alpha[..., None]], -1).cpu()
        target = (target + 0.02 * torch.randn(target.shape, generator=g)).clamp(0, 1).to(device)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        o = render_head(head, vertices, emotion, camera)
        loss = photometric_loss(torch.cat([o.rgb, o.alpha[..., None]], -1), target)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


def s2g_step(num_vertices: int, device: torch.device):
    torch.manual_seed(0)
    net = S2GNet(S2GConfig(384, num_vertices)).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(8, 100, 384, generator=g).to(device)
    cond = torch.rand(8, 100, CONDITION_DIM, generator=g).to(device)
    target = (torch.randn(8, 100, num_vertices, 3, generator=g) * 1e-3).to(device)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        pred = net(feats, cond)
        loss = (pred - target).abs().mean() + (pred.diff(dim=1) - target.diff(dim=1)).abs().mean()
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args(argv)
    subject = load_subject(resolve_subject("demo"))
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    where = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
    print(f"one training step, demo subject, torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {where}")
    print("| step | device | seconds per step | first loss |")
    print("|---|---|---|---|")
    results: dict = {}
    for name, make in (("appearance (512x512 render + G2ANet)", lambda d: appearance_step(subject, d, args.size)),
                       ("S2GNet (8 x 4 s clips)", lambda d: s2g_step(subject.geometry.num_vertices, d))):
        for device in devices:
            first, best = timed_steps(make(device), device, args.repeats)
            results[(name, device.type)] = (first, best)
            print(f"| {name} | {device.type} | {best:.4f} | {first:.6f} |")
    for name in ("appearance (512x512 render + G2ANet)", "S2GNet (8 x 4 s clips)"):
        if (name, "cuda") in results:
            (l_cpu, t_cpu), (l_gpu, t_gpu) = results[(name, "cpu")], results[(name, "cuda")]
            print(f"{name}: CPU / CUDA step time {t_cpu / t_gpu:.1f}x; first loss differs by "
                  f"{abs(l_cpu - l_gpu) / max(abs(l_cpu), 1e-12):.2e} (relative)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
