"""Fuzzing the audio decoder (FFmpeg through PyAV): every file either decodes to finite 16 kHz mono float32 or
is refused with a one-line AudioError naming it; no other exception, no runaway memory.

The broken files are generated at test time (truncations, wrong contents, patched
headers, random bytes and mutations of valid files); nothing binary is committed.
Complements test_audio.py, which covers the first examples of each kind.
"""
from __future__ import annotations

import gzip
import io
import json
import math
import os
import re
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from emotalk3d_addon.backend.io.audio import (MIN_DURATION_S, MIN_SAMPLE_RATE, TARGET_SAMPLE_RATE, Waveform,
                                           load_audio, resample)
from emotalk3d_addon.backend.errors import AudioError
from .media import Track, chirp, write_media
from emotalk3d_addon.backend.speech.encoder import (RECEPTIVE_FIELD, SAMPLES_PER_FEATURE, SpeechEncoder,
                                                    WindowPlan, num_features)

FUZZ = settings(max_examples=200, deadline=30_000, suppress_health_check=[HealthCheck.too_slow])
REPO = Path(__file__).resolve().parents[3]

# ---------------------------------------------------------------------------- helpers


def outcome(path: Path) -> tuple[Waveform | None, str]:
    """``load_audio(path)`` checked against the contract: (a finite 16 kHz mono float32
    waveform of at least MIN_DURATION_S, "") or (None, the one-line AudioError message
    naming the file). Any other exception propagates and fails the test."""
    try:
        w = load_audio(path)
    except AudioError as e:
        msg = str(e)
        assert str(path) in msg and "\n" not in msg, msg
        reason = msg.split("'", 2)[-1].split("[")[0].split("(")[0].split(";")[0].strip(" .:")
        note("refused: " + re.sub(r"[0-9.]+", "N", reason)[:60])
        return None, msg
    s = w.samples
    assert isinstance(w, Waveform) and w.sample_rate == TARGET_SAMPLE_RATE
    assert s.dtype == np.float32 and s.ndim == 1 and s.flags.c_contiguous
    assert s.size >= math.ceil(MIN_DURATION_S * TARGET_SAMPLE_RATE) - 1
    assert np.isfinite(s).all()
    note("decoded")
    return w, ""


def note(outcome_name: str) -> None:
    """Count the outcome in hypothesis' statistics (--hypothesis-show-statistics)."""
    if currently_in_test_context():
        event(outcome_name)


def decode_or_refuse(path: Path) -> Waveform | None:
    """The waveform, or None when the file was refused (see ``outcome``)."""
    return outcome(path)[0]


def refusal(path: Path) -> str:
    """The AudioError message for ``path`` (fails when it decodes or raises anything else)."""
    with pytest.raises(AudioError) as ei:
        load_audio(path)
    msg = str(ei.value)
    assert str(path) in msg and "\n" not in msg, msg
    return msg


def noise(frames: int, channels: int, seed: int = 0) -> np.ndarray:
    return (0.3 * np.random.default_rng(seed).standard_normal((frames, channels))).clip(-1, 1).astype(np.float32)


def encode(fmt: str, subtype: str, rate: int, channels: int, seconds: float = 0.5) -> bytes:
    """A valid file's bytes (noise), written by libsndfile."""
    buf = io.BytesIO()
    buf.name = "x"  # soundfile wants a name only for the extension; the format is explicit
    sf.write(buf, noise(int(rate * seconds), channels), rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def wav_header(tag: int, channels: int, rate: int, bits: int, data_size: int,
               block_align: int | None = None, extra: bytes = b"") -> bytes:
    """A RIFF/WAVE header (fmt + data chunk header) with any field values."""
    align = (channels * bits // 8) if block_align is None else block_align
    fmt = struct.pack("<HHIIHH", tag & 0xFFFF, channels & 0xFFFF, rate & 0xFFFFFFFF,
                      (rate * align) & 0xFFFFFFFF, align & 0xFFFF, bits & 0xFFFF) + extra
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", data_size & 0xFFFFFFFF)
    return b"RIFF" + struct.pack("<I", (len(body) + data_size) & 0xFFFFFFFF) + body


# Valid files the structured fuzzers start from: (extension, libsndfile format, subtype, rate, channels)
SOURCES = {
    "wav16": ("wav", "WAV", "PCM_16", 44100, 2),
    "wavex24": ("wav", "WAVEX", "PCM_24", 48000, 8),
    "wavfloat": ("wav", "WAV", "FLOAT", 22050, 1),
    "flac": ("flac", "FLAC", "PCM_16", 44100, 2),
    "ogg": ("ogg", "OGG", "VORBIS", 44100, 2),
    "mp3": ("mp3", "MP3", "MPEG_LAYER_III", 44100, 2),
}


# Valid media written with PyAV (FFmpeg): name -> (extension, tracks, video codec, muxer options)
_SIGNAL = chirp(48000, 0.5)
MEDIA = {
    "m4a": ("m4a", [Track(_SIGNAL, 48000, "aac")], None, {"movflags": "faststart"}),
    "mp4video": ("mp4", [Track(_SIGNAL, 48000, "aac")], "mpeg4", {"movflags": "faststart"}),
    "movpcm": ("mov", [Track(np.stack([_SIGNAL] * 2, 1), 48000, "pcm_s16le", "s16")], None, {"movflags": "faststart"}),
    "webm": ("webm", [Track(_SIGNAL, 48000, "libopus", "s16")], None, {}),
    "mkvfloat": ("mkv", [Track(_SIGNAL, 48000, "pcm_f32le", "flt")], None, {}),
    "aiff": ("aiff", [Track(_SIGNAL, 48000, "pcm_s16be", "s16")], None, {}),
}
EXT = {**{n: v[0] for n, v in SOURCES.items()}, **{n: v[0] for n, v in MEDIA.items()}}
LOSSLESS = {"wav16", "wavex24", "wavfloat", "flac", "movpcm", "mkvfloat", "aiff"}


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """name -> bytes of a valid 0.5 s file; MP3 is left out when libsndfile cannot write it."""
    out = {}
    for name, (_, fmt, subtype, rate, ch) in SOURCES.items():
        try:
            out[name] = encode(fmt, subtype, rate, ch)
        except (sf.LibsndfileError, TypeError, ValueError, RuntimeError):
            assert fmt == "MP3", name
    folder = tmp_path_factory.mktemp("media")
    for name, (ext, tracks, video, options) in MEDIA.items():
        out[name] = write_media(folder / f"{name}.{ext}", tracks, video=video, video_seconds=0.5,
                                options=options).read_bytes()
    return out


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for files written inside hypothesis examples."""
    return tmp_path_factory.mktemp("fuzz")


def boundaries(name: str, data: bytes) -> set[int]:
    """Offsets where a structure of the container starts or ends (chunks, blocks, pages)."""
    out: set[int] = set()
    if name.startswith("wav"):  # RIFF: 12-byte header, then id/size/payload chunks
        out.update((4, 8, 12))
        pos = 12
        while pos + 8 <= len(data):
            size = struct.unpack("<I", data[pos + 4: pos + 8])[0]
            out.update((pos + 4, pos + 8, pos + 8 + size))
            pos += 8 + size + (size & 1)
    elif name == "flac":  # "fLaC", then metadata blocks with 4-byte headers
        pos = 4
        while pos + 4 <= len(data):
            last, size = data[pos] & 0x80, int.from_bytes(data[pos + 1: pos + 4], "big")
            out.update((pos, pos + 4, pos + 4 + size))
            pos += 4 + size
            if last:
                break
    elif name == "ogg":  # pages: 27-byte header, segment table, body
        pos = data.find(b"OggS")
        while pos >= 0:
            nseg = data[pos + 26]
            table = pos + 27
            out.update((pos, table, table + nseg, table + nseg + sum(data[table: table + nseg])))
            pos = data.find(b"OggS", pos + 4)
    elif EXT.get(name) in ("m4a", "mp4", "mov"):  # ISO boxes: size, type; the index boxes nest
        def boxes(start: int, end: int) -> None:
            pos = start
            while pos + 8 <= end:
                size = struct.unpack(">I", data[pos: pos + 4])[0]
                if size < 8:
                    break
                out.update((pos, pos + 4, pos + 8, pos + size))
                if data[pos + 4: pos + 8] in (b"moov", b"trak", b"mdia", b"minf", b"stbl"):
                    boxes(pos + 8, min(end, pos + size))
                pos += size
        boxes(0, len(data))
    elif name == "mp3":  # ID3 tag, then MPEG frame syncs
        if data.startswith(b"ID3"):
            size = sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(data[6:10]))
            out.update((3, 6, 10, 10 + size))
        out.update(i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] & 0xE0 == 0xE0)
    return {o + d for o in out for d in (-1, 0, 1)}


def truncation_offsets(name: str, data: bytes) -> list[int]:
    """Every offset in the first 64 bytes, each structure boundary +-1, a few inside the data."""
    n = len(data)
    offsets = set(range(64)) | boundaries(name, data) | {n // 3, n // 2, n - 1}
    return sorted(o for o in offsets if 0 <= o < n)


# ---------------------------------------------------------------------------- truncation


@pytest.mark.parametrize("name", list(EXT))
def test_truncated_at_every_header_boundary(sources, tmp_path, name):
    """A file cut anywhere in its headers (and a few places in its data) decodes or is
    refused; what decodes from a lossless file is the start of the full decode."""
    if name not in sources:
        pytest.skip("this libsndfile cannot write MP3")
    data, ext = sources[name], EXT[name]
    full_path = tmp_path / f"full.{ext}"
    full_path.write_bytes(data)
    full = decode_or_refuse(full_path)
    assert full is not None
    offsets = truncation_offsets(name, data)
    assert len(offsets) >= 64
    decoded = 0
    for offset in offsets:
        path = tmp_path / f"cut_{offset}.{ext}"
        path.write_bytes(data[:offset])
        w = decode_or_refuse(path)
        path.unlink()
        if w is None:
            continue
        decoded += 1
        if name in LOSSLESS:  # the prefix of the whole decode
            keep = w.samples.size - 64  # the resampler's tail sees the cut (zero padding)
            np.testing.assert_allclose(w.samples[:keep], full.samples[:keep], atol=1e-6)
    if name.startswith("wav"):  # cuts after the data header with >= 0.1 s of frames decode
        assert decoded >= 2


def test_truncated_wav_header_is_refused_until_the_data_starts(sources, tmp_path):
    """Every cut before the first data byte of a WAV is an AudioError."""
    data = sources["wav16"]
    data_start = data.find(b"data") + 8
    for offset in range(data_start + 1):
        path = tmp_path / f"h{offset}.wav"
        path.write_bytes(data[:offset])
        refusal(path)


# ---------------------------------------------------------------------------- wrong contents


@pytest.mark.parametrize("name,wrong_ext", [("flac", "wav"), ("ogg", "mp3"), ("wav16", "ogg"),
                                            ("wavfloat", "flac"), ("mp3", "wav"), ("flac", ""),
                                            ("m4a", "wav"), ("webm", "mp3"), ("mp4video", "m4a")])
def test_audio_under_the_wrong_extension_decodes_by_content(sources, tmp_path, name, wrong_ext):
    """The extension is ignored: a FLAC named .wav decodes exactly as when named .flac."""
    if name not in sources:
        pytest.skip("this libsndfile cannot write MP3")
    right = tmp_path / f"right.{EXT[name]}"
    wrong = tmp_path / (f"wrong.{wrong_ext}" if wrong_ext else "wrong")
    right.write_bytes(sources[name])
    wrong.write_bytes(sources[name])
    a, b = decode_or_refuse(right), decode_or_refuse(wrong)
    assert a is not None and b is not None
    assert a == b


def _png() -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", 4, 4, 8, 6, 0, 0, 0)
    idat = zlib.compress(b"".join(b"\x00" + bytes(range(16)) for _ in range(4)))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.wav", b"RIFF" + b"\0" * 100)
    return buf.getvalue()


NOT_AUDIO = {
    "png.mp3": _png(),
    "jpeg.wav": (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
                 + bytes(range(256)) * 8 + b"\xff\xd9"),
    "zip.flac": _zip(),
    "gzip.wav": gzip.compress(b"not audio at all " * 200),
    "pdf.ogg": b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n" * 20,
    "elf.wav": b"\x7fELF\x02\x01\x01\x00" + bytes(56) + bytes(range(256)) * 16,
    "json.wav": json.dumps({"samples": list(range(2000)), "rate": 16000}).encode(),
    "html.mp3": b"<!doctype html><html><body>" + b"<p>audio</p>" * 300 + b"</body></html>",
    "utf16.wav": ("\ufeffthis is a transcript, not audio\n" * 100).encode("utf-16-le"),
    "zeros.wav": bytes(50_000),
    "ones.flac": b"\xff" * 50_000,
    "riff-avi.wav": b"RIFF" + struct.pack("<I", 4000) + b"AVI LIST" + bytes(3992),
}


@pytest.mark.parametrize("name", list(NOT_AUDIO))
def test_other_file_types_named_as_audio_are_refused(tmp_path, name):
    """Images, archives, documents, binaries and text under audio names: AudioError (an
    image opens as a picture stream: "no audio track")."""
    path = tmp_path / name
    path.write_bytes(NOT_AUDIO[name])
    msg = refusal(path)
    assert "could not be opened" in msg or "has no audio track" in msg, msg


# ---------------------------------------------------------------------------- non-finite and loud samples


@pytest.mark.parametrize("subtype", ["FLOAT", "DOUBLE"])
@pytest.mark.parametrize("where", ["first", "last", "one-channel-of-8", "across-block-edge"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_anywhere_are_refused(tmp_path, subtype, where, bad):
    """NaN/+-Inf in a float WAV (32 or 64 bit), at the first or last sample, in one
    channel of eight, or straddling a read block: AudioError naming NaN/Inf."""
    channels = 8 if where == "one-channel-of-8" else 1
    x = noise(4800, channels)
    index = {"first": (0, 0), "last": (-1, 0), "one-channel-of-8": (2400, 5),
             "across-block-edge": (1001, 0)}[where]
    x = x.astype(np.float64)
    x[index] = bad
    path = tmp_path / "bad.wav"
    sf.write(str(path), x, 48000, subtype=subtype)
    with pytest.raises(AudioError, match="NaN/Inf") as ei:
        load_audio(path, read_block_frames=1001)  # frame 1001 starts the second read
    assert str(path) in str(ei.value)


def test_loud_finite_channels_do_not_overflow_the_downmix(tmp_path):
    """Two channels at 3e38 (finite float32): their mean is 3e38, not Inf."""
    path = tmp_path / "loud.wav"
    sf.write(str(path), np.full((16000, 2), 3e38, np.float32), 16000, subtype="FLOAT")
    w = decode_or_refuse(path)
    assert w is not None and np.allclose(w.samples, 3e38, rtol=1e-6)


def test_samples_that_overflow_the_resampler_are_refused(tmp_path):
    """A constant 3e38 at 44.1 kHz overflows the resampling filter: AudioError, not Inf."""
    path = tmp_path / "loud.wav"
    sf.write(str(path), np.full(44100, 3e38, np.float32), 44100, subtype="FLOAT")
    assert "outside the normal range" in refusal(path)


# ---------------------------------------------------------------------------- sample rates


def _patched_rate(tmp_path: Path, rate: int) -> Path:
    """A 0.5 s 16 kHz PCM_16 WAV whose header claims ``rate`` (byte rate patched to match)."""
    data = bytearray(encode("WAV", "PCM_16", 16000, 1))
    assert struct.unpack("<I", data[24:28])[0] == 16000
    data[24:28] = struct.pack("<I", rate & 0xFFFFFFFF)
    data[28:32] = struct.pack("<I", (rate * 2) & 0xFFFFFFFF)
    path = tmp_path / f"rate_{rate}.wav"
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("rate,words", [
    (0, "could not be opened"),
    (1, "too low for speech"),
    (2, "too low for speech"),
    (100, "too low for speech"),
    (MIN_SAMPLE_RATE - 1, "too low for speech"),
    (22254, "unusual sample rate"),
    (2**30, "unusual sample rate"),
    (2**31 - 1, "unusual sample rate"),
    (2**32 - 1, "could not be opened"),
    (16000 * 65536, "too short to use"),  # feasible 65536:1 decimation; 8000 frames = 0.5 ms
])
def test_absurd_header_sample_rates_are_refused(tmp_path, rate, words):
    """0 Hz, 1 Hz, just under the floor, prime and 32-bit-limit rates: AudioError saying why
    (a 1 Hz header used to turn 16 KB into a 128 M-sample waveform)."""
    assert words in refusal(_patched_rate(tmp_path, rate))


def test_lowest_accepted_rate_upsamples_at_most_four_times(tmp_path):
    """At MIN_SAMPLE_RATE the output holds 4 samples per input frame, no more."""
    w = decode_or_refuse(_patched_rate(tmp_path, MIN_SAMPLE_RATE))
    assert w is not None and w.samples.size == 4 * 8000


# ---------------------------------------------------------------------------- tiny and wide files


@pytest.mark.parametrize("fmt,subtype,ext", [("WAV", "PCM_16", "wav"), ("WAV", "FLOAT", "wav"),
                                             ("WAV", "PCM_U8", "wav"), ("FLAC", "PCM_24", "flac"),
                                             ("OGG", "VORBIS", "ogg")])
@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_one_sample_file_is_too_short(tmp_path, fmt, subtype, ext, rate):
    """A single frame (or none, once a codec drops it) is refused as too short or empty."""
    path = tmp_path / f"one.{ext}"
    sf.write(str(path), np.array([0.25], np.float32), rate, format=fmt, subtype=subtype)
    msg = refusal(path)
    assert "too short to use" in msg or "no audio samples" in msg, msg


@pytest.mark.parametrize("fmt,subtype,ext,exact", [("WAV", "FLOAT", "wav", True), ("WAVEX", "PCM_24", "wav", True),
                                                   ("FLAC", "PCM_24", "flac", True), ("OGG", "VORBIS", "ogg", False)])
def test_eight_channels_decode_to_the_channel_mean(tmp_path, fmt, subtype, ext, exact):
    """8-channel WAV/WAVEX/FLAC/OGG: mono = mean of the channels (lossless: to 1e-4)."""
    rate = 48000
    t = np.arange(rate) / rate
    gains = np.linspace(-0.4, 0.9, 8)
    x = (0.5 * np.sin(2 * np.pi * 440 * t)[:, None] * gains[None, :]).astype(np.float32)
    path = tmp_path / f"eight.{ext}"
    sf.write(str(path), x, rate, format=fmt, subtype=subtype)
    w = decode_or_refuse(path)
    assert w is not None
    ref = resample(sf.read(str(path), dtype="float32")[0].mean(axis=1, dtype=np.float64).astype(np.float32),
                   rate, 16000)
    if exact:
        assert w.samples.size == ref.size == 16000
        assert np.abs(w.samples - ref).max() < 1e-4
    else:  # lossy codec: the level of the mean (gain 0.25), not of one channel or the sum
        assert abs(np.abs(w.samples[2000:-2000]).max() - 0.5 * gains.mean()) < 0.03


# ---------------------------------------------------------------------------- random bytes and headers

EXTENSIONS = ["wav", "flac", "ogg", "mp3", "aiff", "bin", "m4a", "mp4", "mkv"]
MAGICS = [b"", b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00isomM4A ", b"\x00\x00\x00\x08moov",
          b"\x1aE\xdf\xa3\x9fB\x86\x81\x01B\xf7\x81\x01B\xf2\x81\x04B\xf3\x81\x08B\x82\x84webm", b"RIFF", b"RIFF\x24\x00\x00\x00WAVEfmt ", b"RIFF\xff\xff\xff\xffWAVEfmt \x10\x00\x00\x00",
          b"RF64\xff\xff\xff\xffWAVEds64", b"fLaC", b"fLaC\x00\x00\x00\x22", b"OggS\x00\x02",
          b"ID3\x04\x00\x00\x00\x00\x00\x00", b"\xff\xfb\x90\x64", b"FORM\x00\x00\x10\x00AIFF", b".snd",
          b"caff\x00\x01\x00\x00"]


@FUZZ
@given(magic=st.sampled_from(MAGICS), payload=st.binary(max_size=4096), ext=st.sampled_from(EXTENSIONS))
def test_random_bytes_behind_any_magic(scratch, magic, payload, ext):
    """Random bytes, alone or behind a real format's magic number: decodes or AudioError."""
    path = scratch / f"random.{ext}"
    path.write_bytes(magic + payload)
    decode_or_refuse(path)


def mostly(usual: st.SearchStrategy, anything: st.SearchStrategy) -> st.SearchStrategy:
    """``usual`` about three times in four, else ``anything``."""
    return st.integers(0, 3).flatmap(lambda k: usual if k else anything)


@FUZZ
@given(coding=mostly(st.sampled_from([(1, 8), (1, 16), (1, 24), (1, 32), (3, 32), (3, 64), (6, 8), (7, 8)]),
                     st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))),
       channels=mostly(st.integers(1, 2), st.one_of(st.integers(0, 8), st.sampled_from([255, 1024, 1025, 0xFFFF]))),
       rate=mostly(st.sampled_from([8000, 11025, 16000]),
                   st.one_of(st.sampled_from([0, 1, 3999, 2**31 - 1, 2**32 - 1]), st.integers(0, 2**32 - 1))),
       block_align=mostly(st.none(), st.integers(0, 0xFFFF)),
       claimed=mostly(st.none(), st.one_of(st.sampled_from([0, 1, 0xFFFFFFFF]), st.integers(0, 2**32 - 1))),
       size=mostly(st.integers(3200, 20_000), st.integers(0, 20_000)), seed=st.integers(0, 2**32 - 1))
def test_random_wav_header_fields(scratch, coding, channels, rate, block_align, claimed, size, seed):
    """A RIFF/WAVE header with any format tag and bit depth, channel count, rate, block
    align and claimed data size: decodes (at most 4 output samples per byte) or AudioError."""
    tag, bits = coding
    payload = np.random.default_rng(seed).bytes(size)
    header = wav_header(tag, channels, rate, bits, len(payload) if claimed is None else claimed, block_align)
    path = scratch / "header.wav"
    path.write_bytes(header + payload)
    w = decode_or_refuse(path)
    if w is not None:
        assert w.samples.size <= 4 * len(payload)  # >= 1 byte per frame, <= 4x upsampling


@FUZZ
@given(data=st.data(), name=st.sampled_from(list(EXT)))
def test_mutated_valid_files(sources, scratch, data, name):
    """A valid file with 1-8 bytes overwritten, mostly in its headers: decodes or AudioError."""
    if name not in sources:
        return
    blob = bytearray(sources[name])
    for _ in range(data.draw(st.integers(1, 8), label="edits")):
        limit = data.draw(st.sampled_from([256, len(blob)]), label="region")
        at = data.draw(st.integers(0, min(limit, len(blob)) - 1), label="offset")
        blob[at] = data.draw(st.integers(0, 255), label="byte")
    path = scratch / f"mutated.{EXT[name]}"
    path.write_bytes(bytes(blob))
    decode_or_refuse(path)


# ---------------------------------------------------------------------------- random valid WAVs

COMMON_RATES = [4000, 8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000, 176400,
                192000, 352800, 384000]


@st.composite
def wav_params(draw) -> tuple[int, int, str, int]:
    """(rate, channels, subtype, frames): any rate up to 384 kHz (mostly common ones),
    lengths from empty through too short to 0.3 s."""
    rate = draw(mostly(st.sampled_from(COMMON_RATES),
                       st.one_of(st.integers(MIN_SAMPLE_RATE, 384_000), st.integers(1, 384_000))))
    channels = draw(st.integers(1, 8))
    subtype = draw(st.sampled_from(["PCM_16", "PCM_24", "FLOAT"]))
    usable = math.ceil(MIN_DURATION_S * rate)
    frames = draw(st.one_of(st.integers(0, 4), st.integers(0, usable), st.integers(usable, math.ceil(0.3 * rate)),
                            st.integers(usable, math.ceil(0.3 * rate))))
    return rate, channels, subtype, frames


@FUZZ
@given(params=wav_params(), seed=st.integers(0, 2**32 - 1))
def test_random_valid_wavs_decode_exactly_or_say_why(scratch, params, seed):
    """Valid WAVs, random rate/channels/subtype/length: the decode is the resampled channel
    mean of length ceil(N * 16000 / rate); otherwise the AudioError names the reason."""
    rate, channels, subtype, frames = params
    path = scratch / "valid.wav"
    sf.write(str(path), noise(frames, channels, seed % 1000), rate, subtype=subtype)
    w, msg = outcome(path)
    if w is None:
        if frames == 0:  # nothing decodes, whatever the header's rate
            assert "no audio samples" in msg or "unusual sample rate" in msg or "too low" in msg, msg
        elif rate < MIN_SAMPLE_RATE:
            assert "too low for speech" in msg, msg
        elif frames / rate < MIN_DURATION_S:
            assert "too short to use" in msg or "unusual sample rate" in msg, msg
        else:  # only rates sharing almost no factor with 16 kHz may be refused
            assert rate not in COMMON_RATES and "unusual sample rate" in msg and str(rate) in msg, msg
        return
    assert rate >= MIN_SAMPLE_RATE and frames / rate >= MIN_DURATION_S
    assert w.samples.size == math.ceil(frames * TARGET_SAMPLE_RATE / rate)
    mean = sf.read(str(path), dtype="float32", always_2d=True)[0].mean(axis=1, dtype=np.float64)
    assert np.abs(w.samples - resample(mean.astype(np.float32), rate, TARGET_SAMPLE_RATE)).max() < 1e-4


# ---------------------------------------------------------------------------- long audio: bounded memory

_RSS_CHILD = """
import json, resource, sys
from emotalk3d_addon.backend.io.audio import load_audio
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
w = load_audio(sys.argv[1])
print(json.dumps({"base_kb": base, "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "samples": int(w.samples.size), "unit_range": bool(abs(w.samples).max() < 1)}))
"""


def write_long_pcm16_wav(path: Path, seconds: int, rate: int, channels: int) -> None:
    """A PCM_16 WAV of low-level noise written block by block (no whole-file array)."""
    frames = seconds * rate
    data_bytes = frames * channels * 2
    block = (np.random.default_rng(0).standard_normal((rate * 10, channels)) * 3000).astype("<i2").tobytes()
    with open(path, "wb") as f:
        f.write(wav_header(1, channels, rate, 16, data_bytes))
        for _ in range(seconds // 10):
            f.write(block)


def test_twenty_minutes_at_48k_stereo_decode_in_bounded_memory(tmp_path):
    """20 min of 48 kHz stereo (230 MB of PCM): a separate process's peak RSS grows by at
    most twice the 16 kHz output plus 100 MiB. Reading the whole input (>= 230 MB as int16,
    460 MB as float32) would exceed that bound."""
    path = tmp_path / "long.wav"
    seconds, rate = 1200, 48000
    write_long_pcm16_wav(path, seconds, rate, 2)
    try:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
        run = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(path)], capture_output=True, text=True,
                             env=env, timeout=600, cwd=REPO)
    finally:
        path.unlink()
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    out_bytes = seconds * TARGET_SAMPLE_RATE * 4
    assert got["samples"] * 4 == out_bytes and got["unit_range"]
    grown = (got["peak_kb"] - got["base_kb"]) * 1024
    assert grown <= 2 * out_bytes + 100 * 2**20, (grown / 2**20, out_bytes / 2**20)


# ---------------------------------------------------------------------------- long clips: speech windows


@st.composite
def plans_and_lengths(draw, max_windows: int = 400) -> tuple[WindowPlan, int]:
    core = SAMPLES_PER_FEATURE * draw(st.integers(1, 200))
    context = SAMPLES_PER_FEATURE * draw(st.integers(1, 20))
    n = draw(st.one_of(st.integers(0, core + 2 * context + 1), st.integers(0, core * max_windows)))
    return WindowPlan(core=core, context=context), n


def assert_plan_covers(plan: WindowPlan, n: int) -> None:
    """Cores tile [0, n) in order; each window holds its core plus the context (clipped);
    every feature frame belongs to one core and its receptive field lies in that window."""
    wins = plan.windows(n)
    total = num_features(n)
    if n <= plan.core + 2 * plan.context:
        assert wins == [(0, n, 0, n)]
        return
    assert wins[0][2] == 0 and wins[-1][3] == n
    kept = 0
    for (i0, i1, c0, c1), nxt in zip(wins, wins[1:] + [None]):
        assert c0 < c1 and (nxt is None or nxt[2] == c1)
        assert (i0, i1) == (max(0, c0 - plan.context), min(n, c1 + plan.context))
        assert i0 % SAMPLES_PER_FEATURE == 0  # the window's frames sit on the clip's frame grid
        first, stop = c0 // SAMPLES_PER_FEATURE, min(total, -(-c1 // SAMPLES_PER_FEATURE))
        if stop > first:
            assert first * SAMPLES_PER_FEATURE >= i0
            assert (stop - 1) * SAMPLES_PER_FEATURE + RECEPTIVE_FIELD <= i1
        kept += max(0, stop - first)
    assert kept == total


@settings(max_examples=200, deadline=10_000)
@given(plans_and_lengths())
def test_window_plan_covers_every_frame_once(plan_and_n):
    """Hypothesis-drawn plans (core and context multiples of 320) and clip lengths."""
    assert_plan_covers(*plan_and_n)


@settings(max_examples=30, deadline=10_000)
@given(st.integers(0, 3 * 3600 * TARGET_SAMPLE_RATE))
def test_default_window_plan_covers_clips_up_to_three_hours(n):
    """The encoder's own plan (20 s cores, 1 s context) for clips up to 3 hours."""
    encoder = SpeechEncoder(_IndexModel(), "index")
    assert_plan_covers(encoder.plan, n)


class _IndexModel(torch.nn.Module):
    """Stands in for HuBERT: frame j of a chunk is (first, last) input sample of its
    receptive field, so the features say which samples each frame was computed from."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.config = SimpleNamespace(hidden_size=2)

    def forward(self, x: torch.Tensor) -> SimpleNamespace:
        starts = torch.arange(num_features(x.shape[1])) * SAMPLES_PER_FEATURE
        frames = torch.stack([x[0, starts], x[0, starts + RECEPTIVE_FIELD - 1]], dim=1)
        return SimpleNamespace(last_hidden_state=frames[None])


@settings(max_examples=40, deadline=10_000)
@given(plans_and_lengths(max_windows=40))
def test_windowed_encoding_yields_each_frame_once_from_its_own_samples(plan_and_n):
    """Through SpeechEncoder.encode: features are frames 0..T-1 in order, each computed
    from exactly the samples of its global receptive field (samples carry their index)."""
    plan, n = plan_and_n
    n = max(n, RECEPTIVE_FIELD)
    index = Waveform(np.arange(n, dtype=np.float32))  # exact: n < 2**24
    feats = SpeechEncoder(_IndexModel(), "index", plan).encode(index)
    starts = torch.arange(num_features(n), dtype=torch.float32) * SAMPLES_PER_FEATURE
    assert torch.equal(feats, torch.stack([starts, starts + RECEPTIVE_FIELD - 1], dim=1))
