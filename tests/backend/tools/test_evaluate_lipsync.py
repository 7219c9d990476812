"""``emotalk3d evaluate-lipsync`` scores the performance's one track (the shape keys' mix, closed
in silence), the same track ``predict`` writes, and reports its lip gap in millimetres."""
from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest

from emotalk3d_addon.backend.io.audio import load_audio
from emotalk3d_addon.backend.performance.service import Performance
from emotalk3d_addon.backend.protocol.messages import EmotionSpec
from emotalk3d_addon.backend.subject import resolve_subject
from emotalk3d_addon.backend.tools.cli import main
from emotalk3d_addon.backend.tools.lipsync import lip_aperture


def test_the_lip_gap_reported_is_the_one_tracks(tmp_path, capsys):
    root = resolve_subject("demo")
    clip, phones = root / "demo_clip.wav", root / "demo_clip.phones.txt"
    assert main(["evaluate-lipsync", "--subject", "demo", "--audio", str(clip), "--phones", str(phones),
                 "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "lip gap p50/p90/max" in out and "mm" in out
    gap = json.loads((tmp_path / "r.json").read_text())["recordings"]["pooled"]["lip_gap_mm"]

    service = Performance()
    loaded = service.subject("demo")
    track = service.perform_waveform(loaded, load_audio(clip), Fraction(25), EmotionSpec.speech(), "cpu").track
    g = loaded.subject.geometry
    aperture = lip_aperture(track.vertices, g.template, g.landmarks["upper_lip"], g.landmarks["lower_lip"])
    assert gap["all"]["frames"] == track.num_frames
    assert gap["all"]["p50_mm"] == pytest.approx(np.percentile(aperture, 50), abs=1e-4)
    assert gap["all"]["max_mm"] == pytest.approx(aperture.max(), abs=1e-4)
    classes = ("open_vowels", "bilabials", "other_phones", "silence")
    assert sum(gap[k]["frames"] for k in classes) == track.num_frames and gap["bilabials"]["frames"] > 0


def test_a_corpus_is_scored_per_language(tiny_corpus):
    """Each language's held-out recordings are pooled on their own; English also per engine."""
    from emotalk3d_addon.backend.datasets.speech_corpus.layout import load_corpus
    from emotalk3d_addon.backend.subject import load_subject
    from emotalk3d_addon.backend.tools.evaluate_lipsync import evaluate_corpus, format_report

    corpus = load_corpus(tiny_corpus)
    test = corpus.split("test")
    report = evaluate_corpus(load_subject(resolve_subject("demo")), tiny_corpus, log=lambda _: None)
    assert set(report["languages"]) == {r.language for r in test} == {"en", "es"}
    spanish = [r for r in test if r.language == "es"]
    expected_frames = sum(r.frames for r in spanish)
    assert report["languages"]["es"]["clean"]["lip_gap_mm"]["all"]["frames"] == expected_frames
    assert set(report["engines"]) == {r.engine for r in test if r.language == "en"}
    total = sum(report["languages"][lang]["clean"]["lip_gap_mm"]["all"]["frames"] for lang in report["languages"])
    assert total == report["clean"]["lip_gap_mm"]["all"]["frames"] == sum(r.frames for r in test)
    lines = format_report(report).splitlines()
    assert any(line.strip().startswith("es (clean)") for line in lines)
    assert any(line.strip().startswith("en espeak-ng (clean)") for line in lines)


def test_recordings_are_set_beside_the_subjects_own_speech(tmp_path, capsys, tiny_speech_dataset):
    """--own-speech DATASET: the pooled lip gap beside the dataset's neutral training speech, per
    phone class and at the recordings' phone mix; --emotion keys the emotion."""
    from emotalk3d_addon.backend.datasets.layout import load_dataset
    from emotalk3d_addon.backend.tools.own_speech import own_speech_gaps

    root = resolve_subject("demo")
    clip, phones = root / "demo_clip.wav", root / "demo_clip.phones.txt"
    assert main(["evaluate-lipsync", "--subject", "demo", "--audio", str(clip), "--phones", str(phones),
                 "--emotion", "neutral", "--own-speech", str(tiny_speech_dataset),
                 "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "the subject's own neutral speech" in out and "at this set's phone mix" in out
    report = json.loads((tmp_path / "r.json").read_text())["recordings"]
    cmp, gap = report["own_speech"], report["pooled"]["lip_gap_mm"]
    own = own_speech_gaps(load_dataset(tiny_speech_dataset))
    assert cmp["classes"]["other_phones"]["own_frames"] == own["other_phones"].size > 0
    assert cmp["classes"]["bilabials"]["frames"] == gap["bilabials"]["frames"]
    assert sum(cmp["shares"].values()) == pytest.approx(1.0)
    assert cmp["all"]["own_p90_mm"] == pytest.approx(np.percentile(own["all"], 90, method="inverted_cdf"))
    assert cmp["all"]["matched_ratio"] == pytest.approx(cmp["all"]["p90_mm"] / cmp["all"]["matched_p90_mm"])

    # keyed neutral is what was performed: the same clip performed keyed neutral has this lip gap
    service = Performance()
    loaded = service.subject("demo")
    track = service.perform_waveform(loaded, load_audio(clip), Fraction(25), EmotionSpec.constant("neutral"),
                                     "cpu").track
    g = loaded.subject.geometry
    aperture = lip_aperture(track.vertices, g.template, g.landmarks["upper_lip"], g.landmarks["lower_lip"])
    assert gap["all"]["max_mm"] == pytest.approx(aperture.max(), abs=1e-4)


def test_own_speech_needs_recordings(tiny_speech_dataset, capsys):
    assert main(["evaluate-lipsync", "--subject", "demo", "--corpus", "x",
                 "--own-speech", str(tiny_speech_dataset)]) != 0
    assert "--own-speech compares recordings" in capsys.readouterr().err
