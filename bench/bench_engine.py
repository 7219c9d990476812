"""Render-engine overhead: one frame through Blender's "EmoTalk3D Gaussians" engine against the
bare backend on the same frame (goal: engine <= 1.10 x the backend).

Scene: the shipped demo subject performing its clip (generated here), a camera 0.9 m from the
face. For each size, frames are rendered with ``bpy.ops.render.render`` on the Gaussian scene
(the engine reads the camera and the evaluated head in Blender, the worker renders and writes
the passes, Blender fills them). The same frames (vertices, emotion, camera) are then rendered
by the backend alone in a fresh process of its own, kept running, each frame right after the
engine rendered it: ``FrameRenderer.render`` (G2ANet + fusion + rasteriser) and the rasteriser
alone. The ratio is the median of the per-frame pairs (so load that comes and goes hits both
sides of a pair alike) over the frames after three warm-up frames; the ratios are the figures
to compare across machines.

With ``--animation N``, each size also renders N-frame animations of the Gaussian scene to
PNG files (``bpy.ops.render.render(animation=True)``, the render a farm runs), alternately
with the Render Ahead preference off and on, and prints the wall time per frame of each and
their ratio (the throughput gain of rendering ahead), with how many frames came from calls
sent ahead.

    python bench/bench_engine.py [--sizes 512x512,1920x1080] [--frames 6] [--device cpu|cuda]
                                 [--animation 12 --repeats 3]
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WARMUP = 3
sys.path.insert(0, str(ROOT))
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="emotalk3d-bench-user-"))


def _scene(work: Path, device: str):
    import addon_utils
    import bpy

    from emotalk3d_addon.bridge import compositing, headless

    addon_utils.enable("emotalk3d_addon", default_set=True)
    blend = work / "bench.blend"
    audio = ROOT / "emotalk3d_addon" / "subjects" / "demo" / "demo_clip.wav"
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    assert headless.main(["generate", "--subject", "demo", "--audio", str(audio), "--emotion", "happy",
                          "--save", str(blend)]) == 0
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    scene = bpy.context.scene
    bpy.context.preferences.addons["emotalk3d_addon"].preferences.device = device
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    scene.collection.objects.link(cam)
    cam.location, cam.rotation_euler = (0.0, -0.9, 0.05), (math.pi / 2, 0.0, 0.0)
    scene.camera = cam
    scene.emotalk3d.head.hide_render = True
    compositing.setup(scene)
    return scene, scene.emotalk3d.gaussian_scene


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="512x512,1920x1080")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--animation", type=int, default=0, help="frames per animation render (0: none)")
    parser.add_argument("--repeats", type=int, default=3, help="animation renders per setting")
    parser.add_argument("--skip-frames", action="store_true", help="only the animation renders")
    args = parser.parse_args()

    import bpy

    from emotalk3d_addon import engine, preferences
    from emotalk3d_addon.bridge import camera as camera_mod
    from emotalk3d_addon.bridge import gaussian_frame

    work = Path(tempfile.mkdtemp(prefix="emotalk3d-bench-engine-"))
    scene, gscene = _scene(work, args.device)
    dirs = preferences.current_settings().library_dirs()
    print(f"EmoTalk3D engine overhead, demo subject, device {args.device}, threads "
          f"{os.environ.get('OMP_NUM_THREADS', 'default')}")
    for size in args.sizes.split(","):
        width, height = (int(v) for v in size.split("x"))
        for s in (scene, gscene):
            s.render.resolution_x, s.render.resolution_y, s.render.resolution_percentage = width, height, 100
        if args.animation:
            _animation_throughput(scene, gscene, work, args.animation, args.repeats, width, height)
        if args.skip_frames:
            continue
        engine_s, worker_s, op_s, bare_s, raster_s = [], [], [], [], []
        bare = BareProcess(args.device)
        try:
            for i in range(args.frames + WARMUP):
                frame = 5 + 7 * i
                scene.frame_set(frame)
                gscene.frame_set(frame)
                t = time.perf_counter()
                bpy.ops.render.render(scene=gscene.name)
                op = time.perf_counter() - t
                info = dict(engine.LAST_RENDER)
                assert info.get("ok"), info
                if os.environ.get("BENCH_VERBOSE"):
                    print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in info.items()})
                depsgraph = bpy.context.evaluated_depsgraph_get()
                hf = gaussian_frame.head_frame(depsgraph, gscene.emotalk3d.head, dirs, evaluated_mesh=False)
                pin = camera_mod.from_blender_camera(gscene.camera, gscene)
                full, raster = bare.frame(hf, pin)          # the same frame, right after, in the other process
                if i < WARMUP:
                    continue                                # the worker loads the subject, buffers warm up
                engine_s.append(info["total_s"])
                worker_s.append(info["worker"]["raster"])
                op_s.append(op)
                bare_s.append(full)
                raster_s.append(raster)
        finally:
            bare.close()
        e, w, b, r, o = (statistics.median(v) for v in (engine_s, worker_s, bare_s, raster_s, op_s))
        paired = statistics.median(x / y for x, y in zip(engine_s, bare_s))
        print(f"{width}x{height}: engine.render {e * 1000:.1f} ms (render operator {o * 1000:.1f} ms); "
              f"worker G2ANet+raster {w * 1000:.1f} ms; bare FrameRenderer.render {b * 1000:.1f} ms, "
              f"rasteriser alone {r * 1000:.1f} ms")
        print(f"  engine / bare FrameRenderer = {paired:.3f} (median of per-frame pairs; ratio of medians "
              f"{e / b:.3f}); worker compute / bare = {statistics.median(x / y for x, y in zip(worker_s, bare_s)):.3f}; "
              f"engine / rasteriser alone = {e / r:.3f}")
    from emotalk3d_addon.bridge import worker_client

    worker_client.shutdown_client()


def _animation_throughput(scene, gscene, work: Path, frames: int, repeats: int, width: int, height: int) -> None:
    """Wall time per frame of animation renders with Render Ahead off and on, alternately."""
    import bpy

    from emotalk3d_addon.bridge import render_ahead

    prefs = bpy.context.preferences.addons["emotalk3d_addon"].preferences
    for s in (scene, gscene):
        s.frame_start, s.frame_end = 5, 5 + frames - 1
    gscene.render.image_settings.file_format = 'PNG'
    gscene.render.image_settings.color_mode = 'RGBA'
    walls: dict[bool, list[float]] = {False: [], True: []}
    hits = []
    for i in range(repeats + 1):
        for ahead in (False, True):
            prefs.render_ahead = ahead
            gscene.render.filepath = str(work / f"anim-{width}x{height}-{ahead}" / "f_")
            t = time.perf_counter()
            bpy.ops.render.render(animation=True, scene=gscene.name)
            wall = (time.perf_counter() - t) / frames
            if i == 0:
                continue                    # warm-up: the worker loads the subject, buffers are made
            walls[ahead].append(wall)
            if ahead:
                hits.append(render_ahead.STATS.hits)
    off, on = statistics.median(walls[False]), statistics.median(walls[True])
    pairs = statistics.median(a / b for a, b in zip(walls[False], walls[True]))
    print(f"{width}x{height} animation of {frames} frames to PNG: {off * 1000:.0f} ms/frame with Render Ahead off, "
          f"{on * 1000:.0f} ms/frame on; off / on = {pairs:.3f} (median of {repeats} pairs); "
          f"frames rendered ahead {min(hits)}-{max(hits)} of {frames - 1}")
    prefs.render_ahead = True


class Bare:
    """The backend alone, in this process: FrameRenderer.render and rasterize on a frame's inputs."""

    def __init__(self, device: str):
        from emotalk3d_addon.backend.render.frame import FrameRenderer
        from emotalk3d_addon.backend.subject import load_subject, resolve_subject

        self.renderer = FrameRenderer(load_subject(resolve_subject("demo")), device)

    def frame(self, hf, pin) -> tuple[float, float]:
        """Seconds of FrameRenderer.render and of rasterize alone for one frame."""
        import numpy as np
        import torch

        from emotalk3d_addon.backend.appearance.placement import apply_linear, split_object_matrix
        from emotalk3d_addon.backend.raster import Camera, rasterize
        from emotalk3d_addon.backend.render.frame import emotion_input

        renderer = self.renderer
        cam = Camera(torch.tensor(pin.K, dtype=torch.float32), torch.tensor(pin.world_to_camera, dtype=torch.float32),
                     pin.width, pin.height, pin.near, pin.far)
        t = time.perf_counter()
        renderer.render(hf.vertices, hf.emotion, hf.intensity, cam, hf.object_to_world)
        full = time.perf_counter() - t
        with torch.inference_mode():
            frame = renderer.head.frame(torch.from_numpy(np.asarray(hf.vertices, np.float32)).to(renderer.device),
                                        emotion_input(hf.emotion, hf.intensity).to(renderer.device))
        p = split_object_matrix(hf.object_to_world)
        means, quats, scales = apply_linear(frame.means, frame.quats, frame.scales, p)
        folded = Camera(cam.K, (cam.world_to_camera.double() @ torch.tensor(p.rigid)).float(), cam.width,
                        cam.height, cam.near, cam.far).to(renderer.device)
        if renderer.device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        rasterize(means, quats, scales, frame.opacities, frame.sh, folded, sh_degree=frame.sh_degree,
                  extra=frame.matte[:, None])
        if renderer.device.type == "cuda":
            torch.cuda.synchronize()
        return full, time.perf_counter() - t


class BareProcess:
    """The backend alone in a fresh process of its own (so neither process's threads slow the
    other), kept running: each frame is rendered there right after the engine rendered it,
    and the two times form a pair."""

    def __init__(self, device: str):
        import subprocess

        self.proc = subprocess.Popen([sys.executable, __file__, "--bare", "--device", device], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def frame(self, hf, pin) -> tuple[float, float]:
        import json

        import numpy as np

        message = {"vertices": np.asarray(hf.vertices, np.float32).tolist(), "emotion": list(map(float, hf.emotion)),
                   "intensity": float(hf.intensity), "matrix": np.asarray(hf.object_to_world).tolist(),
                   "K": np.asarray(pin.K).tolist(), "w2c": np.asarray(pin.world_to_camera).tolist(),
                   "size": [pin.width, pin.height], "clip": [pin.near, pin.far]}
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("the bare backend process ended")
            if line.startswith('{"full"'):                  # anything a library printed is skipped
                out = json.loads(line)
                return out["full"], out["raster"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)


def bare_main(device: str) -> None:
    """Render frames sent as JSON lines on stdin; reply with their times on stdout."""
    import json
    from types import SimpleNamespace

    import numpy as np

    bare = Bare(device)
    for line in sys.stdin:
        d = json.loads(line)
        hf = SimpleNamespace(vertices=np.asarray(d["vertices"], np.float32), emotion=np.asarray(d["emotion"], np.float32),
                             intensity=float(d["intensity"]), object_to_world=np.asarray(d["matrix"], np.float64))
        pin = SimpleNamespace(K=np.asarray(d["K"]), world_to_camera=np.asarray(d["w2c"]), width=int(d["size"][0]),
                              height=int(d["size"][1]), near=float(d["clip"][0]), far=float(d["clip"][1]))
        full, raster = bare.frame(hf, pin)
        print(json.dumps({"full": full, "raster": raster}), flush=True)


if __name__ == "__main__":
    if "--bare" in sys.argv:
        bare_main(sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "cpu")
    else:
        main()
