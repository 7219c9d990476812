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
