"""Voice activity from the waveform and the mouth gate it gives the frames, on the demo clip
(espeak-ng speech with its own phone timings) with silence before it, clean and noisy."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from emotalk3d_addon.backend.io.audio import load_audio
from emotalk3d_addon.backend.performance import silence
from emotalk3d_addon.backend.performance.silence import LEAD_S, RELEASE_S, hop_levels, mouth_gate, voice_activity
from emotalk3d_addon.backend.subject import resolve_subject
from emotalk3d_addon.backend.tools.lipsync import read_phones

RATE = 16000


@pytest.fixture(scope="module")
def clip():
    root = resolve_subject("demo")
    wave = load_audio(root / "demo_clip.wav")
    phones = [p for p in read_phones(root / "demo_clip.phones.txt") if p[2] != "_"]
    return wave.samples, phones[0][0], phones[-1][1]


def _noisy(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """White noise ``snr_db`` below the speech's RMS, and mains hum at the same level."""
    rng = np.random.default_rng(seed)
    rms = float(np.sqrt(np.mean(x[np.abs(x) > 0.01] ** 2)))
    level = rms * 10 ** (-snr_db / 20)
    t = np.arange(x.size) / RATE
    return (x + level * (rng.standard_normal(x.size) + np.sqrt(2) * np.sin(2 * np.pi * 50 * t))).astype(np.float32)


@pytest.mark.parametrize("snr_db", [None, 30.0, 20.0])
def test_speech_starts_and_ends_where_the_phones_do_after_a_second_of_silence(clip, snr_db):
    samples, first, last = clip
    x = np.concatenate([np.zeros(RATE, np.float32), samples])
    if snr_db is not None:
        x = _noisy(x, snr_db)
    segments = voice_activity(x, RATE).segments()
    assert len(segments) == 1, segments                       # one phrase: its inner pauses are short
    start, end = segments[0]
    assert abs(start - (1.0 + first)) <= 0.03, (start, 1.0 + first)
    assert abs(end - (1.0 + last)) <= 0.1, (end, 1.0 + last)


def test_a_long_pause_is_silence_and_a_short_one_is_not(clip):
    samples, first, last = clip
    speech = samples[int(first * RATE):int(last * RATE)]
    pause = lambda s: np.zeros(int(s * RATE), np.float32)
    long = voice_activity(_noisy(np.concatenate([pause(0.5), speech, pause(0.6), speech, pause(0.5)]), 25.0), RATE)
    short = voice_activity(_noisy(np.concatenate([pause(0.5), speech, pause(0.15), speech, pause(0.5)]), 25.0), RATE)
    assert len(long.segments()) == 2 and len(short.segments()) == 1


def test_speech_barely_above_its_noise_is_never_closed(clip):
    """At 10 dB SNR silence cannot be told from quiet speech safely: no frame is closed."""
    samples, _, _ = clip
    x = _noisy(np.concatenate([np.zeros(RATE, np.float32), samples]), 10.0)
    activity = voice_activity(x, RATE)
    assert activity.active.all() and (mouth_gate(activity, 95, Fraction(24)) == 1).all()


def test_noise_alone_and_a_click_are_not_speech():
    rng = np.random.default_rng(1)
    hiss = (0.01 * rng.standard_normal(3 * RATE)).astype(np.float32)
    assert voice_activity(hiss, RATE).active.all()            # nothing to tell apart: the mouth stays free
    click = np.zeros(3 * RATE, np.float32)
    click[RATE:RATE + 160] = 0.5                              # 10 ms
    click += (1e-4 * rng.standard_normal(click.size)).astype(np.float32)
    assert voice_activity(click, RATE).segments() == []


def test_the_gate_is_shut_until_100_ms_before_speech_and_opens_through_it():
    active = np.zeros(400, bool)                              # 4 s in 10 ms hops
    active[100:200] = True                                    # speech 1.0-2.0 s
    active[260:300] = True                                    # and 2.6-3.0 s after a 600 ms pause
    activity = silence.VoiceActivity(active, -60.0, -50.0, -55.0)
    fps = Fraction(24)
    gate = mouth_gate(activity, 96, fps)
    t = np.arange(96) / 24.0
    for since, onset in ((0.0, 1.0), (2.0 + RELEASE_S, 2.6)):
        shut = (t >= since) & (t <= onset - LEAD_S)
        assert shut.any() and (gate[shut] == 0).all()
    assert (gate[(t >= 1.0) & (t < 2.0)] == 1).all() and (gate[(t >= 2.6) & (t < 3.0)] == 1).all()
    release = (t >= 2.0) & (t < 2.0 + RELEASE_S)
    assert (np.diff(gate[release]) <= 0).all() and (gate[(t >= 2.0 + RELEASE_S) & (t < 2.5)] == 0).all()
    assert (gate[t >= 3.0 + RELEASE_S] == 0).all()
    rising = (t >= 2.5) & (t < 2.6)
    assert (np.diff(gate[rising]) >= 0).all() and 0 < gate[rising].max() < 1


def test_levels_over_blocks_equal_levels_of_the_whole(monkeypatch):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(40_123) * np.linspace(0, 1, 40_123)).astype(np.float32)
    whole = hop_levels(x, RATE)
    monkeypatch.setattr(silence, "_BLOCK_SAMPLES", 1000)      # not a multiple of the 160-sample hop
    np.testing.assert_allclose(hop_levels(x, RATE), whole, atol=1e-9)
    assert whole.shape == (-(-x.size // 160),)
