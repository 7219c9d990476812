"""Lip-sync scores on constructed cases with known answers, and the phone-file readers."""
import numpy as np
import pytest

from emotalk3d_addon.backend.errors import InputError
from emotalk3d_addon.backend.tools.evaluate_lipsync import format_row
from emotalk3d_addon.backend.tools.lipsync import (closures, lip_aperture, loudness_envelope, openness_curve,
                                             partial_correlation, pearson, phone_classes, pooled, read_phones,
                                             score)

FPS = 25
PHONES = [(0.0, 0.3, "_"), (0.3, 0.45, "m"), (0.45, 0.7, "ɑ"), (0.7, 0.8, "p"), (0.8, 1.1, "i"),
          (1.1, 1.25, "b"), (1.25, 1.6, "æ"), (1.6, 1.7, "t"), (1.7, 2.0, "_")]


def test_aperture_is_the_lip_gap_beyond_the_template_in_mm():
    template = np.zeros((3, 3), np.float32)
    template[1, 2] = 0.002                                 # lips 2 mm apart at rest
    frames = np.repeat(template[None], 2, 0)
    frames[1, 1, 2] = 0.012
    np.testing.assert_allclose(lip_aperture(frames, template, 1, 0), [0.0, 10.0], atol=1e-4)


def test_openness_follows_the_phones():
    t = np.arange(50) / FPS
    curve = openness_curve(PHONES, t)
    assert curve[int(0.58 * FPS)] > 0.8 and curve[int(0.95 * FPS)] < 0.5 and curve[int(0.1 * FPS)] < 0.05


def test_a_mouth_that_follows_the_phones_scores_one_and_loudness_alone_scores_zero_partial():
    t = np.arange(50) / FPS
    target = openness_curve(PHONES, t)
    rng = np.random.default_rng(0)
    samples = rng.standard_normal(2 * 16000).astype(np.float32) * np.repeat(0.01 + target, 640)[:32000]
    loud = loudness_envelope(samples, 16000, t)
    perfect = score(target * 10, PHONES, samples, 16000, FPS)
    assert perfect.correlation == pytest.approx(1.0) and perfect.partial == pytest.approx(1.0, abs=1e-6)
    loud_only = score(loud - loud.min(), PHONES, samples, 16000, FPS)
    assert loud_only.correlation == pytest.approx(loud_only.loudness_correlation)
    assert abs(loud_only.partial) < 1e-6


def test_partial_correlation_matches_the_textbook_formula():
    rng = np.random.default_rng(3)
    z = rng.standard_normal(500)
    x = z + rng.standard_normal(500)
    y = 0.5 * z + 0.3 * x + rng.standard_normal(500)
    rxy, rxz, ryz = pearson(x, y), pearson(x, z), pearson(y, z)
    expected = (rxy - rxz * ryz) / np.sqrt((1 - rxz ** 2) * (1 - ryz ** 2))
    assert partial_correlation(x, y, z) == pytest.approx(expected, abs=1e-9)


def test_the_lip_gap_in_mm_overall_and_per_phone_class():
    t = np.arange(50) / FPS
    kinds = phone_classes(PHONES, t)
    names = ["silence", "bilabials", "open_vowels", "bilabials", "other_phones", "bilabials", "open_vowels",
             "other_phones", "silence"]                     # "i" is a close vowel: other phones
    for (start, stop, _), name in zip(PHONES, names):
        inside = (t >= start) & (t < stop)
        assert (kinds[inside] == ["open_vowels", "bilabials", "other_phones", "silence"].index(name)).all(), name
    aperture = np.where(kinds == 0, 9.0, np.where(kinds == 1, 0.5, np.where(kinds == 2, 4.0, 0.0)))
    aperture[int(0.5 * FPS)] = 12.0                          # one wide frame in the first "ɑ"
    s = score(aperture, PHONES, np.ones(32000, np.float32), 16000, FPS)
    gap = s.to_dict()["lip_gap_mm"]
    assert gap["open_vowels"]["p50_mm"] == 9.0 and gap["open_vowels"]["max_mm"] == 12.0
    assert gap["bilabials"]["max_mm"] == 0.5 and gap["other_phones"]["p50_mm"] == 4.0
    assert gap["silence"]["max_mm"] == 0.0 and gap["all"]["frames"] == 50 and gap["all"]["max_mm"] == 12.0
    assert gap["all"]["p90_mm"] == pytest.approx(np.percentile(aperture, 90))
    # pooled over clips: percentiles of all their frames, not a mean of percentiles
    both = pooled([s, score(aperture + 10, PHONES, np.ones(32000, np.float32), 16000, FPS)]).to_dict()["lip_gap_mm"]
    assert both["all"]["frames"] == 100
    assert both["all"]["p50_mm"] == pytest.approx(np.median(np.r_[aperture, aperture + 10]))
    assert "lip gap p50/p90/max" in format_row("clip", s.to_dict()) and "open 9.0" in format_row("clip", s.to_dict())


def test_closures_count_bilabials_that_close():
    t = np.arange(50) / FPS
    aperture = 10 * openness_curve(PHONES, t)
    reached, total = closures(aperture, PHONES, t)
    assert (reached, total) == (3, 3)
    open_mouth = aperture + 8.0                          # never closes
    assert closures(open_mouth, PHONES, t) == (0, 3)
    s = pooled([score(aperture, PHONES, np.ones(32000, np.float32), 16000, FPS),
                score(open_mouth, PHONES, np.ones(32000, np.float32), 16000, FPS)])
    assert (s.closures_reached, s.closures, s.closure_share) == (3, 6, 0.5)
    # without open vowels the mid or close vowels are the reference
    close_only = [(a, b, "ɪ" if p in ("ɑ", "æ") else p) for a, b, p in PHONES]
    assert closures(10 * openness_curve(close_only, t), close_only, t) == (3, 3)


def test_short_bilabials_are_counted_apart_too():
    """A 20 ms "p" (under SHORT_BILABIAL_S) the mouth does not close on: 2 of 3 closures,
    0 of 1 short one; pooling adds the counts; the row prints the short share."""
    from emotalk3d_addon.backend.tools.evaluate_lipsync import format_row
    from emotalk3d_addon.backend.tools.lipsync import SHORT_BILABIAL_S, closure_hits

    phones = [(a, b, p) for a, b, p in PHONES if p != "p"] + [(0.74, 0.76, "p")]
    phones.sort()
    t = np.arange(50) / FPS
    aperture = 10 * openness_curve(PHONES, t)
    aperture[(t >= 0.74 - 1 / FPS) & (t <= 0.76 + 1 / FPS)] = 5.0        # half open around the short "p"
    hits = closure_hits(aperture, phones, t)
    assert [round(d, 3) for d, _ in hits] == [0.15, 0.02, 0.15] and [r for _, r in hits] == [True, False, True]
    assert 0.02 < SHORT_BILABIAL_S < 0.15
    s = score(aperture, phones, np.ones(32000, np.float32), 16000, FPS)
    assert (s.closures_reached, s.closures, s.short_closures_reached, s.short_closures) == (2, 3, 0, 1)
    both = pooled([s, s])
    assert (both.short_closures_reached, both.short_closures) == (0, 2)
    assert "[< 50 ms: 0 % of 2]" in format_row("clip", both.to_dict())


def test_phone_files_textgrid_and_table(tmp_path):
    grid = tmp_path / "a.TextGrid"
    grid.write_text('''File type = "ooTextFile"
Object class = "TextGrid"
xmin = 0
xmax = 1.0
tiers? <exists>
size = 2
item []:
    item [1]:
        class = "IntervalTier"
        name = "words"
        xmin = 0
        xmax = 1.0
        intervals: size = 1
        intervals [1]:
            xmin = 0
            xmax = 1.0
            text = "bob"
    item [2]:
        class = "IntervalTier"
        name = "phones"
        xmin = 0
        xmax = 1.0
        intervals: size = 3
        intervals [1]:
            xmin = 0
            xmax = 0.2
            text = "B"
        intervals [2]:
            xmin = 0.2
            xmax = 0.7
            text = "AA1"
        intervals [3]:
            xmin = 0.7
            xmax = 1.0
            text = "B"
''')
    assert read_phones(grid) == [(0.0, 0.2, "b"), (0.2, 0.7, "ɑ"), (0.7, 1.0, "b")]
    table = tmp_path / "a.csv"
    table.write_text("start,end,phone\n0.0,0.25,m\n0.25,0.5,ɑ\n")
    assert read_phones(table) == [(0.0, 0.25, "m"), (0.25, 0.5, "ɑ")]
    bad = tmp_path / "b.txt"
    bad.write_text("0 0.1 m\nnonsense here\n")
    with pytest.raises(InputError, match="b.txt:2"):
        read_phones(bad)
