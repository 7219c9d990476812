"""Live Link Face CSV: the header importers expect, timecodes, and a round trip."""
from __future__ import annotations

import csv
from fractions import Fraction

import numpy as np
import pytest

from emotalk3d_addon.backend.arkit.live_link import HEADER, read_csv, timecode, write_csv
from emotalk3d_addon.backend.arkit.names import ARKIT_NAMES
from emotalk3d_addon.backend.errors import InputError


def test_the_header_and_rows_follow_live_link_face(tmp_path):
    w = np.zeros((3, 52), np.float32)
    w[:, ARKIT_NAMES.index("jawLeft")] = 0.25
    w[:, ARKIT_NAMES.index("jawOpen")] = [0.0, 0.5, 1.0]
    path = write_csv(w, Fraction(30000, 1001), tmp_path / "take.csv")
    rows = list(csv.reader(open(path, newline="")))
    assert rows[0][:4] == ["Timecode", "BlendShapeCount", "EyeBlinkLeft", "EyeLookDownLeft"]
    assert rows[0][16:20] == ["JawForward", "JawRight", "JawLeft", "JawOpen"] and rows[0][-1] == "RightEyeRoll"
    assert len(rows[0]) == 63 and all(r[1] == "61" for r in rows[1:])
    assert [r[0] for r in rows[1:]] == ["00:00:00:00.000", "00:00:00:01.000", "00:00:00:02.000"]
    assert float(rows[2][rows[0].index("JawOpen")]) == 0.5 and float(rows[1][rows[0].index("JawLeft")]) == 0.25


def test_timecodes_count_frames_at_the_nominal_rate():
    assert timecode(0, Fraction(25)) == "00:00:00:00.000"
    assert timecode(25 * 3661 + 7, Fraction(25)) == "01:01:01:07.000"
    assert timecode(30, Fraction(30000, 1001)) == "00:00:01:00.000"


def test_a_csv_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    w = rng.uniform(size=(40, 52)).astype(np.float32)
    back = read_csv(write_csv(w, Fraction(24), tmp_path / "t.csv"), Fraction(24))
    np.testing.assert_allclose(back, w, atol=1e-6)
    assert HEADER.count("JawOpen") == 1
    (tmp_path / "bad.csv").write_text("time,a\n1,2\n")
    with pytest.raises(InputError, match="Timecode"):
        read_csv(tmp_path / "bad.csv", Fraction(24))
