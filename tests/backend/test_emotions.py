import json

import numpy as np
import pytest

from emotalk3d_addon.backend.performance.emotion_track import (EmotionKey, constant_track, read_keys_json,
                                                  track_from_keys)
from emotalk3d_addon.backend.emotions import EMOTIONS, condition, one_hot
from emotalk3d_addon.backend.errors import InputError


def test_eight_emotions_in_the_papers_order():
    assert EMOTIONS == ("neutral", "angry", "contempt", "disgusted", "fear", "happy", "sad", "surprised")


def test_condition_blends_toward_neutral_with_intensity():
    w = np.stack([one_hot("happy")] * 3 + [one_hot("neutral")] * 2)
    c = condition(w, np.array([1.0, 0.5, 0.0, 1.0, 0.3], np.float32))
    np.testing.assert_allclose(c[:, :8].sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(c[0, [0, 5, 8]], [0.0, 1.0, 1.0])
    np.testing.assert_allclose(c[1, [0, 5, 8]], [0.5, 0.5, 0.5])
    np.testing.assert_allclose(c[2], condition(w[3:4], np.array([1.0], np.float32))[0])  # happy at 0 == neutral
    np.testing.assert_allclose(c[3], c[4])                                             # neutral ignores intensity


def test_keys_interpolate_linearly_and_hold_outside():
    track = track_from_keys([EmotionKey(10, "sad", 1.0), EmotionKey(2, "happy", 0.5)], 15)
    assert track.weights.shape == (15, 8) and track.intensity.shape == (15,)
    np.testing.assert_allclose(track.weights.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(track.weights[0], one_hot("happy"))
    np.testing.assert_allclose(track.weights[14], one_hot("sad"))
    mid = track.weights[6]
    assert mid[EMOTIONS.index("happy")] == pytest.approx(0.5) and mid[EMOTIONS.index("sad")] == pytest.approx(0.5)
    assert track.intensity[6] == pytest.approx(0.75) and track.intensity[0] == pytest.approx(0.5)


def test_constant_track_and_bad_values():
    t = constant_track("Angry", 0.5, 4)
    assert np.all(t.weights[:, 1] == 1) and np.all(t.intensity == 0.5)
    with pytest.raises(InputError, match="unknown emotion"):
        constant_track("bored", 1.0, 3)
    with pytest.raises(InputError, match="intensity"):
        constant_track("sad", 1.5, 3)


def test_read_keys_json(tmp_path):
    good = tmp_path / "keys.json"
    good.write_text(json.dumps([{"frame": 0, "emotion": "happy", "intensity": 0.5},
                                {"frame": 30, "emotion": "sad"}]))
    keys = read_keys_json(good)
    assert keys == [EmotionKey(0.0, "happy", 0.5), EmotionKey(30.0, "sad", 1.0)]
    cases = {"notjson": "{", "empty": "[]", "object": "{}", "noframe": '[{"emotion": "sad"}]',
             "badframe": '[{"frame": -1, "emotion": "sad"}]', "bademo": '[{"frame": 1, "emotion": "meh"}]',
             "extra": '[{"frame": 1, "emotion": "sad", "colour": 1}]',
             "badint": '[{"frame": 1, "emotion": "sad", "intensity": "high"}]'}
    for name, text in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(text)
        with pytest.raises(InputError):
            read_keys_json(path)
    with pytest.raises(InputError, match="not found"):
        read_keys_json(tmp_path / "absent.json")
