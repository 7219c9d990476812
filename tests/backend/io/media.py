"""Real audio/video files for the audio tests, encoded at test time with PyAV (FFmpeg).

Nothing binary is committed: each helper writes a file from a known signal so a test can
compare the decoded 16 kHz waveform with the signal itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np


def chirp(rate: int, seconds: float, f0: float = 200.0, f1: float = 3000.0, amp: float = 0.5) -> np.ndarray:
    """(N,) float32 linear chirp from ``f0`` to ``f1`` Hz; N = round(rate * seconds)."""
    t = np.arange(int(round(rate * seconds))) / rate
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * seconds))
    return (amp * np.sin(phase)).astype(np.float32)


def tone(rate: int, seconds: float, freq: float, amp: float = 0.5) -> np.ndarray:
    """(N,) float32 sine at ``freq`` Hz."""
    t = np.arange(int(round(rate * seconds))) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@dataclass
class Track:
    """One audio stream to write: ``signal`` (N,) or (N, C) float at ``rate`` Hz."""

    signal: np.ndarray
    rate: int
    codec: str = "aac"
    sample_format: str = "fltp"  # what the frames handed to the encoder hold
    language: str | None = None
    title: str | None = None
    bit_rate: int | None = None  # bits/s for lossy codecs; None: the encoder's default
    options: dict[str, str] = field(default_factory=dict)


def _layout(channels: int) -> str:
    return {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1", 24: "22.2"}.get(channels, f"{channels}c")


def write_media(path: Path, tracks: list[Track], fmt: str | None = None, *, video: str | None = None,
                video_seconds: float = 1.0, frame_samples: int = 4096,
                options: dict[str, str] | None = None) -> Path:
    """Write ``tracks`` (and optionally a 64x48 25 fps ``video`` stream of ``video_seconds``,
    codec ``mpeg4`` or ``libx264``) into ``path`` with container ``fmt`` (default: by
    extension); ``options``: the muxer's (e.g. ``{"movflags": "faststart"}``)."""
    with av.open(str(path), "w", format=fmt, options=options or {}) as out:
        if video:
            vs = out.add_stream(video, rate=25)
            vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        streams = []
        for t in tracks:
            x = np.asarray(t.signal, np.float32)
            x = x[:, None] if x.ndim == 1 else x
            s = out.add_stream(t.codec, rate=t.rate, layout=_layout(x.shape[1]), options=t.options)
            if t.bit_rate:
                s.bit_rate = t.bit_rate
            if t.language:
                s.metadata["language"] = t.language
            if t.title:
                s.metadata["title"] = t.title
            streams.append((s, x, t))
        if video:
            for i in range(int(round(video_seconds * 25))):
                img = np.full((48, 64, 3), (i * 9) % 256, np.uint8)
                for pkt in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(pkt)
            for pkt in vs.encode(None):
                out.mux(pkt)
        for s, x, t in streams:
            for i in range(0, x.shape[0], frame_samples):
                block = x[i: i + frame_samples]
                frame = _frame(block, t.sample_format, _layout(x.shape[1]))
                frame.sample_rate, frame.pts = t.rate, i
                for pkt in s.encode(frame):
                    out.mux(pkt)
            for pkt in s.encode(None):
                out.mux(pkt)
    return path


def _frame(block: np.ndarray, sample_format: str, layout: str) -> av.AudioFrame:
    """An AudioFrame holding (n, C) float ``block`` as ``sample_format`` (fltp, flt, s16, s16p, dbl)."""
    planar = sample_format.endswith("p")
    base = sample_format.rstrip("p")
    if base == "s16":
        data = np.clip(np.round(block * 32768), -32768, 32767).astype(np.int16)
    elif base == "s32":
        data = np.clip(np.round(block.astype(np.float64) * 2**31), -(2**31), 2**31 - 1).astype(np.int32)
    elif base == "dbl":
        data = block.astype(np.float64)
    else:
        data = block.astype(np.float32)
    arr = np.ascontiguousarray(data.T) if planar else np.ascontiguousarray(data.reshape(1, -1))
    return av.AudioFrame.from_ndarray(arr, format=sample_format, layout=layout)


def aligned_snr_db(decoded: np.ndarray, reference: np.ndarray, max_lag: int = 2000) -> tuple[float, int]:
    """(SNR in dB, lag) of ``decoded`` against ``reference`` (both 16 kHz) after the best
    integer shift within +-max_lag samples (lag > 0: decoded is late) and a least-squares gain."""
    n = min(decoded.size, reference.size)
    d, r = decoded[:n].astype(np.float64), reference[:n].astype(np.float64)
    spec = np.fft.irfft(np.fft.rfft(d, 2 * n) * np.conj(np.fft.rfft(r, 2 * n)), 2 * n)
    lags = np.r_[np.arange(0, max_lag + 1), np.arange(-max_lag, 0)]
    lag = int(lags[np.argmax(spec[lags])])
    a, b = (d[lag:], r[: n - lag]) if lag >= 0 else (d[: n + lag], r[-lag:])
    gain = float(a @ b / (b @ b))
    err = a - gain * b
    return 10 * np.log10((gain * gain * (b @ b)) / max(err @ err, 1e-30)), lag
