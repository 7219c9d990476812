"""Emotion tracks from a spec: constant, keys, speech, and keys filled from speech."""
from __future__ import annotations

import numpy as np
import pytest

from emotalk3d_addon.backend.errors import InputError
from emotalk3d_addon.backend.performance.emotion_track import (EmotionTrack, blend_keys_with_speech, emotion_track,
                                                                read_keys_json, track_from_keys)
from emotalk3d_addon.backend.protocol.messages import EmotionKey, EmotionSpec


def test_blend_keys_with_speech_is_convex():
    rng = np.random.default_rng(0)
    kw, sw = rng.dirichlet(np.ones(8), 50).astype(np.float32), rng.dirichlet(np.ones(8), 50).astype(np.float32)
    blended = blend_keys_with_speech(EmotionTrack(kw, np.ones(50, np.float32)), EmotionTrack(sw, np.zeros(50, np.float32)),
                                     [10, 12], reach=4)
    w, i = blended.weights, blended.intensity
    np.testing.assert_allclose(w.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(w[10], kw[10], atol=1e-6)
    np.testing.assert_allclose(w[30:], sw[30:], atol=1e-6)
    assert i[11] == pytest.approx(0.75) and i[8] == pytest.approx(0.5) and i[20] == 0


def test_each_spec_mode_gives_its_track_and_asks_for_speech_only_when_needed():
    speech = EmotionTrack(np.tile(np.eye(8, dtype=np.float32)[6], (40, 1)), np.full(40, 0.5, np.float32))
    asked = []

    def from_speech():
        asked.append(1)
        return speech

    constant = emotion_track(EmotionSpec.constant("Happy", 0.25), 40, from_speech)
    np.testing.assert_array_equal(constant.weights.argmax(1), 5)
    np.testing.assert_allclose(constant.intensity, 0.25)
    keys = [EmotionKey(0, "angry", 1.0), EmotionKey(39, "fear", 0.0)]
    keyed = emotion_track(EmotionSpec.keyed(keys), 40, from_speech)
    np.testing.assert_allclose(keyed.weights, track_from_keys(keys, 40).weights)
    assert not asked
    filled = emotion_track(EmotionSpec.keyed(keys, fill_from_speech=True, reach=5), 40, from_speech)
    np.testing.assert_allclose(filled.weights[20], speech.weights[20])      # no key reaches frame 20
    np.testing.assert_allclose(filled.weights[0], np.eye(8)[1])             # the key holds at its frame
    assert emotion_track(EmotionSpec.speech(), 40, from_speech) is speech and len(asked) == 2


def test_keys_file_and_worker_keys_share_one_parser(tmp_path):
    path = tmp_path / "k.json"
    path.write_text('[{"frame": 3, "emotion": " Sad ", "intensity": 0.5}, {"frame": 0, "emotion": "happy"}]')
    from_file = read_keys_json(path)
    from_request = EmotionSpec.from_dict({"mode": "keys", "keys": [{"frame": 3, "emotion": " Sad ", "intensity": 0.5},
                                                                   {"frame": 0, "emotion": "happy"}]}).keys
    assert from_file == list(from_request) == [EmotionKey(3.0, "sad", 0.5), EmotionKey(0.0, "happy", 1.0)]
    for bad, needle in (('[{"frame": -1, "emotion": "sad"}]', "invalid frame"),
                        ('[{"frame": 1, "emotion": "bored"}]', "unknown emotion"),
                        ('[{"frame": 1, "emotion": "sad", "mood": 1}]', "must be an object"),
                        ('[{"frame": 1, "emotion": "sad", "intensity": 2}]', "[0, 1]"), ("[]", "non-empty")):
        path.write_text(bad)
        with pytest.raises(InputError, match=needle.replace("[", r"\[").replace("]", r"\]")):
            read_keys_json(path)
