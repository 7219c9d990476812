"""Performance (Speech -> Geometry): a subject's speech models, loaded once.

``SubjectRuntime`` holds a subject's models, loaded once, and a feature cache, so a
re-generation after an emotion edit only re-runs S2GNet:

    waveform -> speech features (50 Hz, cached) -> per-frame features
             -> emotion track (keys, or the extractor) -> S2GNet -> template + displacements
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import torch

from ..io.audio import Waveform
from .emotion_track import EmotionTrack
from ..emotions import condition
from ..errors import BundleError
from ..geometry.s2gnet import S2GNet
from ..speech.cache import FeatureCache
from ..speech.emotion import EmotionExtractor
from ..speech.encoder import EncoderSpec, SpeechEncoder, load_encoder
from ..speech.framerate import features_to_frames
from ..subject import Subject
from ..timebase import frame_count
from ..io.track import VertexTrack


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
