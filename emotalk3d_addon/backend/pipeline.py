"""Performance (Speech -> Geometry) and FrameRenderer (Geometry -> Appearance).

``SubjectRuntime`` holds a subject's models, loaded once, and a feature cache, so a
re-generation after an emotion edit only re-runs S2GNet:

    waveform -> speech features (50 Hz, cached) -> per-frame features
             -> emotion track (keys, or the extractor) -> S2GNet -> template + displacements
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch

from .appearance.placement import apply_linear, split_object_matrix
from .audio import Waveform
from .layers import compositor_layers
from .emotion_keys import EmotionTrack
from .emotions import condition
from .errors import BundleError, InputError
from .geometry.s2gnet import S2GNet
from .raster import Camera, rasterize
from .speech.cache import FeatureCache
from .speech.emotion import EmotionExtractor
from .speech.encoder import EncoderSpec, SpeechEncoder, load_encoder
from .speech.framerate import features_to_frames
from .subject import Subject
from .timebase import frame_count
from .track import VertexTrack


def _load_module(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str, where: str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise BundleError(where, [f"{what} weights do not match their config: {str(exc).splitlines()[0]}"]) from None


class SubjectRuntime:
    """A subject's speech encoder, emotion extractor and S2GNet, ready to perform."""

    def __init__(self, subject: Subject, device: torch.device | str = "cpu",
                 cache: FeatureCache | None = None, encoder: EncoderSpec | SpeechEncoder | None = None):
        self.subject = subject
        self.device = torch.device(device)
        self.cache = cache if cache is not None else FeatureCache()
        where = str(subject.root or subject.name)
        if isinstance(encoder, SpeechEncoder):
            self.encoder = encoder
        else:
            self.encoder = load_encoder(encoder or subject.encoder, self.device)
        self.s2g = S2GNet(subject.s2g_config)
        _load_module(self.s2g, subject.s2g_state, "S2GNet", where)
        self.s2g.to(self.device).eval()
        self.emotion = EmotionExtractor(subject.emotion_config)
        _load_module(self.emotion, subject.emotion_state, "emotion extractor", where)
        self.emotion.to(self.device).eval()
        self.template = torch.from_numpy(subject.geometry.template)

    def speech_features(self, waveform: Waveform) -> torch.Tensor:
        """(T, D) float32 features at 50 Hz, from the cache when this audio was seen."""
        key = waveform.content_hash()
        features = self.cache.get(key, self.encoder.encoder_id)
        if features is None:
            features = self.encoder.encode(waveform)
            self.cache.put(key, self.encoder.encoder_id, features)
        return features

    def frame_features(self, waveform: Waveform, fps: Fraction) -> torch.Tensor:
        """(F, D) features at the animation frame rate, F = ceil(duration * fps)."""
        num_frames = frame_count(waveform.samples.size, waveform.sample_rate, fps)
        return features_to_frames(self.speech_features(waveform), num_frames, fps,
                                 centre_offset_s=self.encoder.centre_offset_s)

    def emotion_from_speech(self, frame_features: torch.Tensor) -> EmotionTrack:
        """The extractor's per-frame emotion track for (F, D) features."""
        weights, intensity = self.emotion.predict_track(frame_features.to(self.device))
        return EmotionTrack(weights.cpu().numpy().astype(np.float32), intensity.cpu().numpy().astype(np.float32))

    def perform(self, waveform: Waveform, fps: Fraction, emotion: EmotionTrack | None = None) -> VertexTrack:
        """Vertex track for the clip; ``emotion`` None -> predicted from speech."""
        features = self.frame_features(waveform, fps)
        return self.perform_features(features, fps, emotion)

    def perform_features(self, features: torch.Tensor, fps: Fraction,
                         emotion: EmotionTrack | None = None) -> VertexTrack:
        """Vertex track from (F, D) frame-rate features (the part re-run after a key edit)."""
        if emotion is None:
            emotion = self.emotion_from_speech(features)
        if emotion.num_frames != features.shape[0]:
            raise ValueError(f"emotion track has {emotion.num_frames} frames, audio {features.shape[0]}")
        cond = torch.from_numpy(condition(emotion.weights, emotion.intensity)).to(self.device)
        with torch.inference_mode():
            vertices = self.s2g.predict(features.to(self.device), cond)
            vertices.add_(self.template)       # in place: a long track is gigabytes
        vertices = vertices.numpy()
        return VertexTrack(vertices, fps, emotion.weights, emotion.intensity)


@dataclass
class Passes:
    """One rendered frame. rgb premultiplied on black (H, W, 3), alpha (H, W), depth (H, W)
    expected camera z in metres (0 where nothing), matte (H, W) the splatted dynamic share
    1 - W (premultiplied, like rgb)."""

    rgb: np.ndarray
    alpha: np.ndarray
    depth: np.ndarray
    matte: np.ndarray

    def compositor_layers(self, bottom_up: bool = False, linear: bool = False) -> dict[str, np.ndarray]:
        """``compositor_layers`` of these passes (numpy in, numpy out)."""
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32))
        return compositor_layers(t(self.rgb), t(self.alpha), t(self.depth), t(self.matte), bottom_up, linear)

    def rgba_straight(self) -> np.ndarray:
        """(H, W, 4) straight-alpha RGBA in [0, 1] (transparent background)."""
        a = self.alpha[..., None]
        rgb = np.where(a > 0, self.rgb / np.maximum(a, 1e-8), 0.0)
        return np.concatenate([np.clip(rgb, 0, 1), np.clip(a, 0, 1)], axis=-1).astype(np.float32)


class FrameRenderer:
    """Geometry -> Appearance: a mesh frame + emotion + camera -> render passes."""

    def __init__(self, subject: Subject, device: torch.device | str = "cpu"):
        if subject.appearance is None:
            raise InputError(f"subject {subject.name!r} has no appearance (Gaussians); "
                             "train one with `emotalk3d train`")
        self.device = torch.device(device)
        head = subject.appearance
        head.canonical = head.canonical.to(self.device)
        head.net.to(self.device).eval()
        self.head = head
        self.num_vertices = subject.geometry.num_vertices
        self.view_defaults = dict(subject.manifest["appearance"]["view"])

    @torch.inference_mode()
    def frame(self, vertices: np.ndarray, weights: np.ndarray, intensity: float):
        """The frame's Gaussians in subject space: vertices (V, 3) metres, weights (8,), intensity in [0, 1]."""
        vertices = np.asarray(vertices, np.float32)
        if vertices.shape != (self.num_vertices, 3):
            raise InputError(f"the head mesh has {vertices.shape[0] if vertices.ndim == 2 else '?'} vertices, "
                             f"the subject {self.num_vertices}: a modifier or an edit changed its vertex count")
        if not np.isfinite(vertices).all():
            raise InputError("the head mesh has NaN or infinite vertex positions")
        emotion = torch.from_numpy(condition(np.asarray(weights, np.float32)[None],
                                             np.array([intensity], np.float32))[0, :8])
        return self.head.frame(torch.from_numpy(vertices).to(self.device), emotion.to(self.device))

    @torch.inference_mode()
    def _raster(self, vertices, weights, intensity, camera, object_to_world, timings):
        clock = time.perf_counter()
        frame = self.frame(vertices, weights, intensity)
        means, quats, scales = frame.means, frame.quats, frame.scales
        if object_to_world is not None:
            try:
                placement = split_object_matrix(object_to_world)
            except ValueError as exc:
                raise InputError(f"the head object's transform cannot be rendered: {exc}") from None
            means, quats, scales = apply_linear(means, quats, scales, placement)
            w2c = camera.world_to_camera.double() @ torch.as_tensor(placement.rigid, dtype=torch.float64)
            camera = Camera(camera.K, w2c.to(camera.K.dtype), camera.width, camera.height, camera.near, camera.far)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        split = time.perf_counter()
        out = rasterize(means, quats, scales, frame.opacities, frame.sh,
                        camera.to(self.device), sh_degree=frame.sh_degree, extra=frame.matte[:, None])
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        if timings is not None:
            timings["gaussians"] = split - clock
            timings["raster"] = time.perf_counter() - split
        return out

    def render(self, vertices: np.ndarray, weights: np.ndarray, intensity: float, camera: Camera,
               object_to_world: np.ndarray | None = None, timings: dict[str, float] | None = None) -> Passes:
        """vertices (V, 3) metres in subject space, weights (8,) emotion, intensity in [0, 1];
        ``object_to_world`` (4, 4) places the head in the camera's world (identity when None).
        ``timings`` (if given) receives seconds for "gaussians" and "raster"."""
        out = self._raster(vertices, weights, intensity, camera, object_to_world, timings)
        cpu = lambda t: t.detach().float().cpu().numpy()
        return Passes(cpu(out.rgb), cpu(out.alpha), cpu(out.depth), cpu(out.extra[..., 0]))

    def render_layers(self, vertices: np.ndarray, weights: np.ndarray, intensity: float, camera: Camera,
                      object_to_world: np.ndarray | None = None, timings: dict[str, float] | None = None,
                      bottom_up: bool = False, linear: bool = False) -> dict[str, np.ndarray]:
        """``render`` straight to ``compositor_layers`` (converted on the render device)."""
        out = self._raster(vertices, weights, intensity, camera, object_to_world, timings)
        clock = time.perf_counter()
        layers = compositor_layers(out.rgb, out.alpha, out.depth, out.extra[..., 0], bottom_up, linear)
        if timings is not None:
            timings["layers"] = time.perf_counter() - clock
        return layers
