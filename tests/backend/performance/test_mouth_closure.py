"""The demo subject with a second of silence before its clip (clean, and with noise 25 dB
below the speech): the lips stay together until 100 ms before speech, the eyes and brows keep
the emotion, speech frames are untouched, and the ARKit jaw stays shut."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from emotalk3d_addon.backend.arkit.names import ARKIT_NAMES
from emotalk3d_addon.backend.io.audio import Waveform, load_audio
from emotalk3d_addon.backend.performance.mouth_closure import MouthClosure, mouth_region
from emotalk3d_addon.backend.performance.service import Performance
from emotalk3d_addon.backend.performance.silence import LEAD_S
from emotalk3d_addon.backend.protocol.messages import EmotionSpec
from emotalk3d_addon.backend.speech.cache import FeatureCache
from emotalk3d_addon.backend.subject import resolve_subject
from emotalk3d_addon.backend.tools.lipsync import lip_aperture, read_phones

RATE, FPS = 16000, Fraction(24)
SHUT_MM = 0.6          # the lips' gap in silence at most (measured 0.02-0.41 mm over four emotions)
EYES_MM = 1.0          # the eyes and brows move at most this much when the mouth closes (measured 0.15-0.83)


@pytest.fixture(scope="module")
def service():
    service = Performance(cache=FeatureCache())
    return service, service.subject("demo")


@pytest.fixture(scope="module")
def lead_in():
    root = resolve_subject("demo")
    samples = load_audio(root / "demo_clip.wav").samples
    phones = [(a, b) for a, b, p in read_phones(root / "demo_clip.phones.txt") if p != "_"]
    clean = np.concatenate([np.zeros(RATE, np.float32), samples])
    rng = np.random.default_rng(0)
    rms = float(np.sqrt(np.mean(samples[np.abs(samples) > 0.01] ** 2)))
    noisy = (clean + rms * 10 ** (-25 / 20) * rng.standard_normal(clean.size)).astype(np.float32)
    return {"clean": Waveform(clean, RATE), "noisy": Waveform(noisy, RATE)}, 1.0 + phones[0][0], 1.0 + phones[-1][1]


@pytest.mark.parametrize("audio, emotions", [("clean", ("neutral", "surprised", "happy")), ("noisy", ("happy",))])
def test_the_mouth_is_shut_in_silence_and_untouched_in_speech(service, lead_in, audio, emotions):
    performance, loaded = service
    waves, onset, end = lead_in
    g = loaded.subject.geometry
    lips = g.landmarks["upper_lip"], g.landmarks["lower_lip"]
    eyes = np.array([i for k, i in g.landmarks.items() if k.startswith(("eye_", "brow_"))])
    t = np.arange(int(np.ceil(waves[audio].duration * FPS))) / float(FPS)
    silent = t < onset - LEAD_S
    for emotion in emotions:
        spec = EmotionSpec.constant(emotion)
        closed = performance.perform_waveform(loaded, waves[audio], FPS, spec, device="cpu")
        open_ = performance.perform_waveform(loaded, waves[audio], FPS, spec, device="cpu", close_silence=False)
        shut = lip_aperture(closed.track.vertices, g.template, *lips)
        before = lip_aperture(open_.track.vertices, g.template, *lips)
        assert shut[silent].max() < SHUT_MM < before[silent].max(), (emotion, shut[silent].max())
        # the eyes and brows keep what the emotion did to them (surprised: 11 mm)
        moved = np.linalg.norm(closed.track.vertices[silent][:, eyes] - open_.track.vertices[silent][:, eyes], axis=2)
        assert moved.max() * 1000 < EYES_MM, (emotion, moved.max() * 1000)
        # speech frames are exactly S2GNet's (through the shape keys)
        speech = closed.mouth_gate == 1.0
        assert speech[(t >= onset) & (t < end - 0.05)].all()      # (the last phone's tail may be quiet)
        np.testing.assert_array_equal(closed.coefficients[speech], open_.coefficients[speech])
        np.testing.assert_array_equal(closed.track.vertices[speech], open_.track.vertices[speech])
        # the ARKit jaw, solved from the same coefficients, does not open before the words
        jaw = closed.arkit().weights[:, ARKIT_NAMES.index("jawOpen")]
        assert jaw[silent].max() < 0.05 and jaw.max() > 0.2, (emotion, jaw[silent].max())


def test_the_mouth_region_holds_the_lips_and_jaw_but_not_the_eyes(service):
    _, loaded = service
    g = loaded.subject.geometry
    region = mouth_region(g.template, g.landmarks)
    for name in ("upper_lip", "lower_lip", "mouth_left", "mouth_right", "chin"):
        assert region[g.landmarks[name]] == 1.0, name
    for name, i in g.landmarks.items():
        if name.startswith(("eye_", "brow_")) or name in ("forehead", "nose_bridge"):
            assert region[i] == 0.0, name


def test_a_closed_frame_is_the_basis_mix_nearest_the_frame_with_its_mouth_at_rest(service):
    """The closure is the least-squares basis mix of the frame with its mouth region moved to
    the template, computed directly, for gates 1 (untouched), 0 and in between."""
    _, loaded = service
    subject = loaded.subject
    components = subject.basis.components
    region = mouth_region(subject.geometry.template, subject.geometry.landmarks)
    rng = np.random.default_rng(3)
    c = rng.uniform(-0.5, 0.5, (3, components.shape[0])).astype(np.float32)
    gate = np.array([1.0, 0.0, 0.3], np.float32)
    got = MouthClosure.of(subject).apply(c, gate)
    flat = components.reshape(components.shape[0], -1).astype(np.float64)
    for f in range(3):
        d = (c[f].astype(np.float64) @ flat).reshape(-1, 3)
        target = d * (1.0 - (1.0 - gate[f]) * region[:, None])
        want = np.linalg.lstsq(flat.T, target.ravel(), rcond=None)[0]
        np.testing.assert_allclose(got[f], want, atol=1e-5)
    np.testing.assert_array_equal(got[0], c[0])
