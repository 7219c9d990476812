"""Speech from espeak-ng with its phoneme timings (libespeak-ng through ctypes).

Each utterance is synthesised in a fresh child process (``_espeak_child.py``) so the
same request always gives the same samples. Phoneme events carry their audio sample
position, so the viseme rig is driven by the synthesiser's own timings.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import InputError

CHILD = Path(__file__).with_name("_espeak_child.py")


class SpeechError(InputError):
    """espeak-ng is missing or failed."""


@dataclass(frozen=True)
class Phoneme:
    start: float      # seconds from the start of the utterance's audio
    end: float
    ipa: str          # IPA as espeak-ng names it ("" or "_" for pauses)


@dataclass(frozen=True)
class Utterance:
    samples: np.ndarray           # (N,) float32 in [-1, 1]
    sample_rate: int
    phonemes: tuple[Phoneme, ...]
    text: str
    voice: str

    @property
    def duration(self) -> float:
        return self.samples.size / self.sample_rate

    def padded(self, lead: float, tail: float) -> "Utterance":
        """Silence added before and after; phoneme times shifted accordingly."""
        n0 = int(round(lead * self.sample_rate))
        n1 = int(round(tail * self.sample_rate))
        samples = np.concatenate([np.zeros(n0, np.float32), self.samples, np.zeros(n1, np.float32)])
        shift = n0 / self.sample_rate
        phonemes = tuple(Phoneme(p.start + shift, p.end + shift, p.ipa) for p in self.phonemes)
        return Utterance(samples, self.sample_rate, phonemes, self.text, self.voice)


def synthesize(text: str, voice: str, params: dict[str, int] | None = None,
               timeout: float = 60.0) -> Utterance:
    """Speak ``text`` with an espeak-ng ``voice`` ("en-us+f2"); params: rate, pitch,
    range, amplitude, wordgap (espeak-ng units)."""
    with tempfile.TemporaryDirectory(prefix="emotalk3d-espeak-") as tmp:
        raw = Path(tmp) / "speech.raw"
        request = dict(params or {}, text=text, voice=voice, raw=str(raw))
        try:
            proc = subprocess.run([sys.executable, "-I", str(CHILD)], input=json.dumps(request),
                                  capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SpeechError(f"espeak-ng synthesis failed: {exc}") from None
        try:
            reply = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            raise SpeechError(f"espeak-ng synthesis failed (exit {proc.returncode}): "
                              f"{proc.stderr.strip()[-400:]}") from None
        if "error" in reply:
            raise SpeechError(f"espeak-ng: {reply['error']}")
        pcm = np.fromfile(raw, dtype="<i2")
    rate = int(reply["sample_rate"])
    samples = (pcm.astype(np.float32) / 32768.0)
    events = [(int(s), str(name)) for s, name in reply["phonemes"]]
    phonemes = []
    for i, (s, name) in enumerate(events):
        e = events[i + 1][0] if i + 1 < len(events) else pcm.size
        if e > s:
            phonemes.append(Phoneme(s / rate, e / rate, name.strip()))
    return Utterance(samples, rate, tuple(phonemes), text, voice)


def espeak_available() -> bool:
    """Whether libespeak-ng can be loaded (cheap check in a child process)."""
    try:
        synthesize("a", "en-us")
    except SpeechError:
        return False
    return True
