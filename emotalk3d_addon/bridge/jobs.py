"""One generation, from the scene's settings to arrays in memory.

``build_request`` reads Blender (main thread) into a plain ``GenerateRequest``; a
``GenerateJob`` then runs in a background thread (or synchronously, headless): it starts
the worker if needed, sends ``perform``, follows its progress and loads the arrays
(``np.load(allow_pickle=False)``). It never touches bpy. ``cancel()`` kills the worker;
the scene is written only afterwards, by ``apply.apply_generation`` on the main thread.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..backend.protocol import OP_LOAD_SUBJECT, OP_PERFORM
from ..backend.protocol.messages import EmotionSpec, PerformReply, PerformRequest, SubjectSummary
from . import worker_client
from .errors import UserError
from .settings import Settings
from .worker_client import WorkerError

_ACTIVE: "Job | None" = None
_ACTIVE_LOCK = threading.Lock()


def active_job() -> "Job | None":
    return _ACTIVE


# --------------------------------------------------------------------------- request


@dataclass
class GenerateRequest:
    python: str
    subject: str                 # resolved bundle path
    subject_ref: str             # what the scene stores
    audio: str
    audio_is_file: bool
    start_frame: float
    strip: str
    fps: Fraction
    emotion: dict
    scene: str = ""
    device: str = "auto"
    encoder: str = ""
    cache_mb: int = 512
    push_to_nla: bool = False
    reuse_action: bool = False
    return_vertices: bool = False
    debug_delay: float = 0.0
    arkit_neutral: bool = False       # a target character: the neutral weights too (the emotion strength's base)
    exact_frame_range: bool = False   # the scene's range becomes the performance's (else only widened)

    def params(self) -> dict:
        """The worker's ``perform`` request (``PerformRequest``'s wire form)."""
        return PerformRequest(self.subject, self.audio, (self.fps.numerator, self.fps.denominator),
                              EmotionSpec.from_dict(self.emotion), device=self.device, encoder=self.encoder,
                              cache_mb=int(self.cache_mb), return_vertices=bool(self.return_vertices),
                              debug_delay=float(self.debug_delay), arkit_neutral=bool(self.arkit_neutral)).to_dict()

    @property
    def audio_stem(self) -> str:
        return Path(self.audio).stem or "speech"


def build_request(scene, settings: Settings, reuse_action: bool = False, **extra: Any) -> GenerateRequest:
    """Everything a generation needs from the scene and the settings; UserError naming what is missing."""
    import bpy

    from . import keys, sequencer, subjects, timing

    s = scene.emotalk3d
    if not s.subject:
        raise UserError("Choose a subject first (EmoTalk3D panel > Subject)")
    dirs = settings.library_dirs()
    bundle = subjects.resolve(bpy.path.abspath(s.subject) if s.subject.startswith("//") else s.subject, dirs)
    if bundle is None:
        raise UserError(f"Subject {s.subject!r} was not found in: " + ", ".join(str(d) for d in dirs))
    if s.audio_source == 'FILE':
        if not s.audio_file.strip():
            raise UserError("Choose an audio file or a sound strip")
        audio = os.path.normpath(bpy.path.abspath(s.audio_file))
        if not os.path.isfile(audio):
            raise UserError(f"Audio file not found: {audio}")
        start, strip_name = float(s.audio_start), ""
    else:
        strip = sequencer.find_strip(scene, s.strip)
        if strip is None or strip.type != 'SOUND':
            raise UserError(f"No sound strip named {s.strip!r} in scene {scene.name!r}")
        audio = sequencer.strip_audio_path(strip)
        if not os.path.isfile(audio):
            raise UserError(f"The sound strip's file is missing: {audio}")
        start, strip_name = float(strip.frame_start), strip.name
    try:
        python = settings.python_path()
    except WorkerError as exc:
        raise UserError(str(exc)) from None
    return GenerateRequest(
        python=python, subject=str(bundle), subject_ref=s.subject, audio=audio, audio_is_file=s.audio_source == 'FILE',
        start_frame=start, strip=strip_name, fps=timing.effective_fps(scene.render.fps, scene.render.fps_base),
        emotion=keys.emotion_spec(scene, s, start), scene=scene.name, device=settings.device,
        encoder=settings.encoder, cache_mb=settings.cache_mb, push_to_nla=bool(s.push_to_nla),
        reuse_action=reuse_action, arkit_neutral=s.target is not None, **extra)


# --------------------------------------------------------------------------- jobs


class Job:
    """Work for the worker, run in a thread (``start``) or in the caller's (``run``)."""

    kind = "job"

    def __init__(self, python: str):
        self.python = python
        self.state = "pending"           # pending, running, done, error, cancelled
        self.fraction = 0.0
        self.message = "Waiting"
        self.error = ""
        self.error_kind = ""
        self.result: Any = None
        self._cancelled = False
        self._thread: threading.Thread | None = None

    @property
    def finished(self) -> bool:
        return self.state in ("done", "error", "cancelled")

    def _progress(self, fraction: float, message: str) -> None:
        self.fraction = max(0.0, min(1.0, float(fraction)))
        self.message = message

    def _check(self) -> None:
        if self._cancelled:
            raise WorkerError("cancelled", "cancelled")

    def _work(self) -> Any:
        raise NotImplementedError

    def run(self) -> "Job":
        global _ACTIVE
        with _ACTIVE_LOCK:
            if _ACTIVE is not None and _ACTIVE is not self and not _ACTIVE.finished:
                self.state, self.error, self.error_kind = "error", "Another EmoTalk3D job is running", "busy"
                return self
            _ACTIVE = self
        self.state = "running"
        try:
            self.result = self._work()
            self._check()
            self.state = "done"
            self._progress(1.0, "Done")
        except WorkerError as exc:
            if self._cancelled or exc.kind == "cancelled":
                self.state, self.error, self.error_kind = "cancelled", "Cancelled", "cancelled"
            else:
                self.state, self.error, self.error_kind = "error", str(exc), exc.kind
        except Exception as exc:  # noqa: BLE001 - reported in Blender, never raised into its UI
            self.state = "cancelled" if self._cancelled else "error"
            self.error, self.error_kind = f"{type(exc).__name__}: {exc}", "internal"
        finally:
            with _ACTIVE_LOCK:
                if _ACTIVE is self:
                    _ACTIVE = None
        return self

    def start(self) -> "Job":
        self._thread = threading.Thread(target=self.run, name=f"emotalk3d-{self.kind}", daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def cancel(self) -> None:
        """Stop now: the worker process is killed (it restarts on the next call)."""
        self._cancelled = True
        client = worker_client.current_client()
        if client is not None and client.python == self.python:
            client.kill()
        self.join(10)
        if not self.finished:
            self.state = "cancelled"

    def _client(self) -> worker_client.WorkerClient:
        client = worker_client.get_client(self.python)
        self._check()
        if not client.alive or not client.info:
            self._progress(0.02, "Starting the backend")
        client.ensure_started(on_progress=lambda f, m: self._progress(0.02 + 0.03 * f, m))
        self._check()
        return client


@dataclass
class GenerationResult:
    coefficients: np.ndarray          # (F, K) float32
    emotion: np.ndarray               # (F, 8)
    intensity: np.ndarray             # (F,)
    subject: dict                     # name, fingerprint, manifest, num_vertices, num_components
    subject_arrays: dict[str, np.ndarray]
    info: dict = field(default_factory=dict)     # num_frames, fps, basis_*_mm, timings, features_cached
    vertices: np.ndarray | None = None
    arkit: np.ndarray | None = None               # (F, 52) ARKit weights, when the subject has ARKit shapes
    arkit_neutral: np.ndarray | None = None       # (F, 52) the same clip performed neutral


def _load_arrays(paths: dict[str, str]) -> dict[str, np.ndarray]:
    return {name: np.load(path, allow_pickle=False) for name, path in paths.items()}


class GenerateJob(Job):
    kind = "generate"

    def __init__(self, request: GenerateRequest):
        super().__init__(request.python)
        self.request = request

    def _work(self) -> GenerationResult:
        client = self._client()
        call = client.submit(OP_PERFORM, self.request.params())
        try:
            reply = PerformReply.from_dict(call.wait(on_progress=lambda f, m: self._progress(0.05 + 0.85 * f, m)))
            self._check()
            self._progress(0.92, "Reading the performance")
            arrays = _load_arrays(reply.arrays)
            subject_arrays = _load_arrays(reply.subject.arrays)
        finally:
            call.cleanup()
        subject = {k: v for k, v in reply.subject.to_dict().items() if k != "arrays"}
        return GenerationResult(arrays["coefficients"], arrays["emotion"], arrays["intensity"], subject,
                                subject_arrays, reply.info(), arrays.get("vertices"), arrays.get("arkit"),
                                arrays.get("arkit_neutral"))


class SubjectJob(Job):
    """Load a subject's arrays (for "Add Head")."""

    kind = "subject"

    def __init__(self, python: str, subject: str):
        super().__init__(python)
        self.subject = subject

    def _work(self) -> dict:
        client = self._client()
        self._progress(0.5, "Loading the subject")
        call = client.submit(OP_LOAD_SUBJECT, {"subject": self.subject})
        try:
            summary = SubjectSummary.from_dict(call.wait()["subject"])
            subject = summary.to_dict()
            subject["arrays"] = _load_arrays(summary.arrays)
        finally:
            call.cleanup()
        return subject


class CheckJob(Job):
    """Start the worker and report what it runs on."""

    kind = "check"

    def _work(self) -> dict:
        self._progress(0.1, "Starting the backend")
        return dict(self._client().info)
