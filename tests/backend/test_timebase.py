from fractions import Fraction

import pytest

from emotalk3d_addon.backend.errors import InputError
from emotalk3d_addon.backend.timebase import frame_count, parse_fps


@pytest.mark.parametrize("text,exact", [("23.976", Fraction(24000, 1001)), ("24", Fraction(24)),
                                        ("25", Fraction(25)), ("29.97", Fraction(30000, 1001)),
                                        ("30", Fraction(30)), ("50", Fraction(50)),
                                        ("59.94", Fraction(60000, 1001)), ("60", Fraction(60))])
def test_parse_fps_is_exact_for_film_and_ntsc_rates(text, exact):
    assert parse_fps(text) == exact
    assert parse_fps(float(text)) == exact


@pytest.mark.parametrize("fps", ["23.976", "24", "25", "29.97", "30", "50", "60"])
@pytest.mark.parametrize("seconds", [1, 2.5, 7.04, 60])
def test_frame_count_is_ceil_of_duration_times_fps(fps, seconds):
    rate = 16000
    samples = round(seconds * rate)
    f = parse_fps(fps)
    n = frame_count(samples, rate, f)
    exact = Fraction(samples, rate) * f
    assert n - 1 < exact <= n
    # A whole number of frames needs no extra frame: 1 s at 24 fps is 24 frames.
    if fps == "24" and seconds == 1:
        assert n == 24
    # 10 s at 29.97 is 299.7 frames -> 300.
    assert frame_count(10 * rate, rate, parse_fps("29.97")) == 300


@pytest.mark.parametrize("bad", ["0", "-24", "abc", "1/0", "5000"])
def test_bad_frame_rates_are_input_errors(bad):
    with pytest.raises(InputError):
        parse_fps(bad)
