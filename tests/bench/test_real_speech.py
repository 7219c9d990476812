"""The real-speech evaluation's own parts: transcripts to words, STM utterances, cutting a
word-level alignment in two, and the forced aligner on speech with known words."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import real_speech  # noqa: E402



def test_transcripts_become_lower_case_words_without_noise_marks():
    assert real_speech._words("Uh, I'M saying [adif] a <VOCNOISE> bunch.") == ["uh", "i'm", "saying", "a", "bunch"]


def test_stm_rows_give_times_and_words():
    stm = "sample 1 Diane 6.68 7.16 Hello?\n;; comment\nsample 1 Sheila 7.634 8.155 Oh, hello.\n"
    assert real_speech._stm(stm) == [(6.68, 7.16, "Hello?"), (7.634, 8.155, "Oh, hello.")]


def test_halves_cut_at_the_silence_nearest_the_middle():
    segments = [("<s>", 0, 0), ("a", 1, 40), ("<sil>", 41, 60), ("b", 61, 100), ("c(2)", 101, 120),
                ("<sil>", 121, 130), ("d", 131, 200)]
    (lo1, hi1, w1), (lo2, hi2, w2) = real_speech._halves(segments)
    assert (lo1, hi2) == (0, 201) and hi1 == lo2
    assert w1 + w2 == ["a", "b", "c", "d"] and w1 and w2
    assert hi1 in ((41 + 60) // 2, (121 + 130) // 2)          # a silence's centre


def test_halves_cut_between_words_when_there_is_no_silence():
    segments = [("a", 0, 30), ("b", 31, 60), ("c", 61, 90), ("d", 91, 120)]
    (_, cut, w1), (_, _, w2) = real_speech._halves(segments)
    assert cut == 61 and w1 == ["a", "b"] and w2 == ["c", "d"]


def test_aligner_places_the_phones_where_the_synthesiser_spoke_them():
    """flite's slt voice with its own phone times: the aligner finds the same phones, and
    each bilabial starts within 40 ms of where flite put it."""
    pytest.importorskip("pocketsphinx")
    from emotalk3d_addon.backend.datasets.speech_corpus.engines import Prosody, Voice, available, synthesize

    if not available("flite"):
        pytest.skip("flite is needed (make sysdeps)")
    utt = synthesize(Voice("flite", "slt"), "my mother bought a map", Prosody(1.0, 0.0, 0.0, {}))
    rows, missing, evenly = real_speech.align(utt.samples, ["my", "mother", "bought", "a", "map"])
    assert missing == [] and evenly == 0
    assert [p for _, _, p in rows if p != "SIL"] == ["M", "AY", "M", "AH", "DH", "ER", "B", "AA", "T", "AH",
                                                     "M", "AE", "P"]
    starts = np.array([a for a, _, _ in rows])
    assert np.all(np.diff(starts) > 0) and rows[-1][1] <= utt.samples.size / 16000 + 0.02
    aligned = [a for a, _, p in rows if p in ("M", "B", "P")]
    spoken = [ph.start for ph in utt.phonemes if ph.ipa in ("m", "b", "p")]
    assert len(aligned) == len(spoken) == 5
    assert np.abs(np.array(aligned) - np.array(spoken)).max() < 0.04, (aligned, spoken)


def test_words_past_the_end_of_the_speech_are_left_out_and_the_rest_aligned():
    """A transcript that runs past the audio (an utterance cut off, or talked over): the
    words the speech holds are aligned where flite spoke them, the rest are reported."""
    pytest.importorskip("pocketsphinx")
    from emotalk3d_addon.backend.datasets.speech_corpus.engines import Prosody, Voice, available, synthesize

    if not available("flite"):
        pytest.skip("flite is needed (make sysdeps)")
    utt = synthesize(Voice("flite", "slt"), "my mother bought a map", Prosody(1.0, 0.0, 0.0, {}))
    rows, missing, _ = real_speech.align(utt.samples, ["my", "mother", "bought", "a", "map", "of", "the",
                                                       "western", "islands"])
    assert missing[-2:] == ["western", "islands"] and "map" not in missing
    aligned = [a for a, _, p in rows if p in ("M", "B", "P")]
    spoken = [ph.start for ph in utt.phonemes if ph.ipa in ("m", "b", "p")]
    assert len(aligned) >= 4
    assert np.abs(np.array(aligned[:4]) - np.array(spoken[:4])).max() < 0.05, (aligned, spoken)
