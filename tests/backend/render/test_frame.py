"""The one frame renderer: the subject is left as it was, and the two ways a frame is
rendered (``emotalk3d render --track``, and Blender's engine through the worker from the
shape keys Blender holds) give the same pixels."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from emotalk3d_addon.backend.io import passes_buffer
from emotalk3d_addon.backend.tools.cli import main
from emotalk3d_addon.backend.render.frame import FrameRenderer
from emotalk3d_addon.backend.render.views import orbit_camera
from emotalk3d_addon.backend.subject import load_subject, resolve_subject
from emotalk3d_addon.backend.tools.worker import Worker
from emotalk3d_addon.bridge.gaussian_frame import shape_key_mix

SIZE = 96
FRAME = 12


def test_a_renderer_copies_the_subject_it_renders():
    subject = load_subject(resolve_subject("demo"))
    canonical, net = subject.appearance.canonical, subject.appearance.net
    renderer = FrameRenderer(subject, "cpu")
    assert subject.appearance.canonical is canonical and subject.appearance.net is net
    assert renderer.head.net is not net and renderer.head is not subject.appearance


def test_a_head_is_drawn_in_the_raster_mode_it_was_trained_in():
    import torch

    from emotalk3d_addon.backend.raster import rasterize
    from emotalk3d_addon.backend.render.frame import emotion_input, render_head

    subject = load_subject(resolve_subject("demo"))
    head = subject.appearance.to("cpu")
    vertices = torch.from_numpy(subject.geometry.template.astype(np.float32))
    emotion = emotion_input(np.eye(8, dtype=np.float32)[0], 1.0)
    camera = orbit_camera(subject.manifest["appearance"]["view"], "front", 32, 32)   # coarse: sub-pixel Gaussians
    images = {}
    with torch.inference_mode():
        f = head.frame(vertices, emotion)
        for mode in ("classic", "antialiased"):
            head.raster_mode = mode
            images[mode] = render_head(head, vertices, emotion, camera).alpha
            direct = rasterize(f.means, f.quats, f.scales, f.opacities, f.sh, camera, sh_degree=f.sh_degree,
                               mode=mode).alpha
            torch.testing.assert_close(images[mode], direct)
    assert float((images["classic"] - images["antialiased"]).abs().max()) > 0.01


class _Block:
    """A shape key as Blender holds it: float32 coordinates, a value, a relative key."""

    def __init__(self, name, co, value=0.0, relative=None):
        self.name, self.value, self.mute = name, float(value), False
        self.slider_min, self.slider_max, self.relative_key = -10.0, 10.0, relative
        flat = np.ascontiguousarray(co, np.float32).ravel()
        self.points = SimpleNamespace(foreach_get=lambda attr, out: out.__setitem__(slice(None), flat))


def _blender_mix(template, components, coefficients):
    """The head's vertices at one frame, mixed from shape keys the way Blender stores them:
    a Basis key and one key per component (template + component), valued by the coefficients."""
    basis = _Block("Basis", template)
    blocks = [basis] + [_Block(f"c{k}", template + components[k], coefficients[k], basis)
                        for k in range(len(components))]
    return shape_key_mix(SimpleNamespace(key_blocks=blocks, reference_key=basis), template.shape[0])


@pytest.mark.parametrize("emotion", ["surprised"])
def test_cli_render_and_the_engine_path_give_the_same_frame(tmp_path, emotion):
    subject_dir = resolve_subject("demo")
    samples, rate = sf.read(subject_dir / "demo_clip.wav", dtype="float32")
    clip = tmp_path / "clip.wav"
    sf.write(clip, samples[: int(1.2 * rate)], rate)
    track_path, frames_dir = tmp_path / "t.npz", tmp_path / "frames"
    assert main(["predict", "--subject", "demo", "--audio", str(clip), "--out", str(track_path), "--fps", "25",
                 "--emotion", emotion, "--intensity", "0.8", "--device", "cpu"]) == 0
    assert main(["render", "--subject", "demo", "--track", str(track_path), "--out", str(frames_dir),
                 "--frames", str(FRAME), "--width", str(SIZE), "--height", str(SIZE), "--device", "cpu"]) == 0
    cli = np.asarray(Image.open(frames_dir / f"rgba_{FRAME:04d}.png"), np.float32) / 255.0

    worker = Worker(lambda message: None)
    reply = worker.op_perform({"subject": "demo", "audio": str(clip), "fps": [25, 1], "device": "cpu",
                               "emotion": {"mode": "constant", "emotion": emotion, "intensity": 0.8},
                               "out_dir": str(tmp_path / "perform")}, lambda f, m: None)
    arrays = {k: np.load(v) for k, v in reply["arrays"].items()}
    subject_arrays = {k: np.load(v) for k, v in reply["subject"]["arrays"].items()}
    vertices = _blender_mix(subject_arrays["template"], subject_arrays["components"], arrays["coefficients"][FRAME])
    np.save(tmp_path / "v.npy", vertices)
    camera = orbit_camera(FrameRenderer(load_subject(subject_dir)).view_defaults, "front", SIZE, SIZE)
    spec = {"K": camera.K.flatten().tolist(), "world_to_camera": camera.world_to_camera.flatten().tolist(),
            "width": SIZE, "height": SIZE}
    buffer, mapping = passes_buffer.create(tmp_path, SIZE, SIZE)
    worker.op_render_frame({"subject": "demo", "vertices": str(tmp_path / "v.npy"), "camera": spec,
                            "emotion": arrays["emotion"][FRAME].tolist(),
                            "intensity": float(arrays["intensity"][FRAME]), "device": "cpu",
                            "passes": str(buffer)}, lambda f, m: None)
    engine = passes_buffer.views(mapping, SIZE, SIZE)["combined"]
    assert engine[..., 3].max() > 0.5                                   # the head is in view
    assert np.abs(engine - cli).max() <= 1.0 / 255.0                   # PNG rounding is half of that
    assert reply["basis_max_mm"] > 0.0                                 # both show the basis, not the raw track
