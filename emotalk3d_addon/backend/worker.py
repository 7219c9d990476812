"""The worker process: the backend's request loop for the Blender extension (no bpy).

Blender never imports torch. It starts this module with an interpreter that has the
backend's dependencies::

    python -m <package>.backend.worker

and talks to it in JSON lines (protocol version ``PROTOCOL``):

* requests on stdin, one JSON object a line: ``{"id": n, "op": name, "params": {...}}``;
* replies on the process's *original* stdout, one JSON object a line:
  ``{"type": "hello", ...}`` once at start, then per request any number of
  ``{"id": n, "type": "progress", "fraction": x, "message": s}`` and exactly one
  ``{"id": n, "type": "result", ...}`` or ``{"id": n, "type": "error", "kind": k,
  "message": s}`` (kind: ``input`` for bad input, ``missing`` for a missing
  dependency, ``internal`` for a bug; ``traceback`` is added for internal errors).

Python's ``sys.stdout`` (and file descriptor 1) are redirected to stderr before anything
else runs, so library prints can never corrupt the protocol. Arrays never cross as
text: the worker writes ``.npy`` files (no pickle) into the request's ``out_dir`` and
replies with their paths. Requests are served one at a time; the process lives until
``shutdown`` or end of stdin, keeping subjects, models and speech features loaded.
A cancel is the client killing this process.

Ops:

``ping``          versions of Python/torch/numpy, CUDA availability.
``load_subject``  {subject, library?, out_dir} -> manifest, fingerprint, arrays
                  (template (V,3) f32, triangles (T,3) i32, uvs (V,2) f32,
                  components (K,V,3) f32).
``perform``       {subject, library?, audio, fps: [num, den], emotion, device?, encoder?,
                  cache_mb?, out_dir, return_vertices?} -> coefficients (F,K) f32 =
                  ``basis.project(vertices - template)``, emotion (F,8) f32,
                  intensity (F,) f32, the subject's arrays, the basis error of this
                  performance (mm; measured on at most MAX_ERROR_FRAMES evenly spread
                  frames) and timings. ``emotion`` is one of
                  ``{"mode": "constant", "emotion": name, "intensity": x}``,
                  ``{"mode": "keys", "keys": [{frame, emotion, intensity}], "fill_from_speech": bool,
                  "reach": frames}``, ``{"mode": "speech"}``.
``render_frame``  {subject, library?, vertices? (.npy (V,3) f32 subject space, metres; the
                  template when absent), object_to_world? (16 numbers, row-major), emotion
                  (8 weights), intensity, camera {K (9), world_to_camera (16, OpenCV axes),
                  width, height, near, far}, device?, rows? ("bottom_up" for Blender),
                  colors? ("linear": sRGB decoded to linear light), out_dir}
                  -> arrays combined (H,W,4) straight RGBA, depth (H,W) camera z in metres
                  (1e10 where empty), face_matte (H,W); device used, warnings, timings.
                  The subject's Gaussians stay loaded between frames; no state is carried
                  from one frame to the next.
``shutdown``      reply, then exit.

On a CUDA out-of-memory error ``perform`` and ``render_frame`` redo the work on the CPU
and say so in the result's ``warnings``.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
import traceback
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

from .protocol import OP_SHUTDOWN, OPS, PROTOCOL

FILL_REACH_DEFAULT = 12.0
MAX_ERROR_FRAMES = 600      # the reported basis error is measured on at most this many frames (evenly spread)

Send = Callable[[dict], None]


class WorkerInputError(Exception):
    """A request the worker cannot serve because of its parameters."""


# --------------------------------------------------------------------------- pure helpers


def blend_keys_with_speech(keys_weights, keys_intensity, speech_weights, speech_intensity,
                           key_frames, reach: float):
    """Emotion from speech fills the gaps between keys.

    Each key pins the emotion at its frame; its influence falls off linearly to zero
    ``reach`` frames away, and the extractor's track holds wherever no key reaches.
    Weights stay convex combinations (rows sum to 1). Returns (weights, intensity).
    """
    import numpy as np

    num_frames = keys_weights.shape[0]
    t = np.arange(num_frames, dtype=np.float64)
    alpha = np.zeros(num_frames, np.float64)
    reach = max(float(reach), 1e-6)
    for k in key_frames:
        np.maximum(alpha, np.clip(1.0 - np.abs(t - float(k)) / reach, 0.0, 1.0), out=alpha)
    a = alpha[:, None]
    weights = a * keys_weights + (1.0 - a) * speech_weights
    intensity = alpha * keys_intensity + (1.0 - alpha) * speech_intensity
    return weights.astype(np.float32), intensity.astype(np.float32)


def _fraction(value: Any) -> Fraction:
    from .timebase import parse_fps

    if isinstance(value, (list, tuple)) and len(value) == 2:
        try:
            return parse_fps(Fraction(int(value[0]), int(value[1])))
        except (TypeError, ValueError, ZeroDivisionError):
            raise WorkerInputError(f"fps must be [numerator, denominator], got {value!r}") from None
    return parse_fps(value)


def _save(folder: Path, name: str, array) -> str:
    import numpy as np

    path = folder / f"{name}.npy"
    np.save(path, np.ascontiguousarray(array), allow_pickle=False)
    return str(path)


def _camera(spec: Any, Camera):
    """A raster Camera from {K: 9 numbers, world_to_camera: 16 (OpenCV axes), width, height, near?, far?}."""
    import torch

    from .errors import InputError

    if not isinstance(spec, dict):
        raise InputError("render_frame needs a camera {K, world_to_camera, width, height}")
    try:
        K = torch.tensor([float(v) for v in spec["K"]], dtype=torch.float64).reshape(3, 3)
        w2c = torch.tensor([float(v) for v in spec["world_to_camera"]], dtype=torch.float64).reshape(4, 4)
        camera = Camera(K.float(), w2c.float(), int(spec["width"]), int(spec["height"]),
                        float(spec.get("near", 0.01)), float(spec.get("far", 1e10)))
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise InputError(f"render_frame: bad camera ({exc})") from None
    if not (torch.isfinite(K).all() and torch.isfinite(w2c).all()):
        raise InputError("render_frame: the camera has NaN or infinite values")
    if camera.width * camera.height > 16384 * 16384:
        raise InputError(f"render_frame: {camera.width}x{camera.height} pixels is more than this renderer supports")
    return camera


def _file_key(path: Path) -> tuple:
    st = path.stat()
    return (str(path), st.st_size, st.st_mtime_ns)


# --------------------------------------------------------------------------- the worker


class Worker:
    """Request handlers with the state kept between requests."""

    def __init__(self, send: Send):
        self.send = send
        self._subjects: dict[str, tuple[float, Any, str]] = {}     # path -> (mtime, Subject, fingerprint)
        self._runtimes: dict[tuple, Any] = {}
        self._waveforms: dict[tuple, Any] = {}
        self._features: dict[tuple, Any] = {}
        self._speech_emotion: dict[tuple, Any] = {}
        self._exported: dict[str, dict[str, str]] = {}            # fingerprint -> array paths
        self._renderers: dict[tuple, Any] = {}                    # (subject path, device) -> FrameRenderer
        self._cache = None

    # -- helpers ---------------------------------------------------------------------

    def _subject(self, name: str, library: list[str]):
        from .subject import load_subject, resolve_subject

        path = resolve_subject(name, library)
        mtime = path.stat().st_mtime
        if (path / "subject.json").is_file():
            mtime = max(mtime, (path / "subject.json").stat().st_mtime)
        key = str(path)
        hit = self._subjects.get(key)
        if hit is None or hit[0] != mtime:
            subject = load_subject(path)
            h = hashlib.sha256()
            for arr in (subject.geometry.template, subject.geometry.triangles, subject.basis.components):
                h.update(memoryview(arr).cast("B"))
            hit = (mtime, subject, h.hexdigest()[:16])
            self._subjects[key] = hit
            self._runtimes = {k: v for k, v in self._runtimes.items() if k[0] != key}
        return key, hit[1], hit[2]

    def _subject_arrays(self, subject, fingerprint: str, out_dir: Path) -> dict[str, str]:
        """The subject's arrays as .npy files (written once per worker and fingerprint)."""
        import numpy as np

        paths = self._exported.get(fingerprint)
        if paths and all(Path(p).is_file() for p in paths.values()):
            return paths
        folder = out_dir.parent / f"subject-{fingerprint}"
        folder.mkdir(parents=True, exist_ok=True)
        g = subject.geometry
        paths = {"template": _save(folder, "template", g.template.astype(np.float32)),
                 "triangles": _save(folder, "triangles", g.triangles.astype(np.int32)),
                 "uvs": _save(folder, "uvs", g.uvs.astype(np.float32)),
                 "components": _save(folder, "components", subject.basis.components.astype(np.float32))}
        self._exported[fingerprint] = paths
        return paths

    def _subject_info(self, subject, fingerprint: str, out_dir: Path) -> dict:
        return {"name": subject.name, "root": str(subject.root), "fingerprint": fingerprint,
                "manifest": subject.manifest, "num_vertices": subject.geometry.num_vertices,
                "num_triangles": subject.geometry.num_triangles,
                "num_components": subject.basis.num_components,
                "arrays": self._subject_arrays(subject, fingerprint, out_dir)}

    def _feature_cache(self, cache_mb: int):
        from .paths import default_cache_dir
        from .speech.cache import FeatureCache

        if self._cache is None:
            self._cache = FeatureCache(max_bytes=int(cache_mb) << 20, directory=default_cache_dir() / "features")
        self._cache.max_bytes = int(cache_mb) << 20
        return self._cache

    def _runtime(self, key: str, subject, dev, encoder: str, cache_mb: int):
        from .pipeline import SubjectRuntime
        from .speech.encoder import encoder_spec_from_name

        rkey = (key, str(dev), encoder or "")
        runtime = self._runtimes.get(rkey)
        if runtime is None:
            spec = encoder_spec_from_name(encoder) if encoder else None
            runtime = SubjectRuntime(subject, dev, self._feature_cache(cache_mb), spec)
            self._runtimes[rkey] = runtime
        else:
            self._feature_cache(cache_mb)
        return runtime

    def _waveform(self, audio: str):
        from .audio import load_audio
        from .errors import AudioError

        path = Path(audio).expanduser()
        if not path.is_file():
            raise AudioError(f"audio file not found: {audio}")
        key = _file_key(path)
        wave = self._waveforms.get(key)
        if wave is None:
            wave = load_audio(path)
            if len(self._waveforms) >= 8:
                self._waveforms.pop(next(iter(self._waveforms)))
            self._waveforms[key] = wave
        return wave

    # -- ops ------------------------------------------------------------------------

    def op_ping(self, params: dict, progress) -> dict:
        for mod in ("numpy", "torch", "safetensors", "soundfile", "transformers"):
            try:
                __import__(mod)
            except ImportError as exc:
                raise MissingDependency(_missing_message(mod, exc)) from None
        import numpy
        import torch

        return {"protocol": PROTOCOL, "python": sys.version.split()[0], "executable": sys.executable,
                "torch": torch.__version__, "numpy": numpy.__version__,
                "cuda": bool(torch.cuda.is_available()), "pid": os.getpid(),
                "torch_threads": torch.get_num_threads()}

    def op_load_subject(self, params: dict, progress) -> dict:
        out_dir = Path(params["out_dir"])
        _, subject, fingerprint = self._subject(str(params.get("subject", "")), list(params.get("library") or []))
        return {"subject": self._subject_info(subject, fingerprint, out_dir)}

    def op_perform(self, params: dict, progress) -> dict:
        import numpy as np

        from .emotion_keys import EmotionKey, EmotionTrack, constant_track, track_from_keys
        from .emotions import EMOTIONS
        from .timebase import frame_count

        timings: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[name] = round(now - clock, 4)
            clock = now

        out_dir = Path(params["out_dir"])
        out_dir.mkdir(parents=True, exist_ok=True)
        fps = _fraction(params.get("fps", 30))
        progress(0.05, "Loading the subject")
        key, subject, fingerprint = self._subject(str(params.get("subject", "")), list(params.get("library") or []))
        lap("subject")
        progress(0.15, "Decoding the audio")
        wave = self._waveform(str(params.get("audio", "")))
        lap("audio")
        warnings: list[str] = []
        encoder, cache_mb = str(params.get("encoder") or ""), int(params.get("cache_mb") or 512)

        def work(device):
            runtime = self._runtime(key, subject, device, encoder, cache_mb)
            progress(0.25, "Speech features")
            fkey = (wave.content_hash(), runtime.encoder.encoder_id, fps, str(runtime.device))
            features = self._features.get(fkey)
            cached = features is not None
            if features is None:
                features = runtime.frame_features(wave, fps)
                self._features = {fkey: features}       # keep the latest clip's frame features
                self._speech_emotion = {}
            lap("features")
            delay = float(params.get("debug_delay", 0) or 0)   # testing aid: a long-running request
            if delay > 0:
                progress(0.3, "Waiting (debug delay)")
                time.sleep(delay)
            progress(0.5, "Emotion track")
            emotion = self._emotion_track(params.get("emotion") or {"mode": "speech"}, runtime, features, fkey,
                                          frame_count(wave.samples.size, wave.sample_rate, fps), EmotionKey,
                                          EmotionTrack, constant_track, track_from_keys)
            lap("emotion")
            progress(0.6, "S2GNet")
            track = runtime.perform_features(features, fps, emotion)
            lap("s2g")
            return track, cached

        from .device import resolve_device, run_with_fallback

        (track, features_cached), used = run_with_fallback(
            work, resolve_device(str(params.get("device") or "auto")), warnings, "speech-to-geometry")
        progress(0.85, "Projecting onto the motion basis")
        displacements = track.vertices - subject.geometry.template[None]
        coefficients = subject.basis.project(displacements)
        stride = max(1, -(-displacements.shape[0] // MAX_ERROR_FRAMES))
        residual_sq = _residual_sq(subject.basis, coefficients[::stride], displacements[::stride])
        lap("project")
        result = {
            "num_frames": int(track.num_frames), "num_components": int(subject.basis.num_components),
            "fps": [fps.numerator, fps.denominator], "emotion_names": list(EMOTIONS),
            "basis_rms_mm": 1000.0 * float(np.sqrt(residual_sq.mean())) if residual_sq.size else 0.0,
            "basis_max_mm": 1000.0 * float(np.sqrt(residual_sq.max())) if residual_sq.size else 0.0,
            "basis_error_frames": int(residual_sq.shape[0]),
            "features_cached": features_cached, "device": str(used), "warnings": warnings,
            "arrays": {"coefficients": _save(out_dir, "coefficients", coefficients.astype(np.float32)),
                       "emotion": _save(out_dir, "emotion", track.emotion.astype(np.float32)),
                       "intensity": _save(out_dir, "intensity", track.intensity.astype(np.float32))},
            "subject": self._subject_info(subject, fingerprint, out_dir),
        }
        if params.get("return_vertices"):
            result["arrays"]["vertices"] = _save(out_dir, "vertices", track.vertices.astype(np.float32))
        lap("write")
        result["timings"] = timings
        return result

    def _renderer(self, key: str, subject, device):
        from .pipeline import FrameRenderer

        rkey = (key, str(device))
        renderer = self._renderers.get(rkey)
        if renderer is None:
            # a FrameRenderer moves the subject's Gaussians to its device: one device per subject
            self._renderers = {k: v for k, v in self._renderers.items() if k[0] != key}
            renderer = FrameRenderer(subject, device)
            self._renderers[rkey] = renderer
        return renderer

    def op_render_frame(self, params: dict, progress) -> dict:
        import numpy as np

        from .device import resolve_device, run_with_fallback
        from .errors import InputError
        from .raster import Camera

        clock = time.perf_counter()
        out_dir = Path(params["out_dir"])
        out_dir.mkdir(parents=True, exist_ok=True)
        key, subject, _ = self._subject(str(params.get("subject", "")), list(params.get("library") or []))
        camera = _camera(params.get("camera"), Camera)
        vertices_path = params.get("vertices")
        if vertices_path:
            vertices = np.load(str(vertices_path), allow_pickle=False)
        else:
            vertices = subject.geometry.template
        try:
            weights = np.asarray(params.get("emotion") or [1.0] + [0.0] * 7, np.float32).reshape(8)
            intensity = float(params.get("intensity", 0.0))
            matrix = params.get("object_to_world")
            matrix = None if matrix is None else np.asarray(matrix, np.float64).reshape(4, 4)
        except (TypeError, ValueError):
            raise InputError("render_frame: emotion must be 8 numbers, object_to_world 16") from None
        if not (np.isfinite(weights).all() and np.isfinite(intensity)):
            raise InputError("render_frame: the emotion state is not finite")
        warnings: list[str] = []
        timings: dict[str, float] = {}
        device = resolve_device(str(params.get("device") or "auto"))
        timings["setup"] = time.perf_counter() - clock

        def render(dev):
            return self._renderer(key, subject, dev).render_layers(
                vertices, weights, intensity, camera, matrix, timings,
                bottom_up=params.get("rows") == "bottom_up", linear=params.get("colors") == "linear")

        layers, used = run_with_fallback(render, device, warnings, "rendering")
        clock = time.perf_counter()
        arrays = {name: _save(out_dir, name, array) for name, array in layers.items()}
        timings["write"] = time.perf_counter() - clock
        return {"arrays": arrays, "device": str(used), "warnings": warnings,
                "timings": {k: round(v, 6) for k, v in timings.items()},
                "width": camera.width, "height": camera.height}

    def _emotion_track(self, spec: dict, runtime, features, fkey, num_frames, EmotionKey, EmotionTrack,
                       constant_track, track_from_keys):
        from .errors import InputError

        if not isinstance(spec, dict):
            raise InputError(f"emotion must be an object, got {spec!r}")
        mode = spec.get("mode", "speech")
        if mode == "constant":
            return constant_track(str(spec.get("emotion", "neutral")), float(spec.get("intensity", 1.0)), num_frames)
        if mode == "speech":
            return self._speech_track(runtime, features, fkey)
        if mode != "keys":
            raise InputError(f"emotion mode must be constant, keys or speech, got {mode!r}")
        raw = spec.get("keys") or []
        if not isinstance(raw, list) or not raw:
            raise InputError("emotion keys: give a non-empty list of {frame, emotion, intensity}")
        keys = []
        for n, item in enumerate(raw):
            try:
                keys.append(EmotionKey(float(item["frame"]), str(item["emotion"]).strip().lower(),
                                       float(item.get("intensity", 1.0))))
            except (KeyError, TypeError, ValueError, AttributeError):
                raise InputError(f"emotion key {n} must be {{frame, emotion, intensity}}, got {item!r}") from None
        keyed = track_from_keys(keys, num_frames)
        if not spec.get("fill_from_speech"):
            return keyed
        speech = self._speech_track(runtime, features, fkey)
        w, i = blend_keys_with_speech(keyed.weights, keyed.intensity, speech.weights, speech.intensity,
                                      [k.frame for k in keys], float(spec.get("reach", FILL_REACH_DEFAULT)))
        return EmotionTrack(w, i)

    def _speech_track(self, runtime, features, fkey):
        track = self._speech_emotion.get(fkey)
        if track is None:
            track = runtime.emotion_from_speech(features)
            self._speech_emotion = {fkey: track}
        return track


def _residual_sq(basis, coefficients, displacements):
    """Per-vertex squared distance (m^2) between the track and its basis reconstruction."""
    import numpy as np

    out = np.empty(displacements.shape[:2], np.float64)
    step = max(1, (1 << 22) // max(1, displacements.shape[1] * 3))
    for r in range(0, displacements.shape[0], step):
        diff = basis.expand(coefficients[r:r + step]) - displacements[r:r + step]
        out[r:r + step] = np.einsum("fvc,fvc->fv", diff, diff, dtype=np.float64)
    return out


class MissingDependency(Exception):
    """The interpreter lacks a package the backend needs."""


def _missing_message(module: str, exc: BaseException) -> str:
    return (f"the backend Python {sys.executable} lacks the package {module!r} ({exc}): use Install Backend "
            "in the EmoTalk3D add-on preferences, or choose a Python that has the backend's packages")


# --------------------------------------------------------------------------- the loop


def _protocol_stream():
    """Keep the original stdout for the protocol; send everything else printed to stderr."""
    proto_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(proto_fd, "w", buffering=1, encoding="utf-8", newline="\n")


def serve(stdin, proto) -> int:
    lock = threading.Lock()

    def send(message: dict) -> None:
        line = json.dumps(message, allow_nan=False, default=str)
        with lock:
            proto.write(line + "\n")
            proto.flush()

    worker = Worker(send)
    send({"type": "hello", "protocol": PROTOCOL, "pid": os.getpid(), "python": sys.version.split()[0],
          "executable": sys.executable})
    for line in stdin:
        line = line.strip()
        if not line:
            continue
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("a request must be a JSON object")
        except ValueError as exc:
            send({"id": None, "type": "error", "kind": "protocol", "message": f"bad request line: {exc}"})
            continue
        rid, op = request.get("id"), str(request.get("op", ""))
        params = request.get("params") or {}
        if op == OP_SHUTDOWN:
            send({"id": rid, "type": "result", "ok": True})
            return 0
        handler = getattr(worker, f"op_{op}", None) if op in OPS else None
        if handler is None:
            send({"id": rid, "type": "error", "kind": "protocol", "message": f"unknown op {op!r}"})
            continue

        def progress(fraction: float, message: str, rid=rid) -> None:
            send({"id": rid, "type": "progress", "fraction": float(fraction), "message": str(message)})

        send({"id": rid, "type": "progress", "fraction": 0.0, "message": "Started"})
        try:
            result = handler(params, progress)
        except MissingDependency as exc:
            send({"id": rid, "type": "error", "kind": "missing", "message": str(exc)})
        except Exception as exc:  # noqa: BLE001 - every failure becomes a reply
            send(_error_reply(rid, exc))
        else:
            send({"id": rid, "type": "result", **result})
    return 0


def _error_reply(rid, exc: Exception) -> dict:
    try:
        from .errors import InputError
    except ImportError:  # pragma: no cover
        InputError = ()  # type: ignore[assignment]
    if isinstance(exc, ModuleNotFoundError):
        return {"id": rid, "type": "error", "kind": "missing",
                "message": _missing_message(str(exc.name or "?"), exc)}
    if isinstance(exc, (InputError, WorkerInputError)) or isinstance(exc, (FileNotFoundError, KeyError)):
        message = " ".join(str(exc).split()) or type(exc).__name__
        defects = getattr(exc, "defects", None)
        if defects:
            message = f"invalid subject bundle {exc.where}: " + "; ".join(defects)
        return {"id": rid, "type": "error", "kind": "input", "message": message}
    return {"id": rid, "type": "error", "kind": "internal",
            "message": f"{type(exc).__name__}: {' '.join(str(exc).split())}",
            "traceback": traceback.format_exc()}


def main() -> int:
    proto = _protocol_stream()
    try:
        return serve(sys.stdin, proto)
    except KeyboardInterrupt:
        return 130
    finally:
        try:
            proto.close()
        except OSError:
            pass


if __name__ == "__main__":
    sys.exit(main())
