from fractions import Fraction

import numpy as np
import pytest

from emotalk3d_addon.backend.io.audio import load_audio
from emotalk3d_addon.backend.emotions import EMOTIONS, condition
from emotalk3d_addon.backend.performance.emotion_track import EmotionKey, constant_track, track_from_keys
from emotalk3d_addon.backend.performance.runtime import SubjectRuntime
from emotalk3d_addon.backend.subject import load_subject
from emotalk3d_addon.backend.timebase import frame_count


@pytest.fixture(scope="module")
def runtime(trained_subject):
    return SubjectRuntime(load_subject(trained_subject))


@pytest.fixture(scope="module")
def audio(tiny_dataset):
    return load_audio(next((tiny_dataset / "sequences").glob("*_neutral")) / "audio.wav")


def _fear_widening(dataset) -> float:
    """Metres the tiny dataset's fear sequence is wider than its neutral one (frame means)."""
    width = lambda v: v[..., 0].max(-1) - v[..., 0].min(-1)
    meshes = {e: np.load(next((dataset / "sequences").glob(f"*_{e}")) / "meshes.npy") for e in ("neutral", "fear")}
    return float(width(meshes["fear"]).mean() - width(meshes["neutral"]).mean())


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
    # fear widens the face: by at least half of what the dataset's fear sequence shows (2.9 mm)
    assert width(fear.vertices).mean() > width(neutral.vertices).mean() + 0.5 * _fear_widening(tiny_dataset)
    jaw = template[:, 2] < 0
    opening = (template[None, jaw, 2] - neutral.vertices[:, jaw, 2]).mean(1)     # metres, per frame
    truth = np.load(next((tiny_dataset / "sequences").glob("*_neutral")) / "meshes.npy")
    truth_open = (template[None, jaw, 2] - truth[:, jaw, 2]).mean(1)
    n = min(len(opening), len(truth_open))
    assert np.corrcoef(opening[:n], truth_open[:n])[0, 1] > 0.6


def test_keys_at_two_frames_give_two_expressions(runtime, audio, tiny_dataset):
    """Keyed neutral at the first frame and fear at the last: each end shows its key's expression.

    Measured against the subject's own constant-emotion performances of the same audio, not
    against a fixed width: how much the tiny subject widens the face for fear comes out of
    training (1.8 to 3.5 mm over these frames, depending on the CPU's float rounding), while
    the keyed track covers 0.89 to 0.92 of that contrast whatever the training gave.
    """
    fps = Fraction(25)
    f = frame_count(audio.samples.size, 16000, fps)
    keyed = runtime.perform(audio, fps, track_from_keys([EmotionKey(0, "neutral", 1.0),
                                                         EmotionKey(f - 1, "fear", 1.0)], f)).vertices
    neutral = runtime.perform(audio, fps, constant_track("neutral", 1.0, f)).vertices
    fear = runtime.perform(audio, fps, constant_track("fear", 1.0, f)).vertices
    # the condition is per frame, so a key's own frame is exactly that key's expression
    np.testing.assert_allclose(keyed[0], neutral[0], atol=1e-6)
    np.testing.assert_allclose(keyed[-1], fear[-1], atol=1e-6)
    width = lambda v: v[..., 0].max(-1) - v[..., 0].min(-1)
    keyed_change = width(keyed[-5:]).mean() - width(keyed[:5]).mean()
    contrast = width(fear[-5:]).mean() - width(neutral[:5]).mean()   # the two expressions, those frames
    assert contrast > 0.25 * _fear_widening(tiny_dataset)              # they do differ (data: 2.9 mm)
    assert keyed_change > 0.5 * contrast, (keyed_change, contrast)     # and the keys go from one to the other


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
    """Without keys, the track's emotion is the extractor's, frame by frame, and S2GNet is
    conditioned on exactly that: the same as passing the extractor's track in by hand, and
    not what another emotion gives."""
    fps = Fraction(25)
    track = runtime.perform(audio, fps)
    np.testing.assert_allclose(track.emotion.sum(1), 1.0, atol=1e-5)
    assert np.all((track.intensity >= 0) & (track.intensity <= 1))
    heard = runtime.emotion_from_speech(runtime.model_features(audio), fps, track.num_frames, audio)
    np.testing.assert_array_equal(track.emotion, heard.weights)
    np.testing.assert_array_equal(track.intensity, heard.intensity)
    np.testing.assert_array_equal(track.vertices, runtime.perform(audio, fps, heard).vertices)
    other = EMOTIONS[(int(heard.weights.mean(0).argmax()) + 4) % len(EMOTIONS)]
    elsewhere = runtime.perform(audio, fps, constant_track(other, 1.0, track.num_frames)).vertices
    assert np.abs(elsewhere - track.vertices).max() > 1e-4          # metres: the condition is used


def test_chunked_gru_matches_one_sequential_pass(runtime, audio):
    """S2GNet runs long clips as a batch of overlapping chunks; a trained model gives the
    same motion as one sequential pass (burn-in of about 1 s)."""
    import torch

    from emotalk3d_addon.backend.io.audio import Waveform

    feats = runtime.model_features(Waveform(np.tile(audio.samples, 3), audio.sample_rate))
    f = feats.shape[0]
    cond = torch.from_numpy(condition(constant_track("happy", 1.0, f).weights, np.ones(f, np.float32)))
    net = runtime.s2g
    sequential = net.predict(feats, cond, chunk=10_000)
    chunked = net.predict(feats, cond, chunk=24, burn_in=25)
    motion = (sequential - sequential.mean(0)).abs().max()
    assert f > 3 * 24 + 25
    error = (chunked - sequential).abs().max()
    assert error < 0.05 * motion, (float(error), float(motion))


@pytest.mark.parametrize("scene_fps", [Fraction(24), Fraction(30000, 1001), Fraction(60)])
def test_a_scene_at_another_frame_rate_gets_the_model_rate_performance_in_time(runtime, audio, scene_fps):
    """S2GNet and the extractor run at the rate they were trained at (the subject's fps);
    a scene at 24, 29.97 or 60 fps gets that performance interpolated at its own frame
    times, so the mouth's timing and depth do not depend on the scene's rate."""
    model_fps = runtime.model_fps
    assert scene_fps != model_fps
    base = runtime.perform(audio, model_fps, constant_track("happy", 1.0, frame_count(audio.samples.size, 16000, model_fps)))
    n = frame_count(audio.samples.size, 16000, scene_fps)
    scene = runtime.perform(audio, scene_fps, constant_track("happy", 1.0, n))
    assert scene.num_frames == n and scene.fps == scene_fps
    at = np.clip(np.arange(n) * float(model_fps / scene_fps), 0, base.num_frames - 1)
    lo = np.floor(at).astype(int)
    hi = np.minimum(lo + 1, base.num_frames - 1)
    w = (at - lo)[:, None, None]
    expected = base.vertices[lo] * (1 - w) + base.vertices[hi] * w
    motion = np.abs(base.vertices - base.vertices.mean(0)).max()
    assert motion > 1e-4
    np.testing.assert_allclose(scene.vertices, expected, atol=1e-6 + 1e-4 * motion)
    # the emotion heard in the speech: the model-rate track, sampled at the scene's frames
    heard = runtime.emotion_from_speech(runtime.model_features(audio), scene_fps, n)
    model_rate = runtime.emotion_from_speech(runtime.model_features(audio), model_fps, base.num_frames)
    wide = (at - lo)[:, None]
    np.testing.assert_allclose(heard.weights, model_rate.weights[lo] * (1 - wide) + model_rate.weights[hi] * wide,
                               atol=1e-5)


def test_weights_that_do_not_fit_their_config_are_refused_by_name(trained_subject):
    from emotalk3d_addon.backend.errors import BundleError

    subject = load_subject(trained_subject)
    subject.s2g_state = dict(subject.s2g_state, **{"head.bias": subject.s2g_state["head.bias"][:-3]})
    with pytest.raises(BundleError, match="S2GNet weights do not match their config: .*head.bias"):
        SubjectRuntime(subject)
    subject = load_subject(trained_subject)
    subject.emotion_state = {k: v for k, v in subject.emotion_state.items() if k != "norm.weight"}
    with pytest.raises(BundleError, match="emotion extractor weights do not match their config: .*norm.weight"):
        SubjectRuntime(subject)
