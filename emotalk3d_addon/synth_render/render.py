"""Render a synthetic-dataset job with bpy (see the package docstring for the job format)."""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import JOB_FORMAT

SENSOR_SIZE = 36.0      # mm; only the ratio lens / sensor matters


class JobError(Exception):
    """The job file is missing, malformed or names missing arrays."""


def camera_to_blender(K, world_to_camera, width: int, height: int) -> dict:
    """OpenCV intrinsics/extrinsics -> Blender camera settings.

    Pixel coordinates as in OpenCV and 3DGS: pixel (i, j) covers [i, i+1) x [j, j+1), so an
    unshifted Blender camera has its principal point at (W/2, H/2). Needs fx == fy
    (square pixels) and no skew.
    """
    K = np.asarray(K, np.float64)
    w2c = np.asarray(world_to_camera, np.float64)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    if abs(fx - fy) > 1e-6 * fx or abs(K[0, 1]) > 1e-9:
        raise JobError("cameras need square pixels (fx == fy) and no skew")
    big = max(width, height)
    fit = "HORIZONTAL" if width >= height else "VERTICAL"
    lens = fx * SENSOR_SIZE / big
    c2w = np.linalg.inv(w2c)
    matrix = c2w @ np.diag([1.0, -1.0, -1.0, 1.0])        # OpenCV camera axes -> Blender's
    return dict(matrix_world=matrix, lens=lens, sensor=SENSOR_SIZE, sensor_fit=fit,
                shift_x=(width / 2.0 - cx) / big, shift_y=(cy - height / 2.0) / big)


def _load_job(path: Path) -> dict:
    try:
        job = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise JobError(f"job file not found: {path}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise JobError(f"job file {path} is not valid JSON: {exc}") from None
    if not isinstance(job, dict) or job.get("format") != JOB_FORMAT:
        raise JobError(f"{path}: 'format' must be {JOB_FORMAT!r}")
    for key in ("triangles", "uvs", "texture", "cameras", "items"):
        if key not in job:
            raise JobError(f"{path}: missing {key!r}")
    cams = job["cameras"]
    if not isinstance(cams, list) or not cams:
        raise JobError(f"{path}: 'cameras' must be a non-empty list")
    for i, cam in enumerate(cams):
        missing = {"name", "width", "height", "K", "world_to_camera"} - set(cam if isinstance(cam, dict) else ())
        if missing:
            raise JobError(f"{path}: camera {i} lacks {', '.join(sorted(missing))}")
        if np.asarray(cam["K"]).shape != (3, 3) or np.asarray(cam["world_to_camera"]).shape != (4, 4):
            raise JobError(f"{path}: camera {i}: K must be 3x3 and world_to_camera 4x4")
    if not isinstance(job["items"], list):
        raise JobError(f"{path}: 'items' must be a list")
    for i, item in enumerate(job["items"]):
        missing = {"vertices", "frames", "out_dir"} - set(item if isinstance(item, dict) else ())
        if missing:
            raise JobError(f"{path}: item {i} lacks {', '.join(sorted(missing))}")
        weights = item.get("overlay_weight")
        if weights is not None and len(weights) != len(item["frames"]):
            raise JobError(f"{path}: item {i}: one overlay weight per frame")
    return job


def _array(base: Path, name: str, mmap: bool = False) -> np.ndarray:
    p = Path(name)
    p = p if p.is_absolute() else base / p
    try:
        return np.load(p, allow_pickle=False, mmap_mode="r" if mmap else None)
    except FileNotFoundError:
        raise JobError(f"array not found: {p}") from None
    except (OSError, ValueError) as exc:
        raise JobError(f"cannot read {p}: {exc}") from None


class Scene:
    """The Blender scene of one job: one textured mesh, one camera."""

    def __init__(self, job: dict, base: Path):
        import bpy

        self.bpy = bpy
        bpy.ops.wm.read_factory_settings(use_empty=True)
        scene = bpy.context.scene
        self.scene = scene
        cams = job["cameras"]
        self.width, self.height = int(cams[0]["width"]), int(cams[0]["height"])
        r = scene.render
        r.resolution_x, r.resolution_y, r.resolution_percentage = self.width, self.height, 100
        r.pixel_aspect_x = r.pixel_aspect_y = 1.0
        r.film_transparent = True
        r.use_compositing = False
        r.use_sequencer = False
        r.image_settings.file_format = "PNG"
        r.image_settings.color_mode = "RGBA"
        r.image_settings.color_depth = "8"
        r.image_settings.compression = 0
        scene.view_settings.view_transform = "Standard"
        scene.view_settings.look = "None"
        engine = str(job.get("engine", "WORKBENCH")).upper()
        if engine == "WORKBENCH":
            r.engine = "BLENDER_WORKBENCH"
            sh = scene.display.shading
            sh.light = "STUDIO"
            sh.color_type = "TEXTURE"
            sh.show_specular_highlight = True
            scene.display.render_aa = str(job.get("aa", "8"))
        elif engine == "CYCLES":
            r.engine = "CYCLES"
            scene.cycles.device = "CPU"
            scene.cycles.samples = int(job.get("samples", 16))
            scene.cycles.use_denoising = bool(job.get("denoise", True))
            self._cycles_lights()
        else:
            raise JobError(f"unknown engine {engine!r} (WORKBENCH or CYCLES)")

        tris = _array(base, job["triangles"]).astype(np.int64)
        uvs = _array(base, job["uvs"]).astype(np.float32)
        nv = uvs.shape[0]
        if tris.ndim != 2 or tris.shape[1] != 3 or tris.min() < 0 or tris.max() >= nv:
            raise JobError("triangles must be (T, 3) indices into the UVs' vertices")
        mesh = bpy.data.meshes.new("head")
        mesh.vertices.add(nv)
        mesh.loops.add(tris.size)
        mesh.polygons.add(tris.shape[0])
        mesh.loops.foreach_set("vertex_index", tris.ravel().astype(np.int32))
        mesh.polygons.foreach_set("loop_start", np.arange(0, tris.size, 3, dtype=np.int32))
        mesh.polygons.foreach_set("loop_total", np.full(tris.shape[0], 3, np.int32))
        mesh.polygons.foreach_set("use_smooth", np.ones(tris.shape[0], bool))
        uv_layer = mesh.uv_layers.new(name="UVMap")
        uv_layer.data.foreach_set("uv", uvs[tris.ravel()].ravel())
        mesh.update(calc_edges=True)
        mesh.validate(verbose=False)
        self.mesh = mesh
        self.num_vertices = nv
        obj = bpy.data.objects.new("head", mesh)
        scene.collection.objects.link(obj)

        tex = _array(base, job["texture"])
        if tex.ndim != 3 or tex.shape[2] != 4 or tex.dtype != np.uint8:
            raise JobError("texture must be (H, W, 4) uint8")
        self.base_texture = tex[::-1].astype(np.float32) / 255.0      # Blender rows start at the bottom
        th, tw = tex.shape[:2]
        image = bpy.data.images.new("texture", tw, th, alpha=True)
        image.colorspace_settings.name = "sRGB"
        self.image = image
        self.overlays = {k: _array(base, v) for k, v in (job.get("overlays") or {}).items()}
        self.current_texture = None
        self.set_texture(None, 0.0)

        mat = bpy.data.materials.new("skin")
        mat.use_nodes = True
        nodes = mat.node_tree.nodes
        bsdf = next(n for n in nodes if n.type == "BSDF_PRINCIPLED")
        node = nodes.new("ShaderNodeTexImage")
        node.image = image
        node.interpolation = "Linear"
        mat.node_tree.links.new(node.outputs["Color"], bsdf.inputs["Base Color"])
        if "Roughness" in bsdf.inputs:
            bsdf.inputs["Roughness"].default_value = 0.55
        nodes.active = node
        mesh.materials.append(mat)

        cam_data = bpy.data.cameras.new("camera")
        cam_data.clip_start, cam_data.clip_end = 0.02, 20.0
        self.camera = bpy.data.objects.new("camera", cam_data)
        scene.collection.objects.link(self.camera)
        scene.camera = self.camera
        self.tmpdir = tempfile.mkdtemp(prefix="emotalk3d-render-")

    def _cycles_lights(self):
        bpy = self.bpy
        world = bpy.data.worlds.new("world")
        world.use_nodes = True
        bg = world.node_tree.nodes.get("Background")
        if bg is not None:
            bg.inputs["Color"].default_value = (0.35, 0.35, 0.38, 1.0)
            bg.inputs["Strength"].default_value = 0.35
        self.scene.world = world
        for name, loc, energy, size in (("key", (-0.8, -1.2, 0.7), 28.0, 0.6),
                                        ("fill", (1.0, -1.0, 0.2), 11.0, 0.8),
                                        ("rim", (0.3, 1.2, 0.9), 16.0, 0.5)):
            light = bpy.data.lights.new(name, "AREA")
            light.energy, light.size = energy, size
            obj = bpy.data.objects.new(name, light)
            obj.location = loc
            d = -np.asarray(loc, np.float64)
            obj.rotation_mode = "QUATERNION"
            obj.rotation_quaternion = _look_quaternion(d)
            self.scene.collection.objects.link(obj)

    def set_texture(self, overlay: str | None, weight: float) -> None:
        key = (overlay, round(float(weight), 3))
        if key == self.current_texture:
            return
        pix = self.base_texture
        if overlay is not None and weight != 0.0:
            if overlay not in self.overlays:
                raise JobError(f"unknown overlay {overlay!r}")
            pix = pix.copy()
            pix[..., :3] = np.clip(pix[..., :3] + weight * self.overlays[overlay][::-1].astype(np.float32), 0, 1)
        self.image.pixels.foreach_set(np.ascontiguousarray(pix, np.float32).ravel())
        self.image.update()
        self.current_texture = key

    def set_vertices(self, vertices: np.ndarray) -> None:
        if vertices.shape != (self.num_vertices, 3):
            raise JobError(f"vertices must be ({self.num_vertices}, 3), got {vertices.shape}")
        self.mesh.vertices.foreach_set("co", np.ascontiguousarray(vertices, np.float32).ravel())
        self.mesh.update()

    def set_camera(self, cam: dict) -> None:
        w, h = int(cam["width"]), int(cam["height"])
        if (w, h) != (self.width, self.height):
            raise JobError("all cameras of a job must share one image size")
        s = camera_to_blender(cam["K"], cam["world_to_camera"], w, h)
        data = self.camera.data
        data.type = "PERSP"
        data.sensor_fit = s["sensor_fit"]
        data.sensor_width = data.sensor_height = s["sensor"]
        data.lens = s["lens"]
        data.shift_x, data.shift_y = s["shift_x"], s["shift_y"]
        import mathutils

        self.camera.matrix_world = mathutils.Matrix(s["matrix_world"].tolist())

    def render(self) -> np.ndarray:
        """Render the current state -> (H, W, 4) uint8, straight alpha, row 0 at the top."""
        bpy = self.bpy
        path = os.path.join(self.tmpdir, "frame.png")
        self.scene.render.filepath = path
        bpy.ops.render.render(write_still=True)
        img = bpy.data.images.load(path, check_existing=False)
        try:
            w, h = img.size
            px = np.empty(w * h * 4, np.float32)
            img.pixels.foreach_get(px)
        finally:
            bpy.data.images.remove(img)
        return np.round(px.reshape(h, w, 4)[::-1] * 255.0).astype(np.uint8)


def _look_quaternion(direction):
    import mathutils

    return mathutils.Vector(tuple(direction)).to_track_quat("-Z", "Y")


def run(job_path: Path, part: int = 0, parts: int = 1, log=print) -> int:
    """Render every (item, frame) unit of part ``part`` of ``parts``; returns the image count."""
    job_path = Path(job_path)
    job = _load_job(job_path)
    base = job_path.parent
    scene = Scene(job, base)
    try:
        return _render_units(scene, job, base, part, parts, log)
    finally:
        import shutil

        shutil.rmtree(scene.tmpdir, ignore_errors=True)


def _render_units(scene: Scene, job: dict, base: Path, part: int, parts: int, log) -> int:
    from ..backend.datasets.synthetic.png import write_png

    units = []
    for item in job["items"]:
        frames = list(item["frames"])
        for row, frame in enumerate(frames):
            units.append((item, row, frame))
    units = units[part::parts]
    cams = job["cameras"]
    done, t0 = 0, time.time()
    cache = {}
    for item, row, frame in units:
        key = item["vertices"]
        if key not in cache:
            cache.clear()
            cache[key] = _array(base, key, mmap=True)
        if cache[key].shape[0] != len(item["frames"]):
            raise JobError(f"{key}: one row of vertices per frame ({len(item['frames'])}), "
                           f"got {cache[key].shape[0]}")
        verts = np.asarray(cache[key][row], np.float32)
        weights = item.get("overlay_weight") or [0.0] * len(item["frames"])
        scene.set_texture(item.get("overlay"), float(weights[row]))
        scene.set_vertices(verts)
        out_dir = Path(item["out_dir"])
        out_dir = out_dir if out_dir.is_absolute() else base / out_dir
        for cam in cams:
            scene.set_camera(cam)
            rgba = scene.render()
            folder = out_dir / cam["name"]
            folder.mkdir(parents=True, exist_ok=True)
            write_png(folder / f"{int(frame):06d}.png", rgba)
            done += 1
        if log is not None and (done // len(cams)) % 25 == 0:
            log(f"rendered {done} images ({time.time() - t0:.1f} s)")
    return done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m emotalk3d_addon.synth_render",
                                 description="render a synthetic dataset job with Blender")
    ap.add_argument("job", help="job JSON file")
    ap.add_argument("--part", default="0/1", help="I/N: render every N-th frame starting at I")
    args = ap.parse_args(argv)
    try:
        i, n = (int(x) for x in args.part.split("/"))
        if not 0 <= i < n:
            raise ValueError
    except ValueError:
        print(f"error: --part must be I/N with 0 <= I < N, got {args.part!r}", file=sys.stderr)
        return 2
    try:
        import bpy  # noqa: F401
    except ImportError:
        print("error: bpy is not importable here: run with Blender's Python or install the bpy module",
              file=sys.stderr)
        return 2
    try:
        count = run(Path(args.job), i, n, log=lambda m: print(m, flush=True))
    except JobError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - one clear line for the generator, traceback above it
        import traceback

        traceback.print_exc()
        print(f"error: rendering failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"done: {count} images", flush=True)
    return 0
