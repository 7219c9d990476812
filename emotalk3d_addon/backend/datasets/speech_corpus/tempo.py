"""Faster (or slower) copies of corpus recordings: the speaking rate of real dialogue.

The synthesisers speak at a steady, careful rate; people in conversation often speak 1.2-1.5x
faster, with bilabials of 30-60 ms. A tempo copy of a recording plays its clean audio
through sox's ``tempo`` (pitch kept, WSOLA in its speech mode), divides every phone and
utterance time by the factor, and animates the rig again from those times, so the mouth
of fast speech is the rig's own coarticulation at that rate (more undershoot between
vowels, closures still reached), not a resampled slow mouth. Half the copies also get an
augmentation chain (``augment.py``). A copy is a recording of its own
(``<source>_tempo<factor>``), in the same split as its source.
"""
from __future__ import annotations

import json
import os
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf

from ...timebase import frame_count
from ..synthetic.speech import Phoneme
from .augment import apply_chain, random_chain
from .engines import SAMPLE_RATE, sox
from .motion import animate_recording

TEMPO_RANGE = (1.1, 1.5)
AUGMENTED_SHARE = 0.5


def change_tempo(samples: np.ndarray, factor: float) -> np.ndarray:
    """(N,) float32 16 kHz -> about N / factor samples, pitch kept, aligned so that time t
    of the input is at t / factor of the output."""
    out = sox(np.asarray(samples, np.float32), SAMPLE_RATE, ["tempo", "-s", f"{factor:.4f}"])
    n = int(round(samples.size / factor))
    return np.pad(out, (0, max(0, n - out.size)))[:n].astype(np.float32)


def tempo_copy_name(source: str, factor: float) -> str:
    return f"{source}_tempo{factor:.2f}"


def build_tempo_copy(source: Path, factor: float, seed: int, model) -> dict:
    """Write the tempo copy of the recording in folder ``source`` beside it (atomic; kept if
    already there); its meta."""
    final = source.parent / tempo_copy_name(source.name, factor)
    if (final / "meta.json").is_file():
        return json.loads((final / "meta.json").read_text(encoding="utf-8"))
    rng = np.random.default_rng(seed)
    meta = json.loads((source / "meta.json").read_text(encoding="utf-8"))
    clean, rate = sf.read(source / meta["audio"][0]["file"], dtype="float32")
    if rate != SAMPLE_RATE or clean.ndim != 1:
        raise ValueError(f"{source}: the clean copy must be 16 kHz mono")
    fast = change_tempo(clean, factor)
    chain = random_chain(rng) if rng.random() < AUGMENTED_SHARE else None
    audio = apply_chain(fast, chain, rng) if chain else fast
    scale = lambda t: round(float(t) / factor, 4)
    phones = [Phoneme(scale(a), scale(b), p) for a, b, p in meta["phones"]]
    utterances = [u | {"start": scale(u["start"]), "end": scale(u["end"])} for u in meta["utterances"]]
    fps = meta["fps"]
    frames = frame_count(audio.size, SAMPLE_RATE, Fraction(fps))
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    sf.write(tmp / "audio.flac", audio, SAMPLE_RATE, subtype="PCM_16")
    description = f"tempo x{factor:.2f}" + (f", {chain.describe()}" if chain else "")
    out = {key: meta[key] for key in ("engine", "voice", "split", "fps")} | {
        "frames": frames, "duration": round(audio.size / SAMPLE_RATE, 4),
        "audio": [{"file": "audio.flac", "chain": description}], "tempo": round(factor, 4), "source": source.name,
        "utterances": utterances, "phones": [[p.start, p.end, p.ipa] for p in phones]}
    out = animate_recording(tmp, out, seed, model)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return out
