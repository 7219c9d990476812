"""Encode 60 s of speech with a HuBERT-base-sized encoder (random weights) on the CPU.

Prints seconds per second of audio and the speed-up over real time (goal >= 12x).
Usage: python bench/bench_encode.py [--seconds 60] [--window 20]
"""
import argparse

import torch

from common import best_of, hubert_base_encoder, speech

from emotalk3d_addon.backend.speech.encoder import WindowPlan

parser = argparse.ArgumentParser()
parser.add_argument("--seconds", type=float, default=60.0)
parser.add_argument("--repeats", type=int, default=2)
args = parser.parse_args()

encoder = hubert_base_encoder()
wave = speech(args.seconds)
print(f"threads {torch.get_num_threads()}, audio {args.seconds:.0f} s, HuBERT-base size (95M parameters)")
for window_s in (10, 20, 30):
    encoder.plan = WindowPlan(core=window_s * 16000, context=16000)
    encoder.encode(speech(window_s + 2.0))      # warm-up at this window's shape
    t = best_of(lambda: encoder.encode(wave), args.repeats)
    print(f"window {window_s:>2} s (+1 s context each side): {t:.2f} s  "
          f"{t / args.seconds:.4f} s per audio second  {args.seconds / t:.1f}x real time")
