"""Decoding very long audio in bounded memory: a 3-hour 16 kHz mono PCM_16 WAV (~345 MB).

Writes the file block by block into a temporary folder, decodes it with ``load_audio`` in
a separate process and prints the duration decoded, the seconds taken and that process's
peak resident set size (``RUSAGE_CHILDREN``; it includes PyTorch itself, printed apart).

    python bench/bench_long_audio.py [HOURS] [RATE] [CHANNELS]
"""
from __future__ import annotations

import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent

CHILD = """
import json, resource, sys, time
from emotalk3d_addon.backend.io.audio import load_audio
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
w = load_audio(sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - start, "duration": w.duration,
                  "output_bytes": w.samples.nbytes, "base_kb": base}))
"""


def write_wav(path: Path, seconds: int, rate: int, channels: int) -> int:
    """A PCM_16 WAV of speech-level noise, written 10 s at a time; returns its size in bytes."""
    data_bytes = seconds * rate * channels * 2
    if data_bytes + 36 > 0xFFFFFFFF:
        raise SystemExit("too long for a RIFF WAV (4 GiB); use fewer hours, a lower rate or fewer channels")
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * 2, channels * 2, 16)
    block = (np.random.default_rng(0).standard_normal((rate * 10, channels)) * 3000).astype("<i2").tobytes()
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
                + b"data" + struct.pack("<I", data_bytes))
        for _ in range(seconds // 10):
            f.write(block)
    return path.stat().st_size


def main() -> None:
    hours = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    rate = int(sys.argv[2]) if len(sys.argv) > 2 else 16000
    channels = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    seconds = int(hours * 3600) // 10 * 10
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.wav"
        size = write_wav(path, seconds, rate, channels)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        wall = time.perf_counter()
        run = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True,
                             env=env, cwd=REPO)
        wall = time.perf_counter() - wall
    if run.returncode != 0:
        raise SystemExit(run.stderr)
    got = json.loads(run.stdout.strip().splitlines()[-1])
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"{seconds / 3600:.2f} h of {rate} Hz x {channels} PCM_16 ({size / 1e6:.0f} MB file): "
          f"decoded {got['duration']:.1f} s of audio in {got['seconds']:.1f} s "
          f"({wall:.1f} s with the process start); output {got['output_bytes'] / 2**20:.0f} MiB; "
          f"peak RSS {peak_mb:.0f} MiB ({got['base_kb'] / 1024:.0f} MiB after imports, "
          f"{peak_mb - got['base_kb'] / 1024:.0f} MiB for the decode)")


if __name__ == "__main__":
    main()
