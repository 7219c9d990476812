from fractions import Fraction

import numpy as np
import pytest

from emotalk3d_addon.backend.audio import load_audio
from emotalk3d_addon.backend.emotions import condition
from emotalk3d_addon.backend.emotion_keys import EmotionKey, constant_track, track_from_keys
from emotalk3d_addon.backend.pipeline import SubjectRuntime
from emotalk3d_addon.backend.subject import load_subject
from emotalk3d_addon.backend.timebase import frame_count


@pytest.fixture(scope="module")
def runtime(trained_subject):
    return SubjectRuntime(load_subject(trained_subject))


@pytest.fixture(scope="module")
def audio(tiny_dataset):
    return load_audio(next((tiny_dataset / "sequences").glob("*_neutral")) / "audio.wav")


@pytest.mark.parametrize("fps", [Fraction(24000, 1001), Fraction(25), Fraction(30000, 1001), Fraction(60)])
def test_frame_count_and_shapes(runtime, audio, fps):
    track = runtime.perform(audio, fps, constant_track("happy", 1.0, frame_count(audio.samples.size, 16000, fps)))
    f = frame_count(audio.samples.size, 16000, fps)
    assert track.vertices.shape == (f, runtime.template.shape[0], 3) and track.vertices.dtype == np.float32
    assert track.emotion.shape == (f, 8) and track.intensity.shape == (f,)


def test_mouth_follows_loudness_and_emotion_changes_the_face(runtime, audio, tiny_dataset):
    """The tiny dataset opens the jaw with loudness and widens the face with the emotion index."""
    fps = Fraction(25)
    f = frame_count(audio.samples.size, 16000, fps)
    neutral = runtime.perform(audio, fps, constant_track("neutral", 1.0, f))
    fear = runtime.perform(audio, fps, constant_track("fear", 1.0, f))
    template = runtime.template.numpy()
    width = lambda v: v[:, :, 0].max(1) - v[:, :, 0].min(1)
    assert width(fear.vertices).mean() > width(neutral.vertices).mean() + 0.0015
    jaw = template[:, 2] < 0
    opening = (template[None, jaw, 2] - neutral.vertices[:, jaw, 2]).mean(1)     # metres, per frame
    truth = np.load(next((tiny_dataset / "sequences").glob("*_neutral")) / "meshes.npy")
    truth_open = (template[None, jaw, 2] - truth[:, jaw, 2]).mean(1)
    n = min(len(opening), len(truth_open))
    assert np.corrcoef(opening[:n], truth_open[:n])[0, 1] > 0.6


def test_keys_at_two_frames_give_two_expressions(runtime, audio):
    fps = Fraction(25)
    f = frame_count(audio.samples.size, 16000, fps)
    keyed = runtime.perform(audio, fps, track_from_keys([EmotionKey(0, "neutral", 1.0),
                                                         EmotionKey(f - 1, "fear", 1.0)], f))
    width = keyed.vertices[:, :, 0].max(1) - keyed.vertices[:, :, 0].min(1)
    assert width[-5:].mean() > width[:5].mean() + 0.0015


def test_regeneration_reuses_cached_features(runtime, audio, monkeypatch):
    fps = Fraction(30)
    f = frame_count(audio.samples.size, 16000, fps)
    first = runtime.perform(audio, fps, constant_track("sad", 0.5, f))

    def fail(_):
        raise AssertionError("the encoder ran again")

    monkeypatch.setattr(runtime.encoder, "encode", fail)
    again = runtime.perform(audio, fps, constant_track("sad", 0.5, f))
    np.testing.assert_array_equal(first.vertices, again.vertices)
    other = runtime.perform(audio, fps, constant_track("angry", 1.0, f))
    assert not np.allclose(first.vertices, other.vertices)


def test_emotion_from_speech_fills_the_track(runtime, audio):
    track = runtime.perform(audio, Fraction(25))
    np.testing.assert_allclose(track.emotion.sum(1), 1.0, atol=1e-5)
    assert np.all((track.intensity >= 0) & (track.intensity <= 1))


def test_chunked_gru_matches_one_sequential_pass(runtime, audio):
    """S2GNet runs long clips as a batch of overlapping chunks; a trained model gives the
    same motion as one sequential pass (burn-in of about 1 s)."""
    import torch

    fps = Fraction(60)
    feats = runtime.frame_features(audio, fps)
    f = feats.shape[0]
    cond = torch.from_numpy(condition(constant_track("happy", 1.0, f).weights, np.ones(f, np.float32)))
    net = runtime.s2g
    sequential = net.predict(feats, cond, chunk=10_000)
    chunked = net.predict(feats, cond, chunk=24, burn_in=30)
    motion = (sequential - sequential.mean(0)).abs().max()
    assert f > 3 * 24
    error = (chunked - sequential).abs().max()
    assert error < 0.05 * motion, (float(error), float(motion))
