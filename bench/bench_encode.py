"""Encode 60 s of speech on the CPU: the shipped Whisper tiny.en encoder (warm), a cold
``emotalk3d predict`` (a fresh process: start, imports, model loads, encode, S2GNet, ARKit
solve, write) of 1 s and of 60 s with where its time goes, and a HuBERT-base-sized encoder
(random weights, the compute of facebook/hubert-base-ls960) for comparison.

Prints seconds and the speed-up over real time (goals: Whisper warm >= 50x, cold predict of
60 s >= 10x). A cold predict is timed as the median of ``--repeats-cold`` runs of the real
command; one more run under ``-X importtime`` with the phases timed from inside gives the
breakdown. ``--tree`` (repeatable) times other source trees (e.g. an unchanged checkout)
interleaved with this one, so a busy machine slows every tree alike.

Usage: python bench/bench_encode.py [--seconds 60] [--repeats 2] [--repeats-cold 3]
       [--cold-seconds 1 60] [--tree PATH ...] [--skip-warm] [--skip-hubert]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch

from common import best_of, hubert_base_encoder, speech

from emotalk3d_addon.backend.speech.encoder import WindowPlan, default_encoder_spec, load_encoder

ROOT = Path(__file__).resolve().parent.parent

# Runs in the fresh process: times each phase of `cli.main` by wrapping the functions that do
# it, and prints them as JSON on the last line of stdout.
PHASES = r"""
import json, sys, time
t0 = time.perf_counter()
spent = {}
def timed(owner, name, phase):
    inner = getattr(owner, name)
    def wrapper(*a, **k):
        start = time.perf_counter()
        try:
            return inner(*a, **k)
        finally:
            spent[phase] = spent.get(phase, 0.0) + time.perf_counter() - start
    setattr(owner, name, wrapper)
from emotalk3d_addon.backend.tools import cli
from emotalk3d_addon.backend.performance import service, runtime
from emotalk3d_addon.backend.speech import encoder
spent["import"] = time.perf_counter() - t0
timed(service, "load_subject", "load subject (check + read)")
timed(runtime, "load_encoder", "load speech encoder")
timed(runtime.SubjectRuntime, "__init__", "runtime (encoder + S2GNet + extractor)")
timed(encoder.SpeechEncoder, "encode", "encode")
timed(runtime.SubjectRuntime, "perform_features", "S2GNet")
timed(service.PerformanceResult, "arkit", "ARKit solve")
timed(service.VertexTrack, "save_npz", "write track")
code = cli.main(sys.argv[1:])
spent["main total"] = time.perf_counter() - t0
spent["models (S2GNet + extractor)"] = spent.pop("runtime (encoder + S2GNet + extractor)") - spent["load speech encoder"]
print(json.dumps(spent))
sys.stdout.flush()
import os; os._exit(code)
"""

WATCHED = ("torch", "torch._dynamo", "transformers", "numba", "sympy", "scipy",
           "emotalk3d_addon.backend.performance.service")


def import_totals(stderr: str) -> dict[str, float]:
    """Cumulative seconds of the first import of each WATCHED module (``-X importtime`` output)."""
    out: dict[str, float] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|", 2)
        name = name.strip()
        if name in WATCHED and name not in out and cumulative.strip().isdigit():
            out[name] = int(cumulative) / 1e6
    return out


def cold_predicts(trees: list[Path], seconds_list: list[float], repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = dict(os.environ, EMOTALK3D_CACHE_DIR=str(tmp / "cache"))   # no cached features: a cold run
        clips = {}
        for seconds in seconds_list:
            clips[seconds] = tmp / f"speech-{seconds:g}s.wav"
            sf.write(clips[seconds], speech(seconds).samples, 16000)

        def command(clip: Path, tree: Path, driver: bool) -> tuple[list[str], Path]:
            args = ["predict", "--subject", "demo", "--audio", str(clip), "--out", str(tmp / "track.npz"),
                    "--emotion", "happy"]
            if driver:
                return [sys.executable, "-X", "importtime", "-c", PHASES, *args], tree
            return [sys.executable, "-m", "emotalk3d_addon.backend.tools.cli", *args], tree

        def run(cmd: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
            for f in (tmp / "cache").glob("features/*"):
                f.unlink()
            start = time.perf_counter()
            done = subprocess.run(cmd, cwd=cwd, env=dict(env, PYTHONPATH=str(cwd)), capture_output=True, text=True)
            wall = time.perf_counter() - start
            if done.returncode:
                raise SystemExit(f"predict failed in {cwd}:\n{done.stderr[-2000:]}")
            return wall, done

        for tree in trees:        # converts the weights into this cache once; compiles numba caches
            run(*command(clips[seconds_list[0]], tree, False))
        for seconds in seconds_list:
            walls: dict[Path, list[float]] = {t: [] for t in trees}
            for _ in range(repeats):
                for tree in trees:     # interleaved: a busy machine slows every tree alike
                    walls[tree].append(run(*command(clips[seconds], tree, False))[0])
            for tree in trees:
                median = statistics.median(walls[tree])
                label = "" if tree == ROOT else f" [{tree}]"
                print(f"cold emotalk3d predict of {seconds:g} s{label}: median {median:.2f} s "
                      f"(runs {', '.join(f'{w:.2f}' for w in walls[tree])})  {seconds / median:.1f}x real time")
                wall, done = run(*command(clips[seconds], tree, True))
                phases = json.loads(done.stdout.strip().splitlines()[-1])
                startup = wall - phases.pop("main total")
                rest = wall - startup - sum(phases.values())
                parts = {"interpreter start": startup, **phases, "other (audio, basis, late imports)": rest}
                print(f"  where it goes (one run under -X importtime, {wall:.2f} s): " +
                      ", ".join(f"{k} {v:.2f}" for k, v in parts.items()))
                imports = import_totals(done.stderr)
                print("  imports (cumulative, first import): " +
                      ", ".join(f"{k} {v:.2f}" for k, v in imports.items()))


parser = argparse.ArgumentParser()
parser.add_argument("--seconds", type=float, default=60.0)
parser.add_argument("--repeats", type=int, default=2)
parser.add_argument("--repeats-cold", type=int, default=3)
parser.add_argument("--cold-seconds", type=float, nargs="+", default=[1.0, 60.0])
parser.add_argument("--tree", type=Path, action="append", default=[],
                    help="another source tree to time cold predicts of, interleaved with this one")
parser.add_argument("--skip-warm", action="store_true")
parser.add_argument("--skip-hubert", action="store_true")
args = parser.parse_args()
wave = speech(args.seconds)
print(f"threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}")

if not args.skip_warm:
    whisper = load_encoder(default_encoder_spec())
    whisper.encode(speech(5.0))                       # warm-up
    t = best_of(lambda: whisper.encode(wave), args.repeats)
    windows = len(whisper.plan.windows(wave.samples.size))
    print(f"whisper tiny.en warm, {args.seconds:g} s: {t:.2f} s for {windows} windows of 30 s  "
          f"{args.seconds / t:.1f}x real time")

cold_predicts([ROOT, *[t.resolve() for t in args.tree]], args.cold_seconds, args.repeats_cold)
print(f"load average {os.getloadavg()[0]:.2f}")

if not args.skip_hubert:
    encoder = hubert_base_encoder()
    print("HuBERT-base size (95M parameters):")
    for window_s in (10, 20, 30):
        encoder.plan = WindowPlan(core=window_s * 16000, context=16000)
        encoder.encode(speech(window_s + 2.0))      # warm-up at this window's shape
        t = best_of(lambda: encoder.encode(wave), args.repeats)
        print(f"  window {window_s:>2} s (+1 s context each side): {t:.2f} s  "
              f"{t / args.seconds:.4f} s per audio second  {args.seconds / t:.1f}x real time")
