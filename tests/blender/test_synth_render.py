"""The synthetic dataset's images, rendered by real Blender (bpy from PyPI) in a child process:
RGBA with transparent background, and cameras that match what the pixels show."""
import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from emotalk3d_addon.backend.datasets.synthetic import make_dataset
from emotalk3d_addon.backend.datasets.synthetic.cameras import arc_cameras, project
from emotalk3d_addon.backend.datasets.synthetic.model import HeadModel
from emotalk3d_addon.backend.datasets.synthetic.png import read_png
from emotalk3d_addon.backend.datasets.synthetic.speech import espeak_available
from emotalk3d_addon.backend.datasets.synthetic.shapes import uv_sphere

pytestmark = pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="bpy not installed")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    if not espeak_available():
        pytest.skip("libespeak-ng not installed")
    return make_dataset(tmp_path_factory.mktemp("render") / "tiny", "tiny", seed=0, log=None)


def _render(job_dir, job):
    """Run the renderer; where Workbench finds no OpenGL, Cycles (as the generator does)."""
    (job_dir / "job.json").write_text(json.dumps(job))
    cmd = [sys.executable, "-m", "emotalk3d_addon.synth_render", str(job_dir / "job.json")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 and "engine" not in job and any(
            k in proc.stderr for k in ("No OpenGL", "epoxy", "GLX or EGL")):
        (job_dir / "job.json").write_text(json.dumps(dict(job, engine="CYCLES")))
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return proc


def _coverage(cam, vertices, triangles):
    """Pixel-centre coverage of a projected triangle mesh (numpy rasteriser)."""
    w, h = cam["width"], cam["height"]
    uv = project(cam, vertices)
    a, b, c = (uv[triangles[:, i]] for i in range(3))
    lo = np.floor(np.minimum(np.minimum(a, b), c) - 0.5).astype(int)
    hi = np.ceil(np.maximum(np.maximum(a, b), c) - 0.5).astype(int)
    mask = np.zeros((h, w), bool)
    span = (hi - lo).max(1)
    for size in np.unique(np.clip(span, 0, None)):
        sel = span == size
        n = size + 1
        oy, ox = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        px = lo[sel, 0, None] + ox.ravel()[None]
        py = lo[sel, 1, None] + oy.ravel()[None]
        cx, cy = px + 0.5, py + 0.5

        def edge(p, q):
            return (q[:, 0, None] - p[:, 0, None]) * (cy - p[:, 1, None]) - \
                   (q[:, 1, None] - p[:, 1, None]) * (cx - p[:, 0, None])

        e0, e1, e2 = edge(a[sel], b[sel]), edge(b[sel], c[sel]), edge(c[sel], a[sel])
        inside = ((e0 >= 0) & (e1 >= 0) & (e2 >= 0)) | ((e0 <= 0) & (e1 <= 0) & (e2 <= 0))
        inside &= (px >= 0) & (px < w) & (py >= 0) & (py < h)
        mask[py[inside], px[inside]] = True
    return mask


def _centroid(weights):
    ys, xs = np.mgrid[: weights.shape[0], : weights.shape[1]]
    s = weights.sum()
    return np.array([(xs * weights).sum() / s + 0.5, (ys * weights).sum() / s + 0.5])


def test_tiny_dataset_images_are_rgba_views_of_the_head(tiny):
    cams = json.loads((tiny / "cameras.json").read_text())["cameras"]
    model = HeadModel()
    views = {}
    seqs = sorted((tiny / "sequences").iterdir())
    for seq in seqs:
        meta = json.loads((seq / "meta.json").read_text())
        assert meta["image_frames"] and meta["image_frames"][0] == 0
        for cam in cams:
            for frame in meta["image_frames"]:
                img = read_png(seq / "images" / cam["name"] / f"{frame:06d}.png")
                assert img.shape == (cam["height"], cam["width"], 4) and img.dtype == np.uint8
                alpha = img[..., 3]
                assert alpha[0, 0] == 0 and alpha[0, -1] == 0       # transparent background
                assert 0.15 < (alpha > 127).mean() < 0.9
                views[(seq.name, cam["name"], frame)] = img
    # frame 0 is the neutral rest pose: its silhouette is where the cameras project the head
    for cam in cams:
        img = views[(seqs[0].name, cam["name"], 0)]
        alpha = img[..., 3].astype(float) / 255
        cover = _coverage(cam, model.render_rest, model.render_triangles)
        iou = ((alpha > 0.5) & cover).sum() / ((alpha > 0.5) | cover).sum()
        assert iou > 0.93, (cam["name"], iou)
        err = np.abs(_centroid(alpha) - _centroid(cover.astype(float)))
        assert err.max() < 0.35, (cam["name"], err)
    # different cameras see different views; the face moves between frames
    a = views[(seqs[0].name, cams[0]["name"], 0)].astype(int)
    b = views[(seqs[0].name, cams[1]["name"], 0)].astype(int)
    assert np.abs(a - b).mean() > 10
    c = views[(seqs[1].name, cams[1]["name"], 12)].astype(int)
    d = views[(seqs[1].name, cams[1]["name"], 0)].astype(int)
    assert np.abs(c - d)[..., :3].max() > 40


def test_camera_model_matches_blender_to_a_fraction_of_a_pixel(tmp_path):
    """Small spheres at known points: the alpha centroid in each view is the K/world_to_camera
    projection of the sphere centre (jittered cameras: off-centre principal points, roll)."""
    cams = [c for i, c in enumerate(arc_cameras(96, 96, 11, seed=5)) if i in (0, 3, 5, 8, 10)]
    assert any(abs(c["K"][0][2] - 48) > 0.3 for c in cams)
    unit, tris, par = uv_sphere(24, 16)
    points = np.array([[0.0, -0.11, -0.04], [0.06, -0.02, 0.07], [-0.05, 0.03, -0.14]])
    verts = np.stack([unit * 0.008 + p for p in points]).astype(np.float32)
    np.save(tmp_path / "v.npy", verts)
    np.save(tmp_path / "tris.npy", tris.astype(np.int32))
    np.save(tmp_path / "uvs.npy", np.clip(par, 0, 1).astype(np.float32))
    np.save(tmp_path / "tex.npy", np.full((8, 8, 4), 200, np.uint8))
    job = {"format": "emotalk3d-synth-render", "version": 1, "triangles": "tris.npy", "uvs": "uvs.npy",
           "texture": "tex.npy", "cameras": cams,
           "items": [{"vertices": "v.npy", "frames": [0, 1, 2], "out_dir": "img"}]}
    proc = _render(tmp_path, job)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for cam in cams:
        for k, p in enumerate(points):
            alpha = read_png(tmp_path / "img" / cam["name"] / f"{k:06d}.png")[..., 3].astype(float)
            assert alpha.sum() > 0
            err = np.abs(_centroid(alpha) - project(cam, p[None])[0])
            assert err.max() < 0.2, (cam["name"], k, err)


def test_renderer_reports_bad_jobs(tmp_path):
    missing = subprocess.run([sys.executable, "-m", "emotalk3d_addon.synth_render", str(tmp_path / "nope.json")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and "error: job file not found" in missing.stderr
    job = {"format": "emotalk3d-synth-render", "version": 1, "triangles": "absent.npy", "uvs": "uvs.npy",
           "texture": "tex.npy", "cameras": [], "items": []}
    proc = _render(tmp_path, job)
    assert proc.returncode != 0 and "error:" in proc.stderr and "cameras" in proc.stderr
    job["cameras"] = arc_cameras(32, 32, 1)
    proc = _render(tmp_path, job)
    assert proc.returncode != 0 and "error:" in proc.stderr and "absent.npy" in proc.stderr
