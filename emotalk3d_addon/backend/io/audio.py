"""Audio input: the sound of any file FFmpeg reads, as 16 kHz mono float32.

Decoding (one path for every format, through PyAV) lives in :mod:`.audio_container`;
this module turns its blocks into the :class:`Waveform` the backend uses.

Long recordings (hours) are handled with bounded memory: the file is decoded frame by
frame, each block is downmixed to float32 mono at once, and the mono signal is
resampled in overlapping chunks whose concatenation equals a whole-signal
``torchaudio.functional.resample`` (the project's resampler).

Every bad input raises :class:`~.errors.AudioError` with one sentence naming the file.
"""
from __future__ import annotations

import hashlib
import math
import numbers
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torchaudio.functional as taf
import torchaudio.transforms as tat

from ..errors import AudioError
from .audio_container import SUPPORTED_FORMATS, AudioSource, AudioStreamInfo, list_audio_streams

__all__ = ["TARGET_SAMPLE_RATE", "MIN_DURATION_S", "MIN_SAMPLE_RATE", "MAX_DURATION_S", "SUPPORTED_FORMATS",
           "Waveform", "AudioStreamInfo", "load_audio", "list_audio_streams", "waveform_from_array", "resample"]

TARGET_SAMPLE_RATE: int = 16_000
MIN_DURATION_S: float = 0.1  # shorter than this after decoding -> AudioError ("too short to use")
MIN_SAMPLE_RATE: int = 4_000
"""Lower sample rates cannot carry speech; refusing them also bounds the output to 4x the
input frames (a damaged 1 Hz header would otherwise turn kilobytes into gigabytes)."""

MAX_DURATION_S: float = 6 * 3600
"""Longer audio is refused: a few kilobytes of a compressed stream (Opus silence, a FLAC of
zeros) can decode to days of samples; 6 hours is ~1.4 GB at 16 kHz float32."""

READ_BLOCK_FRAMES: int = 65_536
"""Most frames handed on per block (all channels, float32): ~2 MiB for 8 channels."""

RESAMPLE_CHUNK_FRAMES: int = 1_048_576
"""Input (mono) frames resampled per chunk, rounded down to a multiple of the reduced
input rate; each chunk also gets the filter's context on both sides."""

# torchaudio.functional.resample defaults; the chunked path sizes its context from them.
_LOWPASS_FILTER_WIDTH = 6
_ROLLOFF = 0.99

# torchaudio builds a (new, 1, 2*width + orig) kernel for the gcd-reduced rates; rates
# with almost no common factor with 16 kHz (e.g. 22254 Hz) would need gigabytes.
_MAX_KERNEL_ELEMENTS = 1 << 24



# --------------------------------------------------------------------------- Waveform


@dataclass(frozen=True)
class Waveform:
    """Mono audio. ``samples``: (N,) float32, C-contiguous, read-only; ``sample_rate`` in Hz.

    Equality compares sample rate and samples exactly; ``hash()`` uses :meth:`content_hash`.
    """

    samples: np.ndarray
    sample_rate: int = TARGET_SAMPLE_RATE
    _hash: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        s = self.samples
        if not isinstance(s, np.ndarray) or s.ndim != 1 or s.dtype != np.float32:
            raise TypeError("Waveform.samples must be a 1-D float32 numpy array")
        if isinstance(self.sample_rate, bool) or not isinstance(self.sample_rate, (int, np.integer)) \
                or self.sample_rate <= 0:
            raise ValueError(f"Waveform.sample_rate must be a positive int, got {self.sample_rate!r}")
        s = np.ascontiguousarray(s).view()
        s.flags.writeable = False  # the content hash is cached: keep the samples immutable
        object.__setattr__(self, "samples", s)
        object.__setattr__(self, "sample_rate", int(self.sample_rate))

    @property
    def duration(self) -> float:
        """Length in seconds (= N / sample_rate)."""
        return self.samples.shape[0] / self.sample_rate

    def content_hash(self) -> str:
        """SHA-256 hex of the sample rate (int64 little-endian) followed by the samples
        (float32 little-endian); stable across runs and machines. Computed once."""
        if self._hash is None:
            h = hashlib.sha256(struct.pack("<q", self.sample_rate))
            h.update(memoryview(np.ascontiguousarray(self.samples, dtype="<f4")).cast("B"))
            object.__setattr__(self, "_hash", h.hexdigest())
        return self._hash  # type: ignore[return-value]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Waveform):
            return NotImplemented
        return self.sample_rate == other.sample_rate and np.array_equal(self.samples, other.samples)

    def __hash__(self) -> int:
        return hash(self.content_hash())


# --------------------------------------------------------------------------- resampling


def resample(samples: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Whole-signal resample with ``torchaudio.functional.resample`` (default filter).

    ``samples``: (N,) float (converted to float32); rates in Hz, positive ints.
    Returns (M,) float32 with M = ceil(N * new_rate / orig_rate) (torchaudio's length);
    a copy of the input when the rates are equal.
    """
    x = np.asarray(samples)
    if x.ndim != 1:
        raise ValueError(f"resample expects a 1-D array, got shape {x.shape}")
    orig_rate, new_rate = _positive_int(orig_rate, "orig_rate"), _positive_int(new_rate, "new_rate")
    x = np.array(x, dtype=np.float32, order="C", copy=True)
    if orig_rate == new_rate or x.shape[0] == 0:
        if x.shape[0] == 0:
            return np.zeros(0, np.float32)
        return x
    with torch.no_grad():
        y = taf.resample(torch.from_numpy(x), orig_rate, new_rate)
    return np.ascontiguousarray(y.numpy(), dtype=np.float32)


def _positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return int(value)


def _kernel_geometry(orig_rate: int, new_rate: int) -> tuple[int, int, int]:
    """(orig, new) reduced by their gcd and torchaudio's kernel half-width ``width`` in
    input samples (same formula as torchaudio's ``_get_sinc_resample_kernel``)."""
    g = math.gcd(orig_rate, new_rate)
    orig_r, new_r = orig_rate // g, new_rate // g
    width = math.ceil(_LOWPASS_FILTER_WIDTH * orig_r / (min(orig_r, new_r) * _ROLLOFF))
    return orig_r, new_r, width


def _resample_is_feasible(orig_rate: int, new_rate: int) -> bool:
    if orig_rate == new_rate:
        return True
    orig_r, new_r, width = _kernel_geometry(orig_rate, new_rate)
    return new_r * (2 * width + orig_r) <= _MAX_KERNEL_ELEMENTS


class _OutputBuffer:
    """Growable 1-D float32 buffer (amortised doubling) so the result needs no final
    concatenation of pieces."""

    def __init__(self, expected: int) -> None:
        # a damaged header may claim absurd lengths: preallocate at most ~35 min, grow after
        self._data = np.empty(min(max(int(expected), 1024), 1 << 25), np.float32)
        self._n = 0
        self.finite = True  # False once a non-finite sample was appended

    def append(self, x: np.ndarray) -> None:
        if self.finite and not np.isfinite(x).all():
            self.finite = False
        need = self._n + x.shape[0]
        if need > self._data.shape[0]:
            grown = np.empty(max(need, 2 * self._data.shape[0]), np.float32)
            grown[: self._n] = self._data[: self._n]
            self._data = grown
        self._data[self._n : need] = x
        self._n = need

    def result(self) -> np.ndarray:
        if self._n < self._data.shape[0] // 2:  # don't pin a mostly empty allocation
            return self._data[: self._n].copy()
        return self._data[: self._n]


class _ChunkedResampler:
    """Streaming resampler: push mono float32 pieces, get the same samples a single
    ``taf.resample`` over the whole signal gives (up to float rounding).

    Uses ``torchaudio.transforms.Resample(dtype=float32)``: the same kernel and
    ``_apply_sinc_resample_kernel`` as ``torchaudio.functional.resample`` on float32
    input (bit-identical), but the kernel is built once instead of per chunk (building
    it costs ~0.2 s for 44.1 kHz on a slow CPU).

    Output j of torchaudio's polyphase filter reads input [b*orig - width,
    b*orig + orig + width) with b = j // new (gcd-reduced rates). Chunks start at
    multiples of ``orig`` so their outputs align exactly with the global ones, and each
    chunk gets ``context`` >= width extra input on both sides (a multiple of ``orig``);
    the outputs kept from each chunk therefore never see the chunk's zero padding.
    """

    def __init__(self, orig_rate: int, new_rate: int, out: _OutputBuffer,
                 chunk_frames: int = RESAMPLE_CHUNK_FRAMES) -> None:
        self.orig_rate, self.new_rate = orig_rate, new_rate
        self.identity = orig_rate == new_rate
        self.out = out
        if not self.identity:
            self.orig_r, self.new_r, _ = _kernel_geometry(orig_rate, new_rate)
            self.resampler = tat.Resample(orig_rate, new_rate, lowpass_filter_width=_LOWPASS_FILTER_WIDTH,
                                          rolloff=_ROLLOFF, dtype=torch.float32)
            width = int(self.resampler.width)
            # one extra period of margin on top of the exact requirement
            self.context = (math.ceil(width / self.orig_r) + 1) * self.orig_r
            self.step = max(1, int(chunk_frames) // self.orig_r) * self.orig_r
            self.buf = np.zeros(0, np.float32)
            self.pending: list[np.ndarray] = []
            self.buf_start = 0  # global input index of buf[0]
            self.emit_pos = 0  # global input index where the next un-emitted chunk starts
        self.total_in = 0

    def push(self, x: np.ndarray) -> None:
        """Append (n,) float32 mono input (the caller must not modify ``x`` afterwards)."""
        self.total_in += x.shape[0]
        if self.identity:
            self.out.append(x)
            return
        self.pending.append(x)
        if self.total_in - self.emit_pos < self.step + self.context:
            return
        # join only when a chunk is ready, so each sample is copied O(1) times
        self.buf = np.concatenate([self.buf, *self.pending])
        self.pending = []
        while self.total_in - self.emit_pos >= self.step + self.context:
            self._emit(self.emit_pos, self.emit_pos + self.step, final=False)
            self.emit_pos += self.step
        drop = max(0, self.emit_pos - self.context) - self.buf_start
        if drop > 0:
            self.buf = self.buf[drop:].copy()
            self.buf_start += drop

    def finish(self) -> None:
        """Flush the tail (the end of the signal is zero-padded, as torchaudio does)."""
        if not self.identity and self.total_in > self.emit_pos:
            self.buf = np.concatenate([self.buf, *self.pending])
            self.pending = []
            self._emit(self.emit_pos, self.total_in, final=True)
            self.emit_pos = self.total_in

    def _emit(self, s: int, e: int, final: bool) -> None:
        a = max(0, s - self.context)  # multiple of orig_r (s and context are)
        c = self.total_in if final else e + self.context
        seg = self.buf[a - self.buf_start : c - self.buf_start]
        with torch.no_grad():
            y = self.resampler(torch.from_numpy(np.ascontiguousarray(seg)))
        y = y.numpy()
        j0 = a // self.orig_r * self.new_r  # global index of y[0]
        k0 = s // self.orig_r * self.new_r - j0
        k1 = y.shape[0] if final else e // self.orig_r * self.new_r - j0
        self.out.append(y[k0:k1])


# --------------------------------------------------------------------------- public API


def waveform_from_array(samples: np.ndarray, sample_rate: int) -> Waveform:
    """Wrap in-memory audio as a 16 kHz mono :class:`Waveform`.

    ``samples``: (N,) or (N, C) frames x channels, any float or int dtype (signed ints
    are scaled by 2**-(bits-1), unsigned ints are centred first, so both land in
    [-1, 1)); channels are averaged. ``sample_rate`` in Hz. AudioError for a bad rate,
    shape or dtype, NaN/Inf samples, or less than MIN_DURATION_S of audio.
    """
    name = "The audio array"
    rate = _check_rate(sample_rate, name)
    x = np.asarray(samples)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise AudioError(f"{name} must have shape (frames,) or (frames, channels), got {x.shape}.")
    if x.shape[1] == 0:
        raise AudioError(f"{name} has no channels (shape {x.shape}).")
    if x.dtype == np.bool_ or not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise AudioError(f"{name} has an unsupported sample type {x.dtype}; use float or integer samples.")
    _check_length(x.shape[0], rate, name)

    def blocks() -> Iterator[np.ndarray]:
        for i in range(0, x.shape[0], READ_BLOCK_FRAMES):
            yield _to_float32(x[i : i + READ_BLOCK_FRAMES])

    return _blocks_to_waveform(blocks(), rate, name, expected_frames=x.shape[0])


def load_audio(path: str | os.PathLike, *, stream: int | None = None,
               read_block_frames: int = READ_BLOCK_FRAMES,
               resample_chunk_frames: int = RESAMPLE_CHUNK_FRAMES,
               max_seconds: float = MAX_DURATION_S) -> Waveform:
    """Decode the sound of any file FFmpeg reads (WAV, FLAC, MP3, Ogg/Opus, M4A/AAC, AIFF,
    or a video: MP4, MOV, MKV, WebM, ...) into a 16 kHz mono float32 :class:`Waveform`
    (channels averaged).

    ``stream``: which audio track, numbered from 0 among the file's audio tracks (see
    :func:`list_audio_streams`); None takes the first. Memory stays bounded: decoded frames
    are handed on in blocks of at most ``read_block_frames`` frames and resampling runs in
    chunks of ``resample_chunk_frames`` input frames; more than ``max_seconds`` of audio is
    refused. AudioError (naming the file) for every unusable file.
    """
    with AudioSource(path, stream) as src:
        name = src.name
        rate = _check_rate(src.sample_rate, name)
        limit = int(max_seconds * rate)

        def blocks() -> Iterator[np.ndarray]:
            done = 0
            for b in src.blocks(read_block_frames):
                done += b.shape[0]
                if done > limit:
                    raise AudioError(f"{name} is longer than {_clock(max_seconds)}, the longest audio "
                                     f"accepted; split it into shorter parts.")
                yield _to_float32(b)

        return _blocks_to_waveform(blocks(), rate, name, expected_frames=src.expected_frames,
                                   chunk_frames=resample_chunk_frames)


# --------------------------------------------------------------------------- helpers


def _blocks_to_waveform(blocks: Iterable[np.ndarray], rate: int, name: str, *,
                        expected_frames: int = 0,
                        chunk_frames: int = RESAMPLE_CHUNK_FRAMES) -> Waveform:
    """(n, C) float32 blocks at ``rate`` -> 16 kHz mono Waveform; ``name`` starts messages."""
    if not _resample_is_feasible(rate, TARGET_SAMPLE_RATE):
        raise AudioError(f"{name} uses an unusual sample rate ({rate} Hz) that cannot be converted "
                         f"to 16 kHz; re-export it at 16, 44.1 or 48 kHz.")
    expected_out = math.ceil(max(expected_frames, 0) * TARGET_SAMPLE_RATE / rate) + 1
    out = _OutputBuffer(expected_out)
    rs = _ChunkedResampler(rate, TARGET_SAMPLE_RATE, out, chunk_frames)
    for b in blocks:
        if not np.isfinite(b).all():
            raise AudioError(f"{name} contains NaN/Inf samples; re-export it as ordinary audio.")
        # float64 mean: finite samples near the float32 limit must not overflow the sum
        mono = b[:, 0].copy() if b.shape[1] == 1 else b.mean(axis=1, dtype=np.float64)
        rs.push(np.ascontiguousarray(mono, dtype=np.float32))
    if rs.total_in == 0:
        raise AudioError(f"{name} contains no audio samples.")
    _check_length(rs.total_in, rate, name)
    rs.finish()
    if not out.finite:  # finite input so loud (~1e38) that resampling overflowed
        raise AudioError(f"{name} holds samples far outside the normal range (-1 to 1) that "
                         f"overflow when converted; normalise it and export it again.")
    return Waveform(out.result(), TARGET_SAMPLE_RATE)


def _to_float32(x: np.ndarray) -> np.ndarray:
    """(n, C) int/float block -> float32 in [-1, 1) for ints (exact power-of-two scale)."""
    if np.issubdtype(x.dtype, np.floating):
        with np.errstate(over="ignore", invalid="ignore"):  # beyond float32: Inf, refused later
            return x.astype(np.float32)
    bits = x.dtype.itemsize * 8
    scale = np.float32(2.0 ** -(bits - 1))
    y = x.astype(np.float32)
    if np.issubdtype(x.dtype, np.unsignedinteger):
        y -= np.float32(2.0 ** (bits - 1))
    y *= scale
    return y


def _check_rate(sample_rate: object, name: str) -> int:
    """Sample rate in Hz as a positive int; AudioError otherwise."""
    if isinstance(sample_rate, (bool, np.bool_)) or not isinstance(sample_rate, numbers.Real):
        raise AudioError(f"{name} has an invalid sample rate {sample_rate!r}.")
    rate_f = float(sample_rate)
    if not math.isfinite(rate_f) or rate_f <= 0:
        raise AudioError(f"{name} has an invalid sample rate of {sample_rate!r} Hz; it must be positive.")
    if rate_f != int(rate_f):
        raise AudioError(f"{name} has a fractional sample rate of {sample_rate!r} Hz; "
                         f"it must be a whole number.")
    if rate_f < MIN_SAMPLE_RATE:
        raise AudioError(f"{name} has a sample rate of {int(rate_f)} Hz, too low for speech; "
                         f"it must be at least {MIN_SAMPLE_RATE} Hz.")
    return int(rate_f)


def _check_length(frames: int, rate: int, name: str) -> None:
    if frames == 0:
        raise AudioError(f"{name} contains no audio samples.")
    seconds = frames / rate
    if seconds < MIN_DURATION_S:
        raise AudioError(f"{name} is too short to use ({seconds:.3f} s; at least "
                         f"{MIN_DURATION_S:g} s of audio is needed).")


def _clock(seconds: float) -> str:
    """'6 hours', '90 minutes' or '2.5 seconds'."""
    for unit, size in (("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = seconds / size
            return f"{n:g} {unit}" + ("s" if n != 1 else "")
    return f"{seconds:g} second" + ("s" if seconds != 1 else "")
