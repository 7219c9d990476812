"""Encode 60 s of speech on the CPU: the shipped Whisper tiny.en encoder (warm, and a cold
``emotalk3d predict`` of the same length, process start included), and a HuBERT-base-sized
encoder (random weights, the compute of facebook/hubert-base-ls960) for comparison.

Prints seconds and the speed-up over real time (goals: Whisper warm >= 50x, cold predict >= 10x).
Usage: python bench/bench_encode.py [--seconds 60] [--repeats 2] [--skip-hubert]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch

from common import best_of, hubert_base_encoder, speech

from emotalk3d_addon.backend.speech.encoder import WindowPlan, default_encoder_spec, load_encoder

parser = argparse.ArgumentParser()
parser.add_argument("--seconds", type=float, default=60.0)
parser.add_argument("--repeats", type=int, default=2)
parser.add_argument("--skip-hubert", action="store_true")
args = parser.parse_args()
wave = speech(args.seconds)
print(f"threads {torch.get_num_threads()}, audio {args.seconds:.0f} s")

whisper = load_encoder(default_encoder_spec())
whisper.encode(speech(5.0))                       # warm-up
t = best_of(lambda: whisper.encode(wave), args.repeats)
windows = len(whisper.plan.windows(wave.samples.size))
print(f"whisper tiny.en warm: {t:.2f} s for {windows} windows of 30 s  {args.seconds / t:.1f}x real time")

with tempfile.TemporaryDirectory() as tmp:
    clip = Path(tmp) / "speech.wav"
    sf.write(clip, wave.samples, 16000)
    cmd = [sys.executable, "-m", "emotalk3d_addon.backend.tools.cli", "predict", "--subject", "demo", "--audio", str(clip),
           "--out", str(Path(tmp) / "track.npz"), "--emotion", "happy"]
    env = dict(os.environ, EMOTALK3D_CACHE_DIR=str(Path(tmp) / "cache"))   # no cached features: a cold run
    subprocess.run(cmd, check=True, env=env, capture_output=True)   # converts the weights into this cache once
    for f in (Path(tmp) / "cache").glob("features/*"):
        f.unlink()
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    cold = time.perf_counter() - start
print(f"cold emotalk3d predict (process start, model loads, encode, S2GNet, write): {cold:.2f} s  "
      f"{args.seconds / cold:.1f}x real time")

if not args.skip_hubert:
    encoder = hubert_base_encoder()
    print("HuBERT-base size (95M parameters):")
    for window_s in (10, 20, 30):
        encoder.plan = WindowPlan(core=window_s * 16000, context=16000)
        encoder.encode(speech(window_s + 2.0))      # warm-up at this window's shape
        t = best_of(lambda: encoder.encode(wave), args.repeats)
        print(f"  window {window_s:>2} s (+1 s context each side): {t:.2f} s  "
              f"{t / args.seconds:.4f} s per audio second  {args.seconds / t:.1f}x real time")
