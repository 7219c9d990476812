"""espeak-ng speech with phoneme timings, and the visemes they drive."""
import numpy as np
import pytest

from emotalk3d_addon.backend.datasets.synthetic.model import HeadModel
from emotalk3d_addon.backend.datasets.synthetic.sentences import (
    PROSODY, SENTENCES, TEST_SENTENCES, TEST_VOICE, TRAIN_VOICES, prosody)
from emotalk3d_addon.backend.datasets.synthetic.speech import (
    Phoneme, SpeechError, espeak_available, synthesize)
from emotalk3d_addon.backend.datasets.synthetic.visemes import phoneme_targets, viseme_track
from emotalk3d_addon.backend.emotions import EMOTIONS

needs_espeak = pytest.mark.skipif(not espeak_available(), reason="libespeak-ng not installed")
FPS = 25


@pytest.fixture(scope="module")
def model():
    return HeadModel()


@pytest.fixture(scope="module")
def utterance():
    return synthesize("Bob met a happy puppy by the pool.", "en-us+m3").padded(0.3, 0.25)


def test_sentences_voices_and_prosody():
    assert len(SENTENCES) >= 40 and len(set(SENTENCES)) == len(SENTENCES)
    assert not set(TEST_SENTENCES) & set(SENTENCES)
    assert TEST_VOICE not in TRAIN_VOICES and len(TRAIN_VOICES) >= 4
    assert set(PROSODY) == set(EMOTIONS)
    assert prosody("sad", 1.0)["rate"] < prosody("neutral", 0.0)["rate"] < prosody("fear", 1.0)["rate"]
    mild = prosody("happy", 0.5)
    assert PROSODY["neutral"]["pitch"] < mild["pitch"] < PROSODY["happy"]["pitch"]


@needs_espeak
def test_espeak_speech_has_phoneme_timings_and_is_reproducible(utterance):
    u = utterance
    assert u.sample_rate == 22050 and u.samples.dtype == np.float32
    assert 1.5 < u.duration < 5.0 and np.abs(u.samples).max() > 0.05
    starts = np.array([p.start for p in u.phonemes])
    assert np.all(np.diff(starts) > 0) and starts[0] >= 0.3 - 1e-6
    names = "".join(p.ipa for p in u.phonemes)
    assert "b" in names and "p" in names and "m" in names
    # silence before the speech
    assert np.abs(u.samples[: int(0.28 * u.sample_rate)]).max() < 1e-3
    again = synthesize("Bob met a happy puppy by the pool.", "en-us+m3").padded(0.3, 0.25)
    np.testing.assert_array_equal(again.samples, u.samples)
    assert again.phonemes == u.phonemes


@needs_espeak
def test_prosody_and_voice_change_the_speech():
    a = synthesize("Five fat frogs.", "en-us+m3", prosody("neutral", 0.0))
    slow = synthesize("Five fat frogs.", "en-us+m3", prosody("sad", 1.0))
    other = synthesize("Five fat frogs.", TEST_VOICE, prosody("neutral", 0.0))
    assert slow.duration > a.duration * 1.15
    assert other.samples.size != a.samples.size or not np.array_equal(other.samples, a.samples)


def test_unknown_voice_is_a_clear_error():
    if not espeak_available():
        pytest.skip("libespeak-ng not installed")
    with pytest.raises(SpeechError, match="voice"):
        synthesize("hello", "xx-nonexistent")


def test_viseme_targets():
    (p,) = phoneme_targets(Phoneme(0.0, 0.1, "p"))
    assert p.values[3] == 1.0                      # closure
    (f,) = phoneme_targets(Phoneme(0.0, 0.1, "f"))
    assert f.values[4] == 1.0
    (u,) = phoneme_targets(Phoneme(0.0, 0.1, "uː"))
    assert u.values[1] > 0.8                        # rounded
    (a,) = phoneme_targets(Phoneme(0.0, 0.1, "ɑː"))
    assert a.values[0] > 0.8                        # open jaw
    glide = phoneme_targets(Phoneme(0.0, 0.2, "aɪ"))
    assert len(glide) == 2 and glide[0].values[0] > glide[1].values[0]


def _lip_gap(model, faces):
    lm = model.landmarks
    return np.linalg.norm(faces[:, lm["lower_lip"]] - faces[:, lm["upper_lip"]], axis=-1)


@needs_espeak
def test_mouth_follows_the_speech(model, utterance):
    u = utterance
    frames = int(np.ceil(u.duration * FPS))
    times = np.arange(frames) / FPS
    params = viseme_track(u.phonemes, times)
    faces = model.pose_face(params, frames)
    gap = _lip_gap(model, faces)
    # silent lead: closed mouth
    assert gap[:3].max() < 5e-4
    # opening correlates with the loudness envelope
    hop = u.sample_rate // FPS
    env = np.array([np.sqrt(np.mean(u.samples[i * hop:(i + 1) * hop] ** 2)) for i in range(frames)])
    r = np.corrcoef(gap, env)[0, 1]
    assert r > 0.4, r
    # bilabials seal the lips; open vowels open them
    lead = 0.03

    def at(ph):
        return int(round((0.5 * (ph.start + ph.end) - lead) * FPS))

    bilabial = [at(p) for p in u.phonemes if p.ipa in ("p", "b", "m") and p.end - p.start > 0.05]
    vowels = [at(p) for p in u.phonemes if p.ipa[:1] in ("a", "æ", "ɑ", "ɔ", "ʌ", "ɛ") and p.end - p.start > 0.06]
    assert bilabial and vowels
    assert np.median(gap[bilabial]) < 1e-3
    assert np.median(gap[vowels]) > 3e-3
    assert gap[bilabial].max() < 2.5e-3
