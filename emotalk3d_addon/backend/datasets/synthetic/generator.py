"""Generate a synthetic multi-view emotional talking-head dataset (the training layout).

Per sequence: espeak-ng speaks a sentence with the emotion's prosody; its phoneme
timings drive the viseme rig (jaw, lips); the emotion ramps in over 0.3 s after 0.1 s
and shapes brows, lids, cheeks and mouth, and tints the texture. The tracked face mesh
is written for every frame; every few frames the whole head is rendered from all
cameras by Blender (``emotalk3d_addon.synth_render`` in a child process).
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf

from ...emotions import EMOTIONS, MILD, STRONG
from ...errors import InputError
from ...timebase import frame_count
from ..layout import DATASET_FORMAT, write_rigid_parts
from .cameras import arc_cameras
from .expressions import ARTICULATION, expression_track, ramp
from .model import HeadModel
from .sentences import SENTENCES, TEST_SENTENCES, TEST_VOICE, TRAIN_VOICES, prosody
from .speech import synthesize
from .texture import base_texture, overlay
from .visemes import viseme_track

GENERATOR_VERSION = 1
LEAD_SILENCE = 0.3       # seconds of silence (closed, neutral mouth) before the speech
TAIL_SILENCE = 0.25
SPACE = ("metres; +Z up; the face looks toward -Y; origin between the ears at eye height; "
         "the subject's left is +X")


CYCLES_FALLBACK_IMAGES = 400     # without OpenGL, small jobs render with Cycles instead


class GeneratorError(InputError):
    """The dataset could not be generated (bad preset, output folder, renderer failure)."""


class RendererError(GeneratorError):
    """The Blender child process failed; ``no_opengl`` when Workbench found no OpenGL."""

    def __init__(self, message: str, no_opengl: bool = False):
        super().__init__(message)
        self.no_opengl = no_opengl


@dataclass(frozen=True)
class SequenceSpec:
    emotion: str
    intensity: float
    split: str
    sentence: str
    voice: str


@dataclass(frozen=True)
class Preset:
    name: str
    image_size: int                  # square images
    cameras: int                     # on a 180 degree arc
    fps: int
    texture_size: int
    sentences_per_level: int         # train sentences per (emotion, intensity)
    intensities: tuple[float, ...]
    emotions: tuple[str, ...]
    test_sequences: tuple[tuple[str, float], ...]
    render_every: int                # image frames: 0, k, 2k, ...
    max_image_frames: int | None = None     # per sequence
    max_words: int | None = None            # truncate sentences (short sequences)
    engine: str = "WORKBENCH"
    aa: str = "FXAA"
    extra: dict = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    "tiny": Preset("tiny", image_size=64, cameras=3, fps=25, texture_size=256, sentences_per_level=1,
                   intensities=(STRONG,), emotions=("neutral", "happy"),
                   test_sequences=(("surprised", STRONG),), render_every=12, max_image_frames=2,
                   max_words=3),
    "demo": Preset("demo", image_size=512, cameras=11, fps=25, texture_size=1024, sentences_per_level=3,
                   intensities=(MILD, STRONG), emotions=EMOTIONS,
                   test_sequences=(("neutral", 0.0), ("happy", STRONG), ("angry", MILD),
                                   ("surprised", STRONG), ("sad", STRONG)),
                   render_every=5),
}


def plan_sequences(preset: Preset, seed: int) -> list[SequenceSpec]:
    """The sequences of a preset: every emotion x intensity with its train sentences, then
    the held-out test sequences (unseen sentences, unseen voice)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(SENTENCES))
    voices = list(TRAIN_VOICES)
    specs, k = [], 0
    for emotion in preset.emotions:
        levels = (0.0,) if emotion == "neutral" else preset.intensities
        for level in levels:
            for _ in range(preset.sentences_per_level):
                text = SENTENCES[order[k % len(order)]]
                specs.append(SequenceSpec(emotion, level, "train", _trim(text, preset.max_words),
                                          voices[k % len(voices)]))
                k += 1
    for j, (emotion, level) in enumerate(preset.test_sequences):
        text = TEST_SENTENCES[j % len(TEST_SENTENCES)]
        specs.append(SequenceSpec(emotion, 0.0 if emotion == "neutral" else level, "test",
                                  _trim(text, preset.max_words), TEST_VOICE))
    return specs


def _trim(text: str, words: int | None) -> str:
    if words is None:
        return text
    return " ".join(text.rstrip(".?!").split()[:words]) + "."


def level_name(emotion: str, intensity: float) -> str:
    if emotion == "neutral":
        return "neutral"
    return f"{emotion}_{'strong' if intensity >= 0.75 else 'mild'}"


def sequence_params(model: HeadModel, spec: SequenceSpec, utterance, fps: int,
                    rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-frame rig parameters of a sequence and its frame times."""
    frames = frame_count(utterance.samples.size, utterance.sample_rate, Fraction(fps))
    times = np.arange(frames) / fps
    speech = viseme_track(utterance.phonemes, times)
    jaw_scale, spread_bias = ARTICULATION[spec.emotion]
    loud = prosody(spec.emotion, spec.intensity)["amplitude"] / 100.0
    scale = (1.0 + spec.intensity * (jaw_scale - 1.0)) * (0.85 + 0.15 * min(loud, 1.6))
    params = {k: v.copy() for k, v in speech.items()}
    params["jaw"] = params["jaw"] * 1.15 * scale
    params["spread"] = params["spread"] + spread_bias * spec.intensity * ramp(times)
    for k, v in expression_track(spec.emotion, spec.intensity, times, rng).items():
        params[k] = params.get(k, 0.0) + v
    return params, times


def image_frames(frames: int, preset: Preset) -> list[int]:
    out = list(range(0, frames, preset.render_every))
    if preset.max_image_frames is not None:
        out = out[:preset.max_image_frames]
    return out


def make_dataset(out: Path, preset: str = "demo", seed: int = 0, log=print, *, render: bool = True,
                 engine: str | None = None, overwrite: bool = False, image_size: int | None = None,
                 render_splits: tuple[str, ...] = ("train", "test")) -> Path:
    """Generate the dataset into ``out`` (a new or empty folder) and return it.

    ``render=False`` writes geometry, audio and cameras only (no images, no Blender).
    ``engine`` overrides the preset's renderer ("WORKBENCH" or "CYCLES").
    ``overwrite`` replaces an existing dataset made by this generator (never other folders).
    ``image_size`` overrides the preset's (square, pixels). The cameras are the same at
    every size (focal length and principal point scale with it), and so are the sequences,
    so a larger copy of a dataset holds the same views, sampled finer.
    ``render_splits``: the splits whose sequences get images (e.g. ("test",) for a
    high-resolution copy of the held-out views only).
    """
    if preset not in PRESETS:
        raise GeneratorError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    p = PRESETS[preset]
    if image_size is not None:
        if not (isinstance(image_size, int) and 16 <= image_size <= 4096):
            raise GeneratorError(f"image size must be an integer in [16, 4096] pixels, got {image_size!r}")
        p = replace(p, image_size=image_size)
    unknown = set(render_splits) - {"train", "test"}
    if unknown or not render_splits:
        raise GeneratorError(f"render_splits must name train and/or test, got {list(render_splits)}")
    if engine is not None:
        if engine.upper() not in ("WORKBENCH", "CYCLES"):
            raise GeneratorError(f"unknown engine {engine!r}; choose WORKBENCH or CYCLES")
        p = replace(p, engine=engine.upper())
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GeneratorError(f"output {out} exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        if not (overwrite and _is_generated(out)):
            raise GeneratorError(f"output folder {out} is not empty" + (
                "" if not overwrite else " and does not hold a generated dataset"))
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _generate(out, p, seed, log or (lambda _m: None), render, tuple(render_splits))
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)      # it was new or empty: leave nothing half-made
        raise


def _generate(out: Path, p: Preset, seed: int, log, render: bool, render_splits: tuple[str, ...]) -> Path:
    t0 = time.time()
    model = HeadModel()
    log(f"head model: {model.face_template.shape[0]} tracked face vertices, "
        f"{model.num_render_vertices} render vertices")
    np.savez(out / "topology.npz", template=model.face_template,
             triangles=model.face_triangles.astype(np.int32), uvs=model.face_uvs,
             face_mask=model.face_mask, landmark_names=np.array(list(model.landmarks)),
             landmark_indices=np.array(list(model.landmarks.values()), np.int64))
    write_rigid_parts(model.rigid_parts(), out)
    cams = arc_cameras(p.image_size, p.image_size, p.cameras, seed=seed)
    (out / "cameras.json").write_text(json.dumps({"cameras": cams}, indent=1))
    specs = plan_sequences(p, seed)
    info = {"format": DATASET_FORMAT, "version": 1, "name": f"synthetic-{p.name}", "fps": p.fps,
            "image_size": [p.image_size, p.image_size], "space": SPACE,
            "generator": {"name": "emotalk3d synthetic", "version": GENERATOR_VERSION, "preset": p.name,
                          "seed": seed, "engine": p.engine, "texture_size": p.texture_size,
                          "render_every": p.render_every, "train_voices": list(TRAIN_VOICES),
                          "test_voice": TEST_VOICE, "lead_silence_s": LEAD_SILENCE,
                          "emotion_ramp_s": [0.1, 0.4], "rendered": bool(render),
                          "rendered_splits": list(render_splits) if render else []}}
    work = Path(tempfile.mkdtemp(prefix="emotalk3d-synth-"))
    try:
        items, overlays = [], {}
        tex = base_texture(p.texture_size, model.mouth, seed)
        np.save(work / "texture.npy", tex)
        total_frames = 0
        for i, spec in enumerate(specs):
            rng = np.random.default_rng([seed, i])
            utt = synthesize(spec.sentence, spec.voice, prosody(spec.emotion, spec.intensity))
            utt = utt.padded(LEAD_SILENCE, TAIL_SILENCE)
            params, times = sequence_params(model, spec, utt, p.fps, rng)
            frames = times.size
            total_frames += frames
            name = f"{spec.split}_{i:03d}_{level_name(spec.emotion, spec.intensity)}"
            folder = out / "sequences" / name
            folder.mkdir(parents=True)
            sf.write(folder / "audio.wav", utt.samples, utt.sample_rate, subtype="PCM_16")
            np.save(folder / "meshes.npy", model.pose_face(params, frames))
            shown = image_frames(frames, p) if render and spec.split in render_splits else []
            meta = {"emotion": spec.emotion, "intensity": spec.intensity, "split": spec.split,
                    "fps": p.fps, "text": spec.sentence, "voice": spec.voice,
                    "image_frames": shown, "frames": frames, "duration": utt.duration,
                    "speech_start": LEAD_SILENCE,
                    "phonemes": [[round(ph.start, 4), round(ph.end, 4), ph.ipa] for ph in utt.phonemes]}
            (folder / "meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1))
            if shown:
                sub = {k: np.asarray(v)[shown] for k, v in params.items()}
                np.save(work / f"v{i:03d}.npy", model.pose_render(sub, len(shown)))
                ov = None
                if spec.emotion != "neutral":
                    ov = spec.emotion
                    if ov not in overlays:
                        np.save(work / f"overlay_{ov}.npy",
                                overlay(ov, p.texture_size, model.mouth, seed).astype(np.float16))
                        overlays[ov] = f"overlay_{ov}.npy"
                weights = (spec.intensity * ramp(times[shown])).round(4).tolist()
                items.append({"vertices": f"v{i:03d}.npy", "frames": shown, "overlay": ov,
                              "overlay_weight": weights, "out_dir": str((folder / "images").resolve())})
            log(f"sequence {i + 1}/{len(specs)} {name}: {utt.duration:.2f} s, {frames} frames, "
                f"{len(shown)} image frames")
        info["generator"]["sequences"] = len(specs)
        info["generator"]["frames"] = total_frames
        t_geo = time.time() - t0
        if items:
            np.save(work / "triangles.npy", model.render_triangles.astype(np.int32))
            np.save(work / "uvs.npy", model.render_uvs)
            job = {"format": "emotalk3d-synth-render", "version": 1, "engine": p.engine, "aa": p.aa,
                   "triangles": "triangles.npy", "uvs": "uvs.npy", "texture": "texture.npy",
                   "overlays": overlays, "cameras": cams, "items": items}
            (work / "job.json").write_text(json.dumps(job))
            images = sum(len(it["frames"]) for it in items) * len(cams)
            log(f"rendering {images} images with Blender ({p.engine}, {p.image_size}x{p.image_size})")
            t1 = time.time()
            try:
                run_renderer(work / "job.json", log)
            except RendererError as exc:
                if not (exc.no_opengl and p.engine == "WORKBENCH" and images <= CYCLES_FALLBACK_IMAGES):
                    raise
                log("Workbench cannot render here (no OpenGL); falling back to Cycles for this small job")
                job["engine"] = "CYCLES"
                info["generator"]["engine"] = "CYCLES"
                (work / "job.json").write_text(json.dumps(job))
                run_renderer(work / "job.json", log)
            info["generator"]["render_seconds"] = round(time.time() - t1, 1)
            info["generator"]["images"] = images
        info["generator"]["geometry_seconds"] = round(t_geo, 1)
        (out / "dataset.json").write_text(json.dumps(info, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"dataset written to {out} in {time.time() - t0:.1f} s")
    return out


def _is_generated(folder: Path) -> bool:
    try:
        info = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (isinstance(info, dict) and info.get("format") == DATASET_FORMAT
            and isinstance(info.get("generator"), dict)
            and info["generator"].get("name") == "emotalk3d synthetic")


def renderer_command(job: Path) -> list[str]:
    """How to start the renderer: this interpreter if it has bpy, else a Blender binary
    (``EMOTALK3D_BLENDER`` or ``blender`` on the PATH)."""
    root = str(Path(__file__).resolve().parents[4])
    if importlib.util.find_spec("bpy") is not None:
        return [sys.executable, "-m", "emotalk3d_addon.synth_render", str(job)]
    blender = os.environ.get("EMOTALK3D_BLENDER") or shutil.which("blender")
    if not blender:
        raise GeneratorError("rendering needs Blender: install the bpy module in this environment, "
                             "or set EMOTALK3D_BLENDER to a Blender executable")
    expr = (f"import sys; sys.path.insert(0, {root!r}); "
            f"from emotalk3d_addon.synth_render.render import main; "
            f"rc = main([{str(job)!r}]); rc and (_ for _ in ()).throw(SystemExit(rc))")
    return [blender, "-b", "--factory-startup", "--python-exit-code", "2", "--python-expr", expr]


def run_renderer(job: Path, log=print) -> None:
    """Run the renderer on a job file, streaming its progress lines to ``log``."""
    cmd = renderer_command(job)
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[4])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as errfile:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errfile, text=True, env=env,
                                cwd=str(job.parent))
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            if line.startswith("rendered ") or line.startswith("done:"):
                log(line)
        rc = proc.wait()
        errfile.seek(0)
        err = errfile.read()
    if rc != 0:
        tail = [l for l in err.splitlines() if l.strip() and "EGL Error" not in l][-6:]
        no_gl = any(k in err for k in ("No OpenGL", "epoxy", "GLX or EGL", "EGL_BAD"))
        hint = (" (Workbench renders through OpenGL: install Mesa's EGL/OpenGL, e.g. Debian "
                "libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1, or render with engine CYCLES)") if no_gl else ""
        raise RendererError(f"the Blender renderer failed (exit {rc}){hint}: " + " | ".join(tail), no_gl)
