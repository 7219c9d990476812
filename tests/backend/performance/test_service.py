"""The Performance service on the demo subject: ARKit weights that mean what they say
(the jaw follows the lips, a smile is a smile), an emotion edit that moves them only where
the emotion changed, and TRACK.npz carrying them."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from emotalk3d_addon.backend.arkit.names import ARKIT_NAMES
from emotalk3d_addon.backend.errors import InputError
from emotalk3d_addon.backend.io.track import VertexTrack
from emotalk3d_addon.backend.performance.service import Performance
from emotalk3d_addon.backend.protocol.messages import EmotionKey, EmotionSpec, PerformRequest
from emotalk3d_addon.backend.subject import resolve_subject


@pytest.fixture(scope="module")
def service():
    return Performance()


def _request(emotion: EmotionSpec) -> PerformRequest:
    return PerformRequest("demo", str(resolve_subject("demo") / "demo_clip.wav"), (25, 1), emotion, device="cpu")


def _weight(fit, name):
    return fit.weights[:, ARKIT_NAMES.index(name)]


def test_arkit_weights_follow_the_lips_and_the_emotion(service):
    happy = service.perform(_request(EmotionSpec.constant("happy")))
    sad = service.perform(_request(EmotionSpec.constant("sad")))
    fit_h, fit_s = happy.arkit(), sad.arkit()
    g = happy.loaded.subject.geometry.landmarks
    shown = happy.shape_key_vertices()
    aperture = np.linalg.norm(shown[:, g["upper_lip"]] - shown[:, g["lower_lip"]], axis=1)
    assert np.corrcoef(_weight(fit_h, "jawOpen"), aperture)[0, 1] > 0.6
    assert _weight(fit_h, "mouthSmileLeft").mean() > _weight(fit_s, "mouthSmileLeft").mean() + 0.3
    assert _weight(fit_s, "mouthFrownRight").mean() > _weight(fit_h, "mouthFrownRight").mean() + 0.3
    absent = ~happy.loaded.subject.arkit.present
    assert (fit_h.weights[:, absent] == 0).all() and fit_h.weights.min() >= 0 and fit_h.weights.max() <= 1
    error, _ = happy.basis_error()
    assert 0 < fit_h.rms_mm < 10 * max(error.rms_mm, 0.05)         # a fit, not a coincidence of scale


def test_a_key_edit_changes_the_weights_only_where_the_emotion_changed(service):
    n = service.perform(_request(EmotionSpec.speech())).track.num_frames
    keys = [EmotionKey(0, "neutral"), EmotionKey(n // 2, "neutral"), EmotionKey(n - 1, "happy")]
    before = service.perform(_request(EmotionSpec.keyed(keys))).arkit()
    after = service.perform(_request(EmotionSpec.keyed(keys[:2] + [EmotionKey(n - 1, "angry")]))).arkit()
    smile = ARKIT_NAMES.index("mouthSmileLeft")
    changed = np.abs(after.weights - before.weights).max(axis=1)
    assert changed[: int(0.4 * n)].max() < 0.05 < changed[int(0.8 * n):].max()     # both neutral until n/2
    assert before.weights[int(0.9 * n):, smile].mean() > after.weights[int(0.9 * n):, smile].mean() + 0.2


def test_one_performance_the_track_is_the_shape_keys_and_the_arkit_source(service):
    """What predict writes, what Blender's shape keys show and what the ARKit weights are solved
    from are one performance: the track is the template plus the basis mix of the coefficients."""
    result = service.perform(_request(EmotionSpec.constant("fear", 0.5)))
    subject = result.loaded.subject
    mix = subject.geometry.template[None] + subject.basis.expand(result.coefficients)
    np.testing.assert_allclose(result.track.vertices, mix, atol=1e-6)
    assert result.shape_key_vertices() is result.track.vertices
    np.testing.assert_array_equal(result.arkit().weights, result.solver.solve(result.coefficients).weights)
    error, frames = result.basis_error()            # S2GNet's own vertices against the shape keys
    assert frames == result.track.num_frames and error.max_mm > 0


def test_track_files_carry_the_weights_and_refuse_misnamed_ones(service, tmp_path):
    result = service.perform(_request(EmotionSpec.constant("fear", 0.5)))
    track = result.track
    track.arkit = result.arkit().weights
    track.coefficients = result.coefficients
    loaded = VertexTrack.load_npz(track.save_npz(tmp_path / "t.npz"))
    np.testing.assert_array_equal(loaded.arkit, track.arkit)
    np.testing.assert_array_equal(loaded.coefficients, result.coefficients)
    data = dict(np.load(tmp_path / "t.npz"))
    data["arkit_names"] = data["arkit_names"][::-1]
    np.savez(tmp_path / "bad.npz", **data)
    with pytest.raises(InputError, match="ARKit"):
        VertexTrack.load_npz(tmp_path / "bad.npz")
    assert VertexTrack(track.vertices, Fraction(25), track.emotion, track.intensity).arkit is None
