"""The sound of any file FFmpeg reads: real media encoded at test time with PyAV (AAC, Opus,
PCM, FLAC, ALAC, MP3 in M4A/MP4/MOV/MKV/WebM/Ogg/AIFF, video with sound), decoded by
``load_audio`` and compared with the known signal; track choice; hostile containers."""
from __future__ import annotations

import os
import struct

import numpy as np
import pytest

from emotalk3d_addon.backend.errors import AudioError
from emotalk3d_addon.backend.io.audio import (SUPPORTED_FORMATS, AudioStreamInfo, list_audio_streams, load_audio,
                                              resample)

from .media import Track, aligned_snr_db, chirp, tone, write_media

SECONDS = 1.5


def refusal(path, **kw) -> str:
    """The one-line AudioError message for ``path`` (fails on anything else)."""
    with pytest.raises(AudioError) as ei:
        load_audio(path, **kw)
    msg = str(ei.value)
    assert str(path) in msg and "\n" not in msg, msg
    return msg


# --------------------------------------------------------------------------- the known signal comes back

# (file name, codec, sample format fed to the encoder, rate, channels, container, video codec, min SNR dB,
#  most trailing padding in ms: AAC ends on a whole 1024-sample frame)
LOSSY = [
    ("aac.m4a", "aac", "fltp", 48000, 1, None, None, 20, 1024 / 48),
    ("aac44.m4a", "aac", "fltp", 44100, 2, None, None, 20, 1024 / 44.1),
    ("aac-mpeg4.mp4", "aac", "fltp", 48000, 2, None, "mpeg4", 20, 1024 / 48),
    ("aac-h264.mov", "aac", "fltp", 48000, 1, "mov", "libx264", 20, 1024 / 48),
    ("opus.webm", "libopus", "s16", 48000, 1, None, None, 30, 0),
    ("opus.mkv", "libopus", "s16", 48000, 2, None, None, 30, 0),
    ("opus16k.opus", "libopus", "s16", 16000, 1, "ogg", None, 30, 0),
    ("mp3.mp3", "libmp3lame", "fltp", 44100, 1, None, None, 40, 0),
    ("ac3.mkv", "ac3", "fltp", 48000, 2, None, None, 40, 0),
]


@pytest.mark.parametrize("name,codec,fmt,rate,ch,container,video,min_snr,pad_ms", LOSSY,
                         ids=[c[0] for c in LOSSY])
def test_lossy_formats_and_video_sound_match_the_signal(tmp_path, name, codec, fmt, rate, ch, container, video,
                                                        min_snr, pad_ms):
    """A 200-3000 Hz chirp comes back time-aligned (the codec's priming is trimmed: lag 0
    of +-2000 samples), at the codec's quality, and as long as encoded plus at most the
    codec's end padding (AAC: one 1024-sample frame; measured 9-15 ms)."""
    x = chirp(rate, SECONDS)
    path = write_media(tmp_path / name, [Track(np.stack([x] * ch, 1) if ch > 1 else x, rate, codec, fmt,
                                               bit_rate=96000 if codec == "aac" else None)],
                       container, video=video)
    w = load_audio(path)
    assert w.sample_rate == 16000 and w.samples.dtype == np.float32
    snr, lag = aligned_snr_db(w.samples, chirp(16000, SECONDS))
    assert lag == 0, lag
    assert snr >= min_snr, snr
    excess_ms = 1000 * (w.duration - SECONDS)
    assert -2.0 <= excess_ms <= pad_ms + 2.0, excess_ms


# (file name, codec, sample format, rate, channels, container)
LOSSLESS = [
    ("pcm.mov", "pcm_s16le", "s16", 48000, 2, None),
    ("pcm.aiff", "pcm_s16be", "s16", 44100, 1, None),
    ("pcm24.mkv", "pcm_s24le", "s32", 22050, 2, None),
    ("float.mkv", "pcm_f32le", "flt", 48000, 1, None),
    ("flac.mkv", "flac", "s16", 44100, 2, None),
    ("alac.m4a", "alac", "s16p", 44100, 2, None),
    ("pcm.caf", "pcm_s16le", "s16", 16000, 1, "caf"),
]


@pytest.mark.parametrize("name,codec,fmt,rate,ch,container", LOSSLESS, ids=[c[0] for c in LOSSLESS])
def test_lossless_containers_decode_exactly(tmp_path, name, codec, fmt, rate, ch, container):
    """PCM / FLAC / ALAC in MOV, AIFF, MKV, M4A, CAF: the waveform equals the whole-signal
    resample of the stored samples' channel mean (to float rounding), length exact."""
    rng = np.random.default_rng(7)
    gains = rng.uniform(0.3, 1.0, ch)
    sig = (chirp(rate, SECONDS)[:, None] * gains[None, :]).astype(np.float32)  # as the encoder gets it
    path = write_media(tmp_path / name, [Track(sig, rate, codec, fmt)], container)
    if fmt.startswith("s16"):
        stored = np.clip(np.round(sig.astype(np.float64) * 32768), -32768, 32767) / 32768
    elif fmt.startswith("s32"):  # 24-bit codec: the low byte of each 32-bit sample is dropped
        stored = np.floor(np.clip(np.round(sig.astype(np.float64) * 2**31), -(2**31), 2**31 - 1) / 256) / 2**23
    else:
        stored = sig.astype(np.float32)
    ref = resample(stored.mean(axis=1).astype(np.float32), rate, 16000)
    w = load_audio(path)
    assert w.samples.size == ref.size == int(SECONDS * 16000)
    assert np.abs(w.samples - ref).max() < 1e-5


def test_every_read_block_size_gives_the_same_waveform(tmp_path):
    """Blocks of 1, 777 or 65536 frames (split from the codec's frames) decode identically;
    small resampling chunks agree to float rounding."""
    path = write_media(tmp_path / "o.webm", [Track(chirp(48000, 0.5), 48000, "libopus", "s16")])
    ref = load_audio(path)
    for block in (1, 777):
        assert load_audio(path, read_block_frames=block) == ref
    small = load_audio(path, read_block_frames=777, resample_chunk_frames=5000).samples
    assert np.abs(small - ref.samples).max() < 1e-6


# --------------------------------------------------------------------------- tracks


@pytest.fixture
def two_tracks(tmp_path):
    """A video with two audio tracks: 440 Hz AAC (English, "Dialogue") and 1000 Hz Opus
    stereo (French, "Music") in MKV with an mpeg4 picture."""
    return write_media(tmp_path / "two.mkv", [
        Track(tone(48000, SECONDS, 440), 48000, "aac", language="eng", title="Dialogue"),
        Track(np.stack([tone(48000, SECONDS, 1000)] * 2, 1), 48000, "libopus", "s16", language="fra",
              title="Music")], video="mpeg4")


def dominant_hz(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / 16000)[np.argmax(spec)])


def test_first_audio_track_by_default_or_the_one_asked_for(two_tracks):
    first, second = load_audio(two_tracks), load_audio(two_tracks, stream=1)
    assert abs(dominant_hz(first.samples) - 440) < 3
    assert abs(dominant_hz(second.samples) - 1000) < 3
    assert load_audio(two_tracks, stream=0) == first
    for bad, words in [(2, "has 2 audio tracks"), (-1, "track -1 does not exist"), (True, "by its number"),
                       ("1", "by its number")]:
        assert words in refusal(two_tracks, stream=bad)


def test_list_audio_streams_describes_each_track(two_tracks, tmp_path):
    tracks = list_audio_streams(two_tracks)
    assert [t.index for t in tracks] == [0, 1]
    assert all(isinstance(t, AudioStreamInfo) for t in tracks)
    a, b = tracks
    assert (a.codec, a.channels, a.sample_rate, a.language, a.title) == ("aac", 1, 48000, "eng", "Dialogue")
    assert (b.codec, b.channels, b.sample_rate, b.language, b.title) == ("opus", 2, 48000, "fra", "Music")
    assert abs(a.duration - SECONDS) < 0.05 and abs(b.duration - SECONDS) < 0.05
    silent = write_media(tmp_path / "silent.mp4", [], video="mpeg4")
    assert list_audio_streams(silent) == []
    wav = write_media(tmp_path / "one.wav", [Track(tone(16000, 0.5, 300), 16000, "pcm_s16le", "s16")])
    assert list_audio_streams(wav) == [AudioStreamInfo(0, "pcm_s16le", 1, 16000, 0.5, None, None)]


def test_a_video_without_sound_has_no_audio_track(tmp_path):
    silent = write_media(tmp_path / "silent.mp4", [], video="libx264")
    msg = refusal(silent)
    assert "has no audio track" in msg and "video" in msg


def test_an_empty_audio_track_has_no_samples(tmp_path):
    """A video whose (declared) audio track holds no packets; MP4 drops such a track, so the
    file is Matroska."""
    path = write_media(tmp_path / "empty-track.mkv", [Track(np.zeros(0, np.float32), 48000, "pcm_s16le", "s16")],
                       video="mpeg4")
    assert list_audio_streams(path)[0].codec == "pcm_s16le"
    assert "no audio samples" in refusal(path)


# --------------------------------------------------------------------------- hostile containers


def test_cut_media_decodes_its_start_or_is_refused(tmp_path):
    """M4A with its index first (faststart) cut anywhere: the start of the full decode, or
    refused as too short; with its index last (FFmpeg's default) any cut loses the index:
    "could not be opened"."""
    x = chirp(48000, 2.0)
    fast = write_media(tmp_path / "fast.m4a", [Track(x, 48000, "aac", bit_rate=96000)],
                       options={"movflags": "faststart"})
    late = write_media(tmp_path / "late.m4a", [Track(x, 48000, "aac", bit_rate=96000)])
    full = load_audio(fast)
    data, tail = fast.read_bytes(), late.read_bytes()
    decoded = 0
    for frac in np.linspace(0.02, 0.98, 13):
        cut = tmp_path / "cut.m4a"
        cut.write_bytes(data[: int(frac * len(data))])
        try:
            w = load_audio(cut)
        except AudioError as e:
            assert str(cut) in str(e)
            assert "too short" in str(e) or "could not be opened" in str(e) or "no audio" in str(e), str(e)
            continue
        decoded += 1
        keep = w.samples.size - 64
        assert w.duration < full.duration and np.abs(w.samples[:keep] - full.samples[:keep]).max() < 1e-5
        cut.write_bytes(tail[: int(frac * len(tail))])
        assert "could not be opened" in refusal(cut)
    assert decoded >= 10


@pytest.mark.parametrize("name,track,video", [
    ("g.m4a", Track(chirp(48000, 1.0), 48000, "aac"), None),
    ("g.mp4", Track(chirp(48000, 1.0), 48000, "aac"), "mpeg4"),
    ("g.webm", Track(chirp(48000, 1.0), 48000, "libopus", "s16"), None),
    ("g.mkv", Track(chirp(48000, 1.0), 48000, "pcm_f32le", "flt"), None),
    ("g.aiff", Track(chirp(44100, 1.0), 44100, "pcm_s16be", "s16"), None),
])
@pytest.mark.parametrize("keep", [16, 64, 300])
def test_garbage_after_a_valid_header_is_refused(tmp_path, name, track, video, keep):
    """The first bytes of a real file, then random bytes to the original length: refused
    (unreadable, no audio track, or no usable audio), never a crash."""
    path = write_media(tmp_path / name, [track], video=video)
    data = path.read_bytes()
    path.write_bytes(data[:keep] + np.random.default_rng(keep).bytes(len(data) - keep))
    try:
        w = load_audio(path)
    except AudioError as e:
        assert str(path) in str(e) and "\n" not in str(e)
    else:  # a demuxer that resyncs may find frames in noise: still a finite 16 kHz waveform
        assert np.isfinite(w.samples).all() and w.sample_rate == 16000


def _patch_mp4(data: bytes, boxes: tuple[tuple[bytes, int], ...], ticks: int) -> bytes:
    """Write ``ticks`` (32-bit) at ``offset`` after the type of the first box of each kind."""
    b = bytearray(data)
    for box, offset in boxes:
        pos = b.find(box)
        assert pos > 0, box
        b[pos + offset: pos + offset + 4] = struct.pack(">I", ticks)
    return bytes(b)


HEADERS = ((b"mvhd", 20), (b"tkhd", 28), (b"mdhd", 20), (b"elst", 12))  # durations (version 0 boxes)


def test_a_huge_declared_duration_is_not_trusted(tmp_path):
    """A MOV whose movie, track and media headers and edit list claim 2^31-1 ticks (days)
    decodes to its real 1.5 s; one whose sample table says each sample lasts 2^31-1 ticks
    (12.4 hours in all) is listed with that claim and refused by name, in bounded memory:
    declared lengths only size a first allocation (capped), decoded frames are counted."""
    path = write_media(tmp_path / "claim.mov", [Track(chirp(48000, SECONDS), 48000, "pcm_s16le", "s16")])
    data, real = path.read_bytes(), load_audio(path)
    path.write_bytes(_patch_mp4(data, HEADERS, 0x7FFFFFFF))
    assert load_audio(path) == real
    path.write_bytes(_patch_mp4(data, HEADERS + ((b"stts", 16),), 0x7FFFFFFF))
    assert list_audio_streams(path)[0].duration > 12 * 3600
    msg = refusal(path)
    assert "too short" in msg or "no audio samples" in msg, msg


def test_more_than_the_longest_accepted_audio_is_refused(tmp_path):
    """Compressed audio can decode to far more than its size suggests: past ``max_seconds``
    (6 hours by default) decoding stops with a message."""
    path = write_media(tmp_path / "long.opus", [Track(np.zeros(48000 * 3, np.float32), 48000, "libopus", "s16")],
                       "ogg")
    assert path.stat().st_size < 2000  # 3 s of silence in a few hundred bytes
    assert "longer than 2 seconds" in refusal(path, max_seconds=2)
    assert load_audio(path, max_seconds=4).duration == pytest.approx(3.0, abs=1e-3)


def _aiff_with_rate(tmp_path, rate: float):
    path = write_media(tmp_path / "r.aiff", [Track(chirp(16000, 0.5), 16000, "pcm_s16be", "s16")])
    data = bytearray(path.read_bytes())
    comm = data.find(b"COMM") + 8 + 8  # channels(2) frames(4) bits(2), then the 80-bit rate
    exponent = int(np.floor(np.log2(rate)))
    mantissa = int(rate * 2.0 ** (63 - exponent))
    data[comm: comm + 10] = struct.pack(">HQ", 16383 + exponent, mantissa)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("rate,words", [(1, "too low for speech"), (3999, "too low for speech"),
                                        (22254, "unusual sample rate"), (2**31 - 1, "unusual sample rate")])
def test_absurd_sample_rates_in_aiff_are_refused(tmp_path, rate, words):
    assert words in refusal(_aiff_with_rate(tmp_path, rate))


@pytest.mark.parametrize("rate,words", [(1000, "too low for speech"), (22254, "unusual sample rate")])
def test_absurd_sample_rates_in_matroska_are_refused(tmp_path, rate, words):
    path = write_media(tmp_path / "rate.mkv", [Track(np.zeros(rate, np.float32), rate, "pcm_s16le", "s16")])
    assert words in refusal(path)


@pytest.mark.parametrize("channels", [8, 12, 24])
def test_many_channels_decode_to_the_mean(tmp_path, channels):
    """8, 12 and 24 channels, packed float PCM in Matroska and Opus in WebM (decoded as
    planar float: PyAV cannot read 8 or more planes itself, so such frames are interleaved
    by FFmpeg first), decode to the channel mean."""
    gains = np.linspace(-0.4, 0.9, channels)
    x = chirp(48000, 1.0)[:, None] * gains[None, :]
    path = write_media(tmp_path / "many.mkv", [Track(x, 48000, "pcm_f32le", "flt")])
    w = load_audio(path)
    ref = resample((x.mean(axis=1)).astype(np.float32), 48000, 16000)
    assert np.abs(w.samples - ref).max() < 1e-5
    opus = write_media(tmp_path / "many.webm", [Track(x, 48000, "libopus", "s16",
                                                      options={"mapping_family": "255"})])
    snr, lag = aligned_snr_db(load_audio(opus).samples, ref)
    assert lag == 0 and snr > 15, (snr, lag)


@pytest.mark.parametrize("name,container", [("nan.mkv", None), ("nan.mov", "mov"), ("nan.caf", "caf")])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_float_codec_carrying_nan_or_inf_is_refused(tmp_path, name, container, bad):
    x = chirp(48000, 1.0)
    x[30000] = bad
    path = write_media(tmp_path / name, [Track(x, 48000, "pcm_f32le", "flt")], container)
    assert "NaN/Inf" in refusal(path)


def test_a_folder_a_fifo_and_a_device_are_refused_without_waiting(tmp_path):
    folder = tmp_path / "take.mp4"
    folder.mkdir()
    assert "is a folder" in refusal(folder)
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "pipe.m4a"
        os.mkfifo(fifo)  # no writer: opening it for reading would block forever
        assert "not a regular file" in refusal(fifo)
        assert "not a regular file" in str(pytest.raises(AudioError, list_audio_streams, fifo).value)
    if os.path.exists("/dev/zero"):
        assert "not a regular file" in refusal("/dev/zero")


def test_playlists_pointing_at_other_files_are_never_followed(tmp_path):
    """HLS, ffconcat and SDP files naming a real audio file (or a network address) are
    refused; FFmpeg is never allowed to open what they point at."""
    inner = write_media(tmp_path / "inner.wav", [Track(chirp(16000, 1.0), 16000, "pcm_s16le", "s16")])
    texts = {
        "list.m3u8": f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:1.0,\n{inner}\n#EXT-X-ENDLIST\n",
        "list.ffconcat": f"ffconcat version 1.0\nfile '{inner.name}'\n",
        "stream.sdp": "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 5004 RTP/AVP 0\n",
    }
    for name, text in texts.items():
        path = tmp_path / name
        path.write_text(text)
        msg = refusal(path)
        assert "could not be opened" in msg or "playlist" in msg, msg


def test_names_that_look_like_ffmpeg_urls_are_plain_files(tmp_path, monkeypatch):
    """'concat:...' or 'subfile,...' names are files in the folder, never FFmpeg protocols."""
    monkeypatch.chdir(tmp_path)
    x = chirp(16000, 0.5)
    write_media(tmp_path / "real.wav", [Track(x, 16000, "pcm_s16le", "s16")])
    for odd in ("concat:real.wav", "file:real.wav", "subfile,,start,0,end,0,,:real.wav"):
        (tmp_path / odd).write_bytes((tmp_path / "real.wav").read_bytes())
        assert load_audio(odd) == load_audio(tmp_path / "real.wav")
    assert "does not exist" in refusal("concat:real.wav|real.wav")


def test_messages_name_the_formats():
    for fmt in ("WAV", "FLAC", "MP3", "OGG", "Opus", "M4A", "AAC", "AIFF", "MP4", "MOV", "MKV", "WebM"):
        assert fmt in SUPPORTED_FORMATS
