"""The Performance service: speech -> a subject's performance, with one cache policy.

The worker, ``emotalk3d predict``, the demo and ``evaluate`` all perform through it:

    PerformRequest -> subject (loaded once) -> waveform -> model-rate features -> emotion track
                   -> S2GNet vertices -> basis coefficients -> mouth closed in silence
                   -> the performance: template + basis mix (what Blender's shape keys show)

There is one performance: the track every caller gets (``predict``'s TRACK.npz, renders, the
evaluations) is the motion-basis mix of the coefficients Blender keys, and the ARKit weights
are solved from the same coefficients. S2GNet's own vertices are only projected and then
dropped (a sample of them is kept for the basis error). Where the waveform is silent
(``silence.py``) the mouth and jaw are moved toward the neutral template
(``mouth_closure.py``), from 100 ms before each onset of speech; the eyes and brows keep the
emotion.

The speech models run on ``device.compute_device(request.device)``: under "auto" a CUDA GPU,
else an Apple Silicon GPU (MPS), else the CPU; a GPU that runs out of memory (or an MPS
operator Metal lacks) hands the step to the CPU with a warning.

Cache policy, the same for every caller:

* subjects: kept by bundle path, loaded again when the bundle or its manifest changes;
* runtimes (encoder, extractor, S2GNet): one per subject, device and encoder;
* waveforms: the 8 most recent audio files (by path, size and modification time);
* model-rate features and the emotion heard in them: the latest clip only (a key edit re-uses
  both, so a re-generation only re-runs S2GNet);
* encoder outputs: ``FeatureCache`` (memory within a byte budget, plus disk);
* the ARKit solver of each subject (its normal equations). A solve is not kept: after an
  emotion edit every frame after the key moves, and a fresh solve of 60 s takes tens of
  milliseconds (a warm start from the previous weights took more sweeps, BENCHMARKS.md).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..io.audio import Waveform, load_audio
from ..arkit.solve import ArkitFit, ArkitSolver
from ..device import compute_device, run_with_fallback
from ..errors import AudioError
from ..geometry.basis import BasisError
from ..paths import default_cache_dir
from ..protocol.messages import EmotionSpec, PerformRequest
from ..speech.cache import FeatureCache
from ..speech.encoder import encoder_spec_from_name
from ..subject import Subject, load_subject, resolve_subject
from ..timebase import frame_count, parse_fps
from ..io.track import VertexTrack
from .basis_frames import basis_error, error_sample, project_track, shape_key_vertices
from .emotion_track import EmotionTrack, emotion_track
from .mouth_closure import MouthClosure
from .silence import mouth_gate, voice_activity
from .runtime import SubjectRuntime

Progress = Callable[[float, str], None]
MAX_WAVEFORMS = 8


@dataclass(frozen=True)
class LoadedSubject:
    """A subject as the service holds it: its bundle path (the cache key) and a fingerprint
    of its mesh and basis (16 hex digits; the Blender side re-uses its shape keys while it holds)."""

    path: str
    subject: Subject
    fingerprint: str
    stamp: tuple


@dataclass
class PerformanceResult:
    """A performance: one track, its basis coefficients, its ARKit weights on demand."""

    loaded: LoadedSubject
    track: VertexTrack                     # vertices (F, V, 3) float32 metres: template + basis mix
    coefficients: np.ndarray               # (F, K) float32: what Blender's shape keys are keyed with
    mouth_gate: np.ndarray                 # (F,) float32: 1 speech (mouth free), 0 silence (closed)
    features_cached: bool
    device: str
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    solver: ArkitSolver | None = None      # the subject's ARKit solve, when it has ARKit shapes
    s2g_sample: np.ndarray | None = None   # S2GNet's own vertices on at most MAX_ERROR_FRAMES frames
    _arkit: ArkitFit | None = None

    def basis_error(self) -> tuple[BasisError, int]:
        """How far the shape keys are from S2GNet's own vertices (mm) on at most
        ``MAX_ERROR_FRAMES`` evenly spread frames, and that count (silence closing not counted)."""
        if self.s2g_sample is None or self.s2g_sample.shape[0] == 0:
            return BasisError(0.0, 0.0), 0
        return basis_error(self.loaded.subject, self.s2g_sample, max_frames=self.s2g_sample.shape[0])

    def arkit(self) -> ArkitFit | None:
        """ARKit weights (F, 52) of the frames as Blender shows them, with the fit residual;
        None when the subject has no ARKit shapes."""
        if self.solver is None:
            return None
        if self._arkit is None:
            self._arkit = self.solver.solve(self.coefficients)
        return self._arkit

    def shape_key_vertices(self) -> np.ndarray:
        """(F, V, 3) float32: the frames as Blender shows them (the track itself)."""
        return self.track.vertices


def _stamp(path: Path) -> tuple:
    st = path.stat()
    manifest = path / "subject.json"
    inner = manifest.stat().st_mtime_ns if manifest.is_file() else 0
    return (st.st_mtime_ns, st.st_size if path.is_file() else 0, inner)


def _fingerprint(subject: Subject) -> str:
    h = hashlib.sha256()
    for arr in (subject.geometry.template, subject.geometry.triangles, subject.basis.components):
        h.update(memoryview(np.ascontiguousarray(arr)).cast("B"))
    return h.hexdigest()[:16]


class Performance:
    """Speech -> geometry for one process, with the cache policy above."""

    def __init__(self, cache: FeatureCache | None = None):
        self.cache = cache if cache is not None else FeatureCache(directory=default_cache_dir() / "features")
        self._subjects: dict[str, LoadedSubject] = {}
        self._runtimes: dict[tuple, SubjectRuntime] = {}
        self._waveforms: dict[tuple, Waveform] = {}
        self._latest: dict[str, object] = {}     # the latest clip: key, model-rate features, emotion from speech
        self._solvers: dict[str, tuple] = {}      # bundle path -> (stamp, ArkitSolver)
        self._closures: dict[str, tuple] = {}     # bundle path -> (stamp, MouthClosure)

    # -- what a performance is made from ------------------------------------------

    def subject(self, name: str, library: tuple[str, ...] | list[str] = ()) -> LoadedSubject:
        """The subject ``name`` (a library name or a bundle path), loaded once per bundle version."""
        path = resolve_subject(name, list(library))
        key, stamp = str(path), _stamp(path)
        hit = self._subjects.get(key)
        if hit is None or hit.stamp != stamp:
            subject = load_subject(path)
            hit = LoadedSubject(key, subject, _fingerprint(subject), stamp)
            self._subjects[key] = hit
            self._runtimes = {k: v for k, v in self._runtimes.items() if k[0] != key}
        return hit

    def add_subject(self, subject: Subject) -> LoadedSubject:
        """A subject already in memory (training and evaluation), kept under its root."""
        key = str(subject.root or f"<{subject.name}>")
        hit = LoadedSubject(key, subject, _fingerprint(subject), ("loaded", id(subject)))
        self._subjects[key] = hit
        return hit

    def runtime(self, loaded: LoadedSubject, device: torch.device, encoder: str = "") -> SubjectRuntime:
        key = (loaded.path, str(device), encoder)
        runtime = self._runtimes.get(key)
        if runtime is None or runtime.subject is not loaded.subject:
            spec = encoder_spec_from_name(encoder) if encoder else None
            runtime = SubjectRuntime(loaded.subject, device, self.cache, spec)
            self._runtimes[key] = runtime
        return runtime

    def waveform(self, audio: str | Path) -> Waveform:
        path = Path(audio).expanduser()
        if not path.is_file():
            raise AudioError(f"audio file not found: {audio}")
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        wave = self._waveforms.get(key)
        if wave is None:
            wave = load_audio(path)
            if len(self._waveforms) >= MAX_WAVEFORMS:
                self._waveforms.pop(next(iter(self._waveforms)))
            self._waveforms[key] = wave
        return wave

    # -- performing ----------------------------------------------------------------

    def perform(self, request: PerformRequest, progress: Progress | None = None) -> PerformanceResult:
        """The performance a request asks for (its ``out_dir`` is the caller's business)."""
        progress = progress or (lambda fraction, message: None)
        self.cache.max_bytes = int(request.cache_mb) << 20
        clock = [time.perf_counter()]
        timings: dict[str, float] = {}

        def lap(name: str) -> None:
            now = time.perf_counter()
            timings[name] = round(now - clock[0], 4)
            clock[0] = now

        fps = parse_fps(Fraction(*request.fps) if isinstance(request.fps, tuple) else request.fps)
        progress(0.05, "Loading the subject")
        loaded = self.subject(request.subject, request.library)
        lap("subject")
        progress(0.15, "Decoding the audio")
        wave = self.waveform(request.audio)
        lap("audio")
        result = self.perform_waveform(loaded, wave, fps, request.emotion, request.device, request.encoder,
                                       progress, request.debug_delay)
        result.timings = timings | result.timings
        return result

    def neutral_arkit(self, request: PerformRequest, device: str | None = None) -> np.ndarray | None:
        """(F, 52) ARKit weights of the request's clip performed neutral: the base an emotion
        strength scales from (speech only, no expression). Computed once per clip (the
        latest), so an emotion edit does not pay for it again; None without ARKit shapes.
        ``device``: where the performance itself ran (after a fallback, the CPU)."""
        loaded = self.subject(request.subject, request.library)
        if loaded.subject.arkit is None:
            return None
        wave = self.waveform(request.audio)
        fps = parse_fps(Fraction(*request.fps) if isinstance(request.fps, tuple) else request.fps)
        latest = self._latest
        hit = latest.get("neutral_arkit")
        if hit is not None and latest.get("neutral_for") == (loaded.path, loaded.stamp, request.encoder):
            return hit
        neutral = self.perform_waveform(loaded, wave, fps, EmotionSpec.constant("neutral"), device or request.device,
                                        request.encoder).arkit().weights
        self._latest["neutral_arkit"] = neutral
        self._latest["neutral_for"] = (loaded.path, loaded.stamp, request.encoder)
        return neutral

    def perform_waveform(self, loaded: LoadedSubject, wave: Waveform, fps: Fraction, emotion: EmotionSpec,
                         device: str = "auto", encoder: str = "", progress: Progress | None = None,
                         debug_delay: float = 0.0, close_silence: bool = True) -> PerformanceResult:
        """The performance of ``wave`` at ``fps`` with the emotion ``emotion`` asks for.
        ``close_silence`` False leaves the mouth as S2GNet moved it in silence (measurements)."""
        progress = progress or (lambda fraction, message: None)
        timings: dict[str, float] = {}
        warnings: list[str] = []
        num_frames = frame_count(wave.samples.size, wave.sample_rate, fps)

        def work(dev: torch.device):
            clock = time.perf_counter()
            runtime = self.runtime(loaded, dev, encoder)
            progress(0.25, "Speech features")
            key = (loaded.path, loaded.stamp, wave.content_hash(), runtime.encoder.encoder_id, fps, str(runtime.device))
            cached = self._latest.get("key") == key
            if not cached:
                self._latest = {"key": key, "features": runtime.model_features(wave)}
            features = self._latest["features"]
            timings["features"] = round(time.perf_counter() - clock, 4)
            if debug_delay > 0:
                progress(0.3, "Waiting (debug delay)")
                time.sleep(debug_delay)
            clock = time.perf_counter()
            progress(0.5, "Emotion track")
            track = emotion_track(emotion, num_frames,
                                  lambda: self._speech_emotion(runtime, features, fps, num_frames, wave))
            timings["emotion"] = round(time.perf_counter() - clock, 4)
            clock = time.perf_counter()
            progress(0.6, "S2GNet")
            vertices = runtime.perform_features(features, fps, track, num_frames)
            timings["s2g"] = round(time.perf_counter() - clock, 4)
            return vertices, cached

        # speech models: CUDA, else an Apple GPU (MPS), else the CPU; rendering resolves its own device
        (track, cached), used = run_with_fallback(work, compute_device(device), warnings, "speech-to-geometry")
        clock = time.perf_counter()
        progress(0.8, "Projecting onto the motion basis")
        subject = loaded.subject
        coefficients = project_track(subject, track.vertices)
        sample = error_sample(track.vertices)
        gate = mouth_gate(voice_activity(wave.samples, wave.sample_rate), track.num_frames, fps) if close_silence \
            else np.ones(track.num_frames, np.float32)
        coefficients = self._closure(loaded).apply(coefficients, gate)
        shape_key_vertices(subject, coefficients, out=track.vertices)      # in place: the one performance
        timings["basis"] = round(time.perf_counter() - clock, 4)
        return PerformanceResult(loaded, track, coefficients, gate, cached, str(used), warnings, timings,
                                 self._solver(loaded), sample)

    def _closure(self, loaded: LoadedSubject) -> MouthClosure:
        hit = self._closures.get(loaded.path)
        if hit is None or hit[0] != loaded.stamp:
            hit = (loaded.stamp, MouthClosure.of(loaded.subject))
            self._closures[loaded.path] = hit
        return hit[1]

    def _solver(self, loaded: LoadedSubject) -> ArkitSolver | None:
        if loaded.subject.arkit is None:
            return None
        hit = self._solvers.get(loaded.path)
        if hit is None or hit[0] != loaded.stamp:
            a, g = loaded.subject.arkit, loaded.subject.geometry
            hit = (loaded.stamp, ArkitSolver.build(a.shapes, a.present, loaded.subject.basis.components, g.face_mask))
            self._solvers[loaded.path] = hit
        return hit[1]

    def _speech_emotion(self, runtime: SubjectRuntime, features: torch.Tensor, fps: Fraction,
                        num_frames: int, wave: Waveform) -> EmotionTrack:
        track = self._latest.get("speech_emotion")
        if track is None:
            track = runtime.emotion_from_speech(features, fps, num_frames, wave)
            self._latest["speech_emotion"] = track
        return track
