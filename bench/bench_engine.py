"""Render-engine overhead: one frame through Blender's "EmoTalk3D Gaussians" engine against the
bare backend on the same frame (goal: engine <= 1.10 x the backend).

Scene: the shipped demo subject performing its clip (generated here), a camera 0.9 m from the
face. For each size, frames are rendered with ``bpy.ops.render.render`` on the Gaussian scene
(the engine reads the camera and the evaluated head in Blender, the worker renders and writes
the passes, Blender fills them). The same frames (vertices, emotion, camera) are then rendered
by the backend alone in a fresh process: ``FrameRenderer.render`` (G2ANet + fusion +
rasteriser) and the rasteriser alone. Medians over the frames after three warm-up frames; the
ratios are the figures to compare across machines.

    python bench/bench_engine.py [--sizes 512x512,1920x1080] [--frames 6] [--device cpu|cuda]
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
        engine_s, worker_s, op_s, inputs = [], [], [], []
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
            inputs.append((hf, pin))
            if i < WARMUP:
                continue                                # the worker loads the subject, buffers warm up
            engine_s.append(info["total_s"])
            worker_s.append(info["worker"]["raster"])
            op_s.append(op)
        bare_s, raster_s = _bare_in_subprocess(inputs, args.device, work)
        e, w, b, r, o = (statistics.median(v) for v in (engine_s, worker_s, bare_s, raster_s, op_s))
        print(f"{width}x{height}: engine.render {e * 1000:.1f} ms (render operator {o * 1000:.1f} ms); "
              f"worker G2ANet+raster {w * 1000:.1f} ms; bare FrameRenderer.render {b * 1000:.1f} ms, "
              f"rasteriser alone {r * 1000:.1f} ms")
        print(f"  engine / bare FrameRenderer = {e / b:.3f}  (overhead {100 * (e / b - 1):+.1f} %); "
              f"engine / rasteriser alone = {e / r:.3f}")
    from emotalk3d_addon.bridge import worker_client

    worker_client.shutdown_client()


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


def _bare_in_subprocess(inputs, device: str, work: Path) -> tuple[list[float], list[float]]:
    """Run ``Bare`` on the engine's frames in a fresh process (Blender's process never runs torch,
    and threads left spinning by it would slow the worker down)."""
    import json
    import subprocess

    import numpy as np

    path = work / f"frames-{len(inputs)}.npz"
    np.savez(path, vertices=np.stack([hf.vertices for hf, _ in inputs]),
             emotion=np.stack([hf.emotion for hf, _ in inputs]),
             intensity=np.array([hf.intensity for hf, _ in inputs]),
             matrix=np.stack([hf.object_to_world for hf, _ in inputs]),
             K=np.stack([pin.K for _, pin in inputs]), w2c=np.stack([pin.world_to_camera for _, pin in inputs]),
             size=np.array([[pin.width, pin.height] for _, pin in inputs]),
             clip=np.array([[pin.near, pin.far] for _, pin in inputs]))
    out = subprocess.run([sys.executable, __file__, "--bare", str(path), "--device", device], check=True,
                         capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return result["full"][WARMUP:], result["raster"][WARMUP:]


def bare_main(path: str, device: str) -> None:
    import json
    from types import SimpleNamespace

    import numpy as np

    data = np.load(path)
    bare = Bare(device)
    full, raster = [], []
    for i in range(data["vertices"].shape[0]):
        hf = SimpleNamespace(vertices=data["vertices"][i], emotion=data["emotion"][i],
                             intensity=float(data["intensity"][i]), object_to_world=data["matrix"][i])
        pin = SimpleNamespace(K=data["K"][i], world_to_camera=data["w2c"][i], width=int(data["size"][i, 0]),
                              height=int(data["size"][i, 1]), near=float(data["clip"][i, 0]),
                              far=float(data["clip"][i, 1]))
        f, r = bare.frame(hf, pin)
        full.append(f)
        raster.append(r)
    print(json.dumps({"full": full, "raster": raster}))


if __name__ == "__main__":
    if "--bare" in sys.argv:
        bare_main(sys.argv[sys.argv.index("--bare") + 1],
                  sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "cpu")
    else:
        main()
