"""Audio augmentation that keeps every phone where it was.

Real dialogue reaches us through microphones, rooms, phone lines and codecs; the
synthesisers' clean output does not. Each augmented copy of a recording gets a random
chain of: pitch shift (duration kept), EQ or telephone band, room reverb, noise at an
SNR, level, and an MP3 or Ogg round trip. Any delay a codec adds is measured by
cross-correlation and removed, and the length is kept, so phone times stay exact.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from .engines import SAMPLE_RATE, sox

NOISE_SNRS_DB = (5.0, 10.0, 15.0, 20.0, 30.0)


@dataclass(frozen=True)
class Chain:
    """One augmentation chain (None / 0 = that step is skipped)."""

    pitch_cents: float = 0.0
    eq: tuple[float, float, float] | None = None      # centre Hz, Q, gain dB
    telephone: bool = False
    reverb: float = 0.0                               # sox reverberance 0..100
    noise: str | None = None                          # "white" | "pink" | "brown" | "hum"
    snr_db: float = 30.0
    gain_db: float = 0.0
    codec: str | None = None                          # "mp3" | "ogg"
    bitrate_kbps: int = 64

    def describe(self) -> str:
        parts = []
        if self.pitch_cents:
            parts.append(f"pitch {self.pitch_cents:+.0f} c")
        if self.eq:
            parts.append(f"eq {self.eq[0]:.0f} Hz {self.eq[2]:+.1f} dB")
        if self.telephone:
            parts.append("telephone")
        if self.reverb:
            parts.append(f"reverb {self.reverb:.0f}")
        if self.noise:
            parts.append(f"{self.noise} noise {self.snr_db:.0f} dB SNR")
        if self.gain_db:
            parts.append(f"gain {self.gain_db:+.1f} dB")
        if self.codec:
            parts.append(f"{self.codec} {self.bitrate_kbps} kbps" if self.codec == "mp3" else self.codec)
        return ", ".join(parts) or "clean"


def random_chain(rng: np.random.Generator) -> Chain:
    """A random chain; each step is present with its own probability."""
    telephone = rng.random() < 0.2
    return Chain(
        pitch_cents=float(rng.uniform(-250, 250)) if rng.random() < 0.5 else 0.0,
        eq=None if telephone or rng.random() < 0.5 else (float(np.exp(rng.uniform(np.log(150), np.log(6000)))),
                                                        float(rng.uniform(0.5, 2.0)), float(rng.uniform(-12, 12))),
        telephone=telephone,
        reverb=float(rng.uniform(15, 85)) if rng.random() < 0.4 else 0.0,
        noise=str(rng.choice(["white", "pink", "brown", "hum"])) if rng.random() < 0.6 else None,
        snr_db=float(rng.choice(NOISE_SNRS_DB)),
        gain_db=float(rng.uniform(-18, 4)),
        codec=None if rng.random() < 0.5 else str(rng.choice(["mp3", "ogg"])),
        bitrate_kbps=int(rng.choice([24, 32, 48, 64, 96])),
    )


def coloured_noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) float32 unit-RMS noise: white, pink (1/f), brown (1/f^2) or mains hum with harmonics."""
    if kind == "hum":
        t = np.arange(n) / SAMPLE_RATE
        base = float(rng.choice([50.0, 60.0]))
        x = sum(np.sin(2 * np.pi * base * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 6))
        x = x + 0.05 * rng.standard_normal(n)
    else:
        spectrum = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
        f[0] = f[1] if f.size > 1 else 1.0
        power = {"white": 0.0, "pink": 1.0, "brown": 2.0}[kind]
        x = np.fft.irfft(spectrum / f ** (power / 2), n)
    x = x - x.mean()
    return (x / max(float(np.sqrt(np.mean(x ** 2))), 1e-12)).astype(np.float32)


def codec_round_trip(x: np.ndarray, codec: str, bitrate_kbps: int) -> np.ndarray:
    """Encode and decode through libsndfile (MP3 or Ogg Vorbis); delay removed, length kept."""
    buf = io.BytesIO()
    if codec == "mp3":
        sf.write(buf, x, SAMPLE_RATE, format="MP3", subtype="MPEG_LAYER_III",
                 compression_level=float(np.clip(1 - (bitrate_kbps - 24) / 104, 0, 0.95)))
    else:
        sf.write(buf, x, SAMPLE_RATE, format="OGG", subtype="VORBIS",
                 compression_level=float(np.clip(1 - (bitrate_kbps - 24) / 104, 0, 0.95)))
    buf.seek(0)
    y, _ = sf.read(buf, dtype="float32")
    return align_to(y, x)


def estimate_delay(y: np.ndarray, x: np.ndarray, max_lag: int = 4000) -> int:
    """Samples by which ``y`` lags ``x`` (cross-correlation of the two, |lag| <= max_lag)."""
    n = 1 << int(np.ceil(np.log2(x.size + y.size + 1)))
    corr = np.fft.irfft(np.fft.rfft(y, n) * np.conj(np.fft.rfft(x, n)), n)
    lags = np.concatenate([corr[:max_lag + 1], corr[-max_lag:]])
    idx = int(np.argmax(lags))
    return idx if idx <= max_lag else idx - lags.size


def envelope(x: np.ndarray, hop: int = 16) -> np.ndarray:
    """Amplitude envelope (10 ms moving mean of |x|), one value per ``hop`` samples."""
    return np.convolve(np.abs(x), np.ones(160) / 160, "same")[::hop]


def align_to(y: np.ndarray, x: np.ndarray, by_envelope: bool = False) -> np.ndarray:
    """``y`` shifted so it lines up with ``x`` and cut or zero-padded to ``x``'s length.

    ``by_envelope``: match amplitude envelopes (1 ms steps) instead of waveforms, for
    effects that change the waveform's phase or pitch.
    """
    lag = estimate_delay(envelope(y), envelope(x), 250) * 16 if by_envelope else estimate_delay(y, x)
    y = y[lag:] if lag > 0 else np.concatenate([np.zeros(-lag, np.float32), y])
    out = np.zeros(x.size, np.float32)
    out[:min(x.size, y.size)] = y[:x.size]
    return out


def apply_chain(x: np.ndarray, chain: Chain, rng: np.random.Generator) -> np.ndarray:
    """(N,) float32 16 kHz -> the same length, augmented; phones stay where they were."""
    effects: list[str] = []
    if chain.pitch_cents:
        effects += ["pitch", f"{chain.pitch_cents:.0f}"]
    if chain.eq:
        effects += ["equalizer", f"{chain.eq[0]:.0f}", f"{chain.eq[1]:.2f}q", f"{chain.eq[2]:.1f}"]
    if chain.telephone:
        effects += ["sinc", "300-3400", "rate", "8000"]
    if chain.reverb:
        effects += ["reverb", f"{chain.reverb:.0f}"]
    y = x.astype(np.float32)
    if effects:
        y = align_to(sox(y, SAMPLE_RATE, effects), x, by_envelope=True)
    if chain.noise:
        speech_rms = float(np.sqrt(np.mean(y[np.abs(y) > 1e-4] ** 2))) if np.any(np.abs(y) > 1e-4) else 0.0
        noise = coloured_noise(chain.noise, y.size, rng)
        y = y + noise * speech_rms * 10 ** (-chain.snr_db / 20)
    y = y * 10 ** (chain.gain_db / 20)
    peak = float(np.abs(y).max()) if y.size else 0.0
    if peak > 0.99:
        y = y * (0.99 / peak)
    if chain.codec:
        y = codec_round_trip(y.astype(np.float32), chain.codec, chain.bitrate_kbps)
    return np.clip(y, -1, 1).astype(np.float32)
