"""Real Blender (bpy 5.0.1 from PyPI) fixtures: the add-on enabled once, a fresh empty
scene per test, the subject trained by the project's own code, and ground truth from
the backend computed in a separate process (the extension itself never loads torch in
Blender: test_extension checks that in a clean Blender process)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

# Keep Blender's user folders (config, extensions) out of the user's home.
if "bpy" not in sys.modules:
    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="emotalk3d-blender-user-"))

bpy = pytest.importorskip("bpy")

ROOT = Path(__file__).resolve().parents[2]
ADDON = "emotalk3d_addon"


@pytest.fixture(scope="session")
def addon():
    import addon_utils

    bpy.ops.wm.read_factory_settings(use_empty=True)

    def fail(exc):
        raise exc

    module = addon_utils.enable(ADDON, default_set=True, handle_error=fail)
    assert module is not None
    yield module
    addon_utils.disable(ADDON, default_set=True)


@pytest.fixture
def scene(addon):
    """An empty scene from the factory startup file (the add-on stays enabled)."""
    from emotalk3d_addon.bridge import jobs

    job = jobs.active_job()
    if job is not None and not job.finished:
        job.cancel()
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.python, prefs.encoder, prefs.device = "", "", "cpu"
    prefs.libraries.clear()
    return bpy.context.scene


@pytest.fixture(scope="session")
def speech(tiny_dataset) -> Path:
    """A real speech-like recording (1.6 s, 16 kHz WAV) from the training dataset's test split."""
    return next((tiny_dataset / "sequences").glob("*_neutral")) / "audio.wav"


@pytest.fixture(scope="session")
def basis(trained_subject):
    """(template (V,3), components (K,V,3)) read from the bundle with safetensors' numpy API."""
    from safetensors.numpy import load_file

    geo = load_file(str(trained_subject / "geometry.safetensors"))
    comps = load_file(str(trained_subject / "basis.safetensors"))["components"]
    return geo["template_vertices"], comps


def backend_tracks(subject: Path, audio: Path, jobs: dict[str, dict], out_dir: Path) -> dict[str, np.ndarray]:
    """The performances (template + basis mix, the mouth closed in silence) from the backend's own
    Performance service, computed in a subprocess.

    jobs: name -> {"fps": [n, d], "emotion": {...} as in the worker protocol}."""
    script = r"""
import json, sys
from fractions import Fraction
import numpy as np
from emotalk3d_addon.backend.io.audio import load_audio
from emotalk3d_addon.backend.performance.service import Performance
from emotalk3d_addon.backend.protocol.messages import EmotionKey, EmotionSpec
from emotalk3d_addon.backend.subject import load_subject
subject, audio, jobs, out = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
service = Performance()
loaded = service.add_subject(load_subject(subject))
wave = load_audio(audio)
res = {}
for name, job in jobs.items():
    e = job["emotion"]
    spec = EmotionSpec.constant(e["emotion"], e["intensity"]) if e["mode"] == "constant" else \
        EmotionSpec.keyed([EmotionKey(k["frame"], k["emotion"], k["intensity"]) for k in e["keys"]])
    res[name] = service.perform_waveform(loaded, wave, Fraction(*job["fps"]), spec, "cpu").track.vertices
np.savez(out, **res)
"""
    out = out_dir / "truth.npz"
    subprocess.run([sys.executable, "-c", script, str(subject), str(audio), json.dumps(jobs), str(out)],
                   check=True, cwd=ROOT, timeout=300)
    with np.load(out, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def snapshot(scene=None) -> dict:
    """Names of everything a generation may create or change, for before/after comparisons."""
    from emotalk3d_addon.bridge import compat

    scene = scene or bpy.context.scene
    out = {name: sorted(x.name for x in getattr(bpy.data, name))
           for name in ("objects", "meshes", "shape_keys", "actions", "sounds", "collections", "materials",
                        "images", "scenes")}
    out["strips"] = sorted((s.name, s.channel, float(s.frame_start)) for s in compat.all_strips(scene))
    out["sequence_editor"] = scene.sequence_editor is not None
    s = scene.emotalk3d
    out["settings"] = (s.subject, s.audio_source, s.audio_file, s.strip, s.head.name if s.head else None,
                       s.last_action.name if s.last_action else None)
    out["frames"] = (scene.frame_start, scene.frame_end, scene.frame_current)
    out["key_animation"] = sorted(
        (k.name, k.animation_data.action.name if k.animation_data and k.animation_data.action else None,
         len(k.animation_data.nla_tracks) if k.animation_data else 0) for k in bpy.data.shape_keys)
    out["orphans"] = sorted(x.name for coll in ("meshes", "actions", "sounds", "shape_keys")
                            for x in getattr(bpy.data, coll) if x.users == 0)
    return out


def setup_scene(scene, subject: Path, audio: Path, start: int = 1, fps: int = 25, fps_base: float = 1.0):
    s = scene.emotalk3d
    s.subject = str(subject)
    s.audio_source, s.audio_file, s.audio_start = 'FILE', str(audio), start
    scene.render.fps, scene.render.fps_base = fps, fps_base
    return s


def audio_frames(audio: Path, fps) -> int:
    """F = ceil(duration * fps), from the file's own sample count (soundfile)."""
    import math
    from fractions import Fraction

    import soundfile as sf

    info = sf.info(str(audio))
    n = Fraction(info.frames, info.samplerate) * Fraction(fps)
    return math.ceil(n)


def evaluated(ob, frame: int) -> np.ndarray:
    from emotalk3d_addon.bridge import mesh

    bpy.context.scene.frame_set(frame)
    return mesh.evaluated_vertices(ob, bpy.context.evaluated_depsgraph_get())
