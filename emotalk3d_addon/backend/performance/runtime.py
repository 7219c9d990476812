"""Performance (Speech -> Geometry): a subject's speech models, loaded once.

``SubjectRuntime`` holds a subject's models, loaded once, and a feature cache, so a
re-generation after an emotion edit only re-runs S2GNet:

    waveform -> speech features (50 Hz, cached) -> features at the model rate
             -> emotion track (keys, or the extractor) -> S2GNet -> template + displacements

The subject's GRU and emotion extractor learned their dynamics at the subject's frame rate
(``Subject.fps``, the model rate), so they always run at it; the scene's frame rate is met
by interpolating in time, the emotion track into the model rate and S2GNet's output out of
it. A scene at the model rate is not resampled at all.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Callable, TypeVar

import numpy as np
import torch

from ..io.audio import Waveform
from .emotion_track import EmotionTrack
from .utterance_emotion import speech_emotion_by_utterance
from ..emotions import condition
from ..errors import BundleError
from ..geometry.s2gnet import S2GNet
from ..speech.cache import FeatureCache
from ..speech.emotion import EmotionExtractor
from ..speech.encoder import EncoderSpec, SpeechEncoder, load_encoder
from ..speech.framerate import features_to_frames, frame_positions, sample_rows
from ..subject import Subject
from ..timebase import frame_count, parse_fps
from ..io.track import VertexTrack


_Module = TypeVar("_Module", bound=torch.nn.Module)


def _loaded_module(build: Callable[[], _Module], state: dict[str, torch.Tensor], what: str, where: str) -> _Module:
    """``build()`` holding ``state``: laid out on the meta device (no memory, no random
    initialisation that the weights would overwrite), then given copies of the tensors."""
    with torch.device("meta"):
        module = build()
    try:
        module.load_state_dict({k: v.clone() for k, v in state.items()}, strict=True, assign=True)
    except RuntimeError as exc:   # "Error(s) in loading state_dict for X:" then one line per defect
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = " ".join(lines[1:] if len(lines) > 1 else lines)
        raise BundleError(where, [f"{what} weights do not match their config: {detail}"]) from None
    unset = [name for name, t in (*module.named_parameters(), *module.named_buffers()) if t.is_meta]
    if unset:   # a tensor the state dict does not carry (a non-persistent buffer) would have no values
        raise RuntimeError(f"{what}: {', '.join(unset[:3])} cannot be laid out from its weights alone")
    return module


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
        self.s2g = _loaded_module(lambda: S2GNet(subject.s2g_config), subject.s2g_state, "S2GNet", where)
        self.s2g.to(self.device).eval()
        self.emotion = _loaded_module(lambda: EmotionExtractor(subject.emotion_config), subject.emotion_state,
                                      "emotion extractor", where)
        self.emotion.to(self.device).eval()
        self.template = torch.from_numpy(subject.geometry.template)
        self.model_fps = parse_fps(subject.fps)

    def speech_features(self, waveform: Waveform) -> torch.Tensor:
        """(T, D) float32 features at 50 Hz, from the cache when this audio was seen."""
        key = waveform.content_hash()
        features = self.cache.get(key, self.encoder.encoder_id)
        if features is None:
            features = self.encoder.encode(waveform)
            self.cache.put(key, self.encoder.encoder_id, features)
        return features

    def model_features(self, waveform: Waveform) -> torch.Tensor:
        """(F_m, D) features at the model rate, F_m = ceil(duration * model_fps)."""
        num_frames = frame_count(waveform.samples.size, waveform.sample_rate, self.model_fps)
        return features_to_frames(self.speech_features(waveform), num_frames, self.model_fps,
                                  centre_offset_s=self.encoder.centre_offset_s)

    def emotion_from_speech(self, model_features: torch.Tensor, fps: Fraction, num_frames: int,
                            waveform: Waveform | None = None) -> EmotionTrack:
        """The extractor's emotion track, as ``num_frames`` frames at ``fps``. With ``waveform``
        (the clip's audio) each utterance is encoded and heard on its own
        (``utterance_emotion.speech_emotion_by_utterance``), so the same speech gets the same
        emotion wherever it sits in a file; without it, from the clip's (F_m, D) model-rate
        features as one piece."""
        if waveform is None:
            weights, intensity = self.emotion.predict_track(model_features.to(self.device))
        else:
            weights, intensity = speech_emotion_by_utterance(
                self.emotion, waveform.samples, waveform.sample_rate, self.model_fps, model_features.shape[0],
                lambda piece: self.speech_features(Waveform(piece, waveform.sample_rate)),
                self.encoder.centre_offset_s)
        if fps != self.model_fps or num_frames != weights.shape[0]:
            at = frame_positions(num_frames, fps, self.model_fps)
            weights, intensity = sample_rows(weights, at), sample_rows(intensity, at)
        return EmotionTrack(weights.cpu().numpy().astype(np.float32), intensity.cpu().numpy().astype(np.float32))

    def perform(self, waveform: Waveform, fps: Fraction, emotion: EmotionTrack | None = None) -> VertexTrack:
        """Vertex track for the clip at ``fps``; ``emotion`` (at ``fps``) None -> predicted from speech."""
        num_frames = frame_count(waveform.samples.size, waveform.sample_rate, fps)
        features = self.model_features(waveform)
        if emotion is None:
            emotion = self.emotion_from_speech(features, fps, num_frames, waveform)
        return self.perform_features(features, fps, emotion, num_frames)

    def perform_features(self, model_features: torch.Tensor, fps: Fraction,
                         emotion: EmotionTrack | None = None, num_frames: int | None = None) -> VertexTrack:
        """Vertex track at ``fps`` from (F_m, D) model-rate features (the part re-run after a
        key edit). ``emotion`` is at ``fps``; without it the frame count is ``num_frames``."""
        if emotion is None:
            if num_frames is None:
                raise ValueError("perform_features needs an emotion track or a frame count")
            emotion = self.emotion_from_speech(model_features, fps, num_frames)
        if num_frames is not None and emotion.num_frames != num_frames:
            raise ValueError(f"emotion track has {emotion.num_frames} frames, audio {num_frames}")
        resample = fps != self.model_fps or emotion.num_frames != model_features.shape[0]
        cond = torch.from_numpy(condition(emotion.weights, emotion.intensity))
        sample_at = None
        if resample:
            cond = sample_rows(cond, frame_positions(model_features.shape[0], self.model_fps, fps))
            sample_at = frame_positions(emotion.num_frames, fps, self.model_fps)
        with torch.inference_mode():
            vertices = self.s2g.predict(model_features.to(self.device), cond.to(self.device), sample_at=sample_at)
            vertices.add_(self.template)       # in place: a long track is gigabytes
        vertices = vertices.numpy()
        return VertexTrack(vertices, fps, emotion.weights, emotion.intensity)
