"""Tests for backend.io.audio: real files written with soundfile into tmp_path, no mocks."""
from __future__ import annotations

import hashlib
import math
import struct

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as taf
from hypothesis import given, settings
from hypothesis import strategies as st

from emotalk3d_addon.backend.io import audio
from emotalk3d_addon.backend.io.audio import (
    MIN_DURATION_S,
    TARGET_SAMPLE_RATE,
    Waveform,
    load_audio,
    resample,
    waveform_from_array,
)
from emotalk3d_addon.backend.errors import AudioError, InputError


def sine(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    n = int(round(rate * seconds))
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / rate)).astype(np.float32)


def dominant_freq(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spec)])


def expected_len(n: int, rate: int) -> int:
    return math.ceil(n * TARGET_SAMPLE_RATE / rate)


def write(path, data, rate, **kw):
    sf.write(str(path), data, rate, **kw)
    return path


# --------------------------------------------------------------------------- decoding


def test_16k_mono_float_wav_loads_unchanged(tmp_path):
    x = np.random.default_rng(1).uniform(-0.9, 0.9, 8000).astype(np.float32)
    p = write(tmp_path / "a.wav", x, 16000, subtype="FLOAT")
    w = load_audio(p)
    assert isinstance(w, Waveform)
    assert w.sample_rate == TARGET_SAMPLE_RATE == 16000
    assert w.samples.dtype == np.float32 and w.samples.ndim == 1
    assert w.samples.flags.c_contiguous
    np.testing.assert_array_equal(w.samples, x)
    assert w.duration == pytest.approx(0.5)
    # str paths work as well as PathLike
    np.testing.assert_array_equal(load_audio(str(p)).samples, x)


def test_44k_stereo_resampled_to_16k_mono_matches_analytic_sine(tmp_path):
    rate, secs = 44100, 2.0
    s = sine(440, rate, secs)
    p = write(tmp_path / "st.wav", np.stack([s, s], axis=1), rate, subtype="FLOAT")
    w = load_audio(p)
    assert w.sample_rate == 16000
    assert abs(len(w.samples) - round(secs * 16000)) <= 1
    ref = 0.5 * np.sin(2 * np.pi * 440 * np.arange(len(w.samples)) / 16000)
    inner = slice(200, -200)
    assert np.abs(w.samples[inner] - ref[inner]).max() < 2e-3


def test_48k_six_channels_downmix_is_channel_mean(tmp_path):
    rate, secs = 48000, 1.0
    gains = np.array([1.0, 0.5, 0.0, -0.25, 0.75, 0.2], np.float32)
    s = sine(300, rate, secs, amp=0.8)
    p = write(tmp_path / "six.wav", s[:, None] * gains[None, :], rate, subtype="FLOAT")
    assert sf.info(str(p)).channels == 6
    w = load_audio(p)
    assert len(w.samples) == expected_len(len(s), rate) == 16000
    ref = gains.mean() * 0.8 * np.sin(2 * np.pi * 300 * np.arange(16000) / 16000)
    assert np.abs(w.samples[200:-200] - ref[200:-200]).max() < 2e-3
    # the mean, not the first channel (gain 1.0) nor the sum (gain 2.2)
    assert np.abs(w.samples).max() == pytest.approx(gains.mean() * 0.8, rel=0.02)


def test_opposite_channels_cancel(tmp_path):
    x = sine(440, 16000, 0.5)
    p = write(tmp_path / "lr.wav", np.stack([x, -x], axis=1), 16000, subtype="FLOAT")
    assert np.abs(load_audio(p).samples).max() < 1e-6
    q = write(tmp_path / "l0.wav", np.stack([x, np.zeros_like(x)], axis=1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(q).samples, x / 2, atol=1e-7)


@pytest.mark.parametrize(
    "ext,fmt,subtype",
    [("flac", "FLAC", "PCM_16"), ("ogg", "OGG", "VORBIS"), ("mp3", "MP3", None)],
)
def test_compressed_formats(tmp_path, ext, fmt, subtype):
    rate, secs, freq = 44100, 1.0, 1000.0
    s = sine(freq, rate, secs)
    p = tmp_path / f"c.{ext}"
    try:
        write(p, np.stack([s, s], axis=1), rate, format=fmt, subtype=subtype)
    except (sf.LibsndfileError, TypeError, ValueError, RuntimeError) as e:
        if fmt == "MP3":
            pytest.skip(f"this libsndfile cannot write MP3: {e}")
        raise
    w = load_audio(p)
    assert w.sample_rate == 16000 and w.samples.dtype == np.float32
    assert abs(w.duration - secs) < 0.06  # codec priming/padding only
    assert abs(dominant_freq(w.samples, 16000) - freq) <= 2.0
    assert 0.3 < np.abs(w.samples).max() < 0.7


def test_int_pcm_files_scaled_to_unit_range(tmp_path):
    rng = np.random.default_rng(2)
    i16 = rng.integers(-32768, 32768, 4000, dtype=np.int16)
    i16[:2] = [-32768, 32767]
    p16 = write(tmp_path / "i16.wav", i16, 16000, subtype="PCM_16")
    np.testing.assert_array_equal(load_audio(p16).samples, i16.astype(np.float32) / 32768)

    i24 = rng.integers(-(2**23), 2**23, 4000).astype(np.int32)
    p24 = write(tmp_path / "i24.wav", i24 << 8, 16000, subtype="PCM_24")
    np.testing.assert_array_equal(load_audio(p24).samples, i24.astype(np.float32) / 2**23)

    u8 = rng.integers(-128, 128, 4000).astype(np.float32) / 128  # exactly representable in 8 bits
    p8 = write(tmp_path / "u8.wav", u8, 16000, subtype="PCM_U8")
    np.testing.assert_array_equal(load_audio(p8).samples, u8)


def test_silent_audio_is_valid(tmp_path):
    p = write(tmp_path / "silence.wav", np.zeros((44100, 2), np.int16), 44100, subtype="PCM_16")
    w = load_audio(p)
    assert len(w.samples) == 16000
    assert not np.any(w.samples)


def test_truncated_mid_data_wav_loads_frames_present(tmp_path):
    x = sine(440, 16000, 1.0)
    full = write(tmp_path / "full.wav", x, 16000, subtype="FLOAT").read_bytes()
    cut = len(full) // 2
    p = tmp_path / "half.wav"
    p.write_bytes(full[:cut])
    w = load_audio(p)
    header = len(full) - 4 * len(x)  # float32 data follows the header to the end of file
    assert len(w.samples) == (cut - header) // 4
    np.testing.assert_array_equal(w.samples, x[: len(w.samples)])


# --------------------------------------------------------------------------- resampling


@pytest.mark.parametrize("rate", [44100, 48000, 22050, 8000])
def test_chunked_resampling_equals_whole_signal(tmp_path, rate):
    rng = np.random.default_rng(rate)
    n = int(rate * 3.0) + 123  # ~3 s, not a multiple of anything in particular
    x = (0.3 * rng.standard_normal(n) + sine(523.25, rate, n / rate)).astype(np.float32)
    p = write(tmp_path / f"r{rate}.wav", x, rate, subtype="FLOAT")
    chunked = load_audio(p, read_block_frames=777, resample_chunk_frames=3000).samples
    whole = resample(x, rate, 16000)
    direct = taf.resample(torch.from_numpy(x), rate, 16000).numpy()
    np.testing.assert_array_equal(whole, direct)  # resample() is torchaudio's
    assert len(chunked) == len(whole) == expected_len(n, rate)
    assert np.abs(chunked - whole).max() < 1e-4
    # default (large) chunks agree too
    assert np.abs(load_audio(p).samples - whole).max() < 1e-4


def test_chunked_identity_at_16k_with_small_blocks(tmp_path):
    x = np.random.default_rng(3).uniform(-1, 1, 16000 * 2 + 5).astype(np.float32)
    p = write(tmp_path / "id.wav", x, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(p, read_block_frames=100, resample_chunk_frames=50).samples, x)


def test_resample_lengths_and_identity():
    x = np.random.default_rng(4).standard_normal(1001).astype(np.float32)
    for orig, new in [(44100, 16000), (16000, 44100), (48000, 16000), (8000, 16000), (22050, 16000)]:
        y = resample(x, orig, new)
        assert y.dtype == np.float32 and y.shape == (math.ceil(1001 * new / orig),)
    same = resample(x, 16000, 16000)
    np.testing.assert_array_equal(same, x)
    assert same is not x
    with pytest.raises(ValueError):
        resample(x, 0, 16000)
    with pytest.raises(ValueError):
        resample(x[None], 44100, 16000)


# --------------------------------------------------------------------------- bad input


def assert_audio_error(path, *words):
    with pytest.raises(AudioError) as ei:
        load_audio(path)
    msg = str(ei.value)
    assert str(path) in msg, msg
    for w in words:
        assert w.lower() in msg.lower(), msg
    assert "\n" not in msg
    return msg


def test_missing_file(tmp_path):
    assert_audio_error(tmp_path / "nope.wav", "does not exist")


def test_directory(tmp_path):
    d = tmp_path / "folder.wav"
    d.mkdir()
    assert_audio_error(d, "folder")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    assert_audio_error(p, "empty")


def test_random_bytes(tmp_path):
    p = tmp_path / "noise.wav"
    p.write_bytes(np.random.default_rng(5).bytes(5000))
    assert_audio_error(p, "could not be opened", "not a supported audio or video format")


def test_text_file_renamed_wav(tmp_path):
    p = tmp_path / "notes.wav"
    p.write_text("this is not audio\n" * 50)
    assert_audio_error(p, "not a supported audio or video format", "invalid data")


def test_zero_sample_file(tmp_path):
    p = write(tmp_path / "zero.wav", np.zeros(0, np.float32), 16000)
    assert_audio_error(p, "no audio samples")


def test_truncated_header_cannot_open(tmp_path):
    full = write(tmp_path / "full.wav", sine(440, 16000, 1.0), 16000).read_bytes()
    p = tmp_path / "hdr.wav"
    p.write_bytes(full[:20])
    assert_audio_error(p, "could not be opened")


def test_truncated_file_that_opens_but_is_too_short(tmp_path):
    full = write(tmp_path / "full.wav", sine(440, 16000, 1.0), 16000, subtype="FLOAT").read_bytes()
    p = tmp_path / "stub.wav"
    p.write_bytes(full[:100])  # a header and a handful of samples
    with sf.SoundFile(str(p)) as f:
        assert 0 < f.frames < MIN_DURATION_S * 16000  # libsndfile does open it
    assert_audio_error(p, "too short to use")


def test_valid_but_too_short(tmp_path):
    p = write(tmp_path / "blip.wav", sine(440, 44100, 0.05), 44100)
    assert_audio_error(p, "too short to use")
    ok = write(tmp_path / "ok.wav", sine(440, 44100, 0.1), 44100)
    assert load_audio(ok).duration == pytest.approx(0.1, abs=1e-4)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_samples(tmp_path, bad):
    x = sine(440, 22050, 0.5)
    x[5000] = bad
    p = write(tmp_path / "bad.wav", np.stack([x, x], axis=1), 22050, subtype="FLOAT")
    assert_audio_error(p, "contains NaN/Inf samples")


def test_zero_sample_rate_header(tmp_path):
    full = write(tmp_path / "r.wav", sine(440, 16000, 0.5), 16000, subtype="FLOAT").read_bytes()
    b = bytearray(full)
    assert struct.unpack("<I", b[24:28])[0] == 16000  # fmt chunk's sample-rate field
    b[24:28] = struct.pack("<I", 0)
    p = tmp_path / "rate0.wav"
    p.write_bytes(bytes(b))
    assert_audio_error(p, "could not be opened")


def test_unconvertible_sample_rate(tmp_path):
    p = write(tmp_path / "odd.wav", sine(440, 22254, 0.2), 22254)
    assert_audio_error(p, "unusual sample rate", "22254")


def test_decoder_error_mid_stream_is_wrapped(tmp_path):
    full = write(tmp_path / "f.flac", sine(440, 48000, 3.0), 48000, format="FLAC").read_bytes()
    p = tmp_path / "cut.flac"
    p.write_bytes(full[: len(full) // 2])
    try:
        w = load_audio(p)
    except AudioError as e:  # this libsndfile reports "lost sync": wrapped, names the file
        assert str(p) in str(e) and "damaged or truncated" in str(e)
    else:  # a decoder that stops cleanly gives the frames present
        assert 0.1 < w.duration < 3.0


def test_audio_error_is_input_error():
    assert issubclass(AudioError, InputError)


# --------------------------------------------------------------------------- waveform_from_array


def test_waveform_from_array_int_scaling_and_mean():
    n = 1600
    i16 = np.tile(np.array([-32768, 0, 16384, 32767], np.int16), n // 4)
    np.testing.assert_array_equal(waveform_from_array(i16, 16000).samples, i16.astype(np.float32) / 32768)
    u8 = np.tile(np.array([0, 128, 255, 64], np.uint8), n // 4)
    np.testing.assert_array_equal(waveform_from_array(u8, 16000).samples,
                                  (u8.astype(np.float32) - 128) / 128)
    i32 = np.tile(np.array([-(2**31), 0, 2**30], np.int32), n // 3 + 1)
    np.testing.assert_allclose(waveform_from_array(i32, 16000).samples, i32 / 2**31, atol=1e-7)
    st2 = np.stack([np.full(n, 0.5), np.full(n, -0.1)], axis=1)  # float64 (N, 2)
    np.testing.assert_allclose(waveform_from_array(st2, 16000).samples, 0.2, atol=1e-7)


@pytest.mark.parametrize(
    "samples,rate,words",
    [
        (np.zeros(16000, np.float32), 0, "sample rate"),
        (np.zeros(16000, np.float32), -44100, "sample rate"),
        (np.zeros(16000, np.float32), 16000.5, "sample rate"),
        (np.zeros(16000, np.float32), "16000", "sample rate"),
        (np.zeros(1000, np.float32), 16000, "too short to use"),
        (np.zeros(0, np.float32), 16000, "no audio samples"),
        (np.zeros((2, 16000, 1), np.float32), 16000, "shape"),
        (np.zeros((16000, 0), np.float32), 16000, "no channels"),
        (np.zeros(16000, bool), 16000, "sample type"),
        (np.zeros(16000, np.complex64), 16000, "sample type"),
        (np.r_[np.zeros(16000), np.nan], 16000, "NaN/Inf"),
        (np.r_[np.zeros((16000, 2)), [[0.0, np.inf]]], 44100, "NaN/Inf"),
    ],
)
def test_waveform_from_array_rejects(samples, rate, words):
    with pytest.raises(AudioError, match="audio array") as ei:
        waveform_from_array(samples, rate)
    assert words.lower() in str(ei.value).lower()


def test_waveform_from_array_accepts_integral_float_rate():
    w = waveform_from_array(np.ones(4410, np.float32), 44100.0)
    assert len(w.samples) == 1600


RATES = [8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000]


@settings(max_examples=40, deadline=None)
@given(
    channels=st.integers(1, 8),
    rate=st.sampled_from(RATES),
    seconds=st.floats(MIN_DURATION_S, 0.4),
    dtype=st.sampled_from(["float32", "float64", "int16", "int32", "uint8"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_waveform_from_array(channels, rate, seconds, dtype, seed):
    rng = np.random.default_rng(seed)
    n = math.ceil(rate * seconds)
    if dtype.startswith("float"):
        x = rng.uniform(-1, 1, (n, channels)).astype(dtype)
    else:
        info = np.iinfo(dtype)
        x = rng.integers(info.min, info.max, (n, channels), dtype=dtype, endpoint=True)
    w = waveform_from_array(x if channels > 1 else x[:, 0], rate)
    s = w.samples
    assert s.dtype == np.float32 and s.ndim == 1 and s.flags.c_contiguous
    assert len(s) == expected_len(n, rate)
    assert np.isfinite(s).all()
    assert w.sample_rate == 16000 and w.duration == pytest.approx(n / rate, abs=1 / 16000)
    # content: channel mean of the unit-range signal, resampled over the whole signal
    if dtype.startswith("float"):
        unit = x.astype(np.float64)
    elif dtype == "uint8":
        unit = (x.astype(np.float64) - 128) / 128
    else:
        unit = x.astype(np.float64) / 2.0 ** (np.iinfo(dtype).bits - 1)
    assert unit.min() >= -1 and unit.max() < 1
    ref = resample(unit.mean(axis=1).astype(np.float32), rate, 16000)
    assert np.abs(s - ref).max() < 1e-4

# --------------------------------------------------------------------------- Waveform


def test_content_hash():
    x = np.linspace(-1, 1, 1600, dtype=np.float32)
    a, b = Waveform(x.copy()), Waveform(x.copy())
    h = a.content_hash()
    assert isinstance(h, str) and len(h) == 64 and int(h, 16) >= 0
    assert h == b.content_hash() == a.content_hash()
    # documented format: sha256(int64 LE sample rate + float32 LE samples)
    assert h == hashlib.sha256(struct.pack("<q", 16000) + x.astype("<f4").tobytes()).hexdigest()
    # pinned value: stable across runs, processes and versions
    assert Waveform(np.array([0, 0.5, -1, 0.25], np.float32)).content_hash() == (
        "e2954c94bdb3573132a3bcf31ec52d76668b90cc28210622bf70628074428952")
    y = x.copy()
    y[800] = np.nextafter(y[800], np.float32(2))
    assert Waveform(y).content_hash() != h
    assert Waveform(x.copy(), sample_rate=44100).content_hash() != h


def test_waveform_is_immutable_value():
    x = np.arange(1600, dtype=np.float32) / 1600
    w = Waveform(x)
    with pytest.raises(ValueError):
        w.samples[0] = 1.0
    with pytest.raises(AttributeError):
        w.sample_rate = 8000  # type: ignore[misc]
    assert w == Waveform(x.copy()) and hash(w) == hash(Waveform(x.copy()))
    assert w != Waveform(x[::-1].copy())
    assert w.duration == pytest.approx(0.1)
    with pytest.raises(TypeError):
        Waveform(np.zeros((10, 2), np.float32))
    with pytest.raises(ValueError):
        Waveform(x, sample_rate=0)


def test_module_constants():
    assert audio.TARGET_SAMPLE_RATE == 16_000 and audio.MIN_DURATION_S == 0.1
    assert audio.READ_BLOCK_FRAMES > 0 and audio.RESAMPLE_CHUNK_FRAMES > 0


def test_kernel_size_guard_uses_torchaudios_geometry():
    import torchaudio.transforms as tat

    for rate in [8000, 11025, 22050, 37800, 44100, 48000, 96000, 192000]:
        _, new_r, width = audio._kernel_geometry(rate, 16000)
        r = tat.Resample(rate, 16000, dtype=torch.float32)
        assert width == r.width and tuple(r.kernel.shape) == (new_r, 1, 2 * width + rate // r.gcd)
        assert audio._resample_is_feasible(rate, 16000)
    assert audio._resample_is_feasible(44056, 16000)  # NTSC-pulled 44.1 kHz
    assert not audio._resample_is_feasible(22254, 16000)
