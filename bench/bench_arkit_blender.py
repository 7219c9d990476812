"""Retargeted playback (goal <= 1 ms/frame on a 52-key character; bpy from PyPI, CPU) and the
cost of writing a 10-minute target Action (18,000 frames at 30 fps) and of a strength change.

The character is a 71 x 71 grid (5,041 vertices) with the 52 ARKit shape keys; the weights
are a smooth random walk in [0, 1] (writing and playback do not depend on what they say).

    python bench/bench_arkit_blender.py
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FRAMES, FPS, GRID = 18_000, 30, 71


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def perform_demo_weights() -> np.ndarray:
    """(FRAMES, 52) weights of the demo subject's clip (the shapes its rig has), repeated."""
    from emotalk3d_addon.backend.performance.service import Performance
    from emotalk3d_addon.backend.protocol.messages import EmotionSpec, PerformRequest
    from emotalk3d_addon.backend.subject import resolve_subject

    clip = resolve_subject("demo") / "demo_clip.wav"
    fit = Performance().perform(PerformRequest("demo", str(clip), (FPS, 1), EmotionSpec.constant("happy"),
                                               device="cpu")).arkit()
    return np.tile(fit.weights, (-(-FRAMES // len(fit.weights)), 1))[:FRAMES]


def main() -> int:
    import bpy
    import addon_utils

    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon_utils.enable("emotalk3d_addon", default_set=True)
    from emotalk3d_addon.backend.arkit.names import ARKIT_NAMES
    from emotalk3d_addon.bridge import arkit_target, compat

    print(f"Blender {bpy.app.version_string} (bpy from PyPI), {os.cpu_count()} CPU cores")
    bpy.ops.mesh.primitive_grid_add(x_subdivisions=GRID - 1, y_subdivisions=GRID - 1, size=0.2)
    ob = bpy.context.active_object
    ob.shape_key_add(name="Basis")
    rng = np.random.default_rng(0)
    n = len(ob.data.vertices)
    for name in ARKIT_NAMES:
        kb = ob.shape_key_add(name=name, from_mix=False)
        co = np.empty(n * 3, np.float32)
        kb.points.foreach_get("co", co)
        kb.points.foreach_set("co", co + rng.normal(scale=0.002, size=co.size).astype(np.float32))
    scene = bpy.context.scene
    s = scene.emotalk3d
    s.target = ob
    weights = np.clip(0.5 + np.cumsum(rng.normal(scale=0.02, size=(FRAMES, 52)), axis=0), 0, 1).astype(np.float32)
    write_s, (act, slot, _) = timed(arkit_target.write_target_action, ob, weights, 1.0, float(FPS), s, "bench")
    act.emotalk3d.target, act.emotalk3d.frame_start = ob.name, 1.0
    compat.assign_action(ob.data.shape_keys, act, slot)
    s.last_action = act
    print(f"write a target Action: {FRAMES} frames x 52 keys in {write_s:.3f} s")
    strength_s, _ = timed(setattr, s, "strength_lips", 0.8)
    print(f"strength change (lips, re-writes {sum(n.startswith('mouth') for n in ARKIT_NAMES)} curves "
          f"of {FRAMES} keys): {strength_s:.3f} s")

    scene.frame_start, scene.frame_end = 1, FRAMES
    frames = list(range(1000, 1600))

    def play():
        for f in frames:
            scene.frame_set(f)

    play()
    with_keys = min(timed(play)[0] for _ in range(3)) / len(frames)
    print(f"retargeted playback (frame_set, V = {n:,}, all 52 ARKit keys animated): {with_keys * 1e3:.3f} ms/frame "
          f"(goal <= 1 ms)")
    demo = perform_demo_weights()
    act2, slot2, _ = arkit_target.write_target_action(ob, demo, 1.0, float(FPS), s, "demo")
    compat.assign_action(ob.data.shape_keys, act2, slot2)
    curves = list(compat.action_fcurves(act2, slot2))
    moving = sum(len(fc.keyframe_points) > 1 for fc in curves)
    play()
    demo_keys = min(timed(play)[0] for _ in range(3)) / len(frames)
    print(f"retargeted playback of the demo subject's performance ({moving} of 52 shapes move; the other "
          f"{len(curves) - moving} hold at 0 with one key): {demo_keys * 1e3:.3f} ms/frame (goal <= 1 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
