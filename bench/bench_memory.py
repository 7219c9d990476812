"""Peak memory of a 10-minute performance (goal <= 3 GB): decode -> encode -> S2GNet.

Runs the whole chain from a 10-minute 48 kHz stereo WAV file and prints the peak
resident set size of this process (includes PyTorch itself: about 0.4 GB idle).
"""
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf

from common import hubert_base_encoder, peak_rss_mb, speech, subject

from emotalk3d_addon.backend.io.audio import load_audio
from emotalk3d_addon.backend.performance.emotion_track import constant_track
from emotalk3d_addon.backend.performance.runtime import SubjectRuntime
from emotalk3d_addon.backend.timebase import frame_count

minutes = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "long.wav"
    with sf.SoundFile(path, "w", 48000, 2, "PCM_16") as f:
        block = speech(60.0).samples
        up = np.repeat(block, 3)[:, None].repeat(2, 1)
        for _ in range(int(minutes)):
            f.write(up)
    base = peak_rss_mb()
    start = time.perf_counter()
    wave = load_audio(path)
    runtime = SubjectRuntime(subject(), encoder=hubert_base_encoder())
    fps = Fraction(30)
    frames = frame_count(wave.samples.size, 16000, fps)
    track = runtime.perform(wave, fps, constant_track("happy", 1.0, frames))
    elapsed = time.perf_counter() - start
print(f"{minutes:.0f} min clip -> {track.num_frames} frames x {track.vertices.shape[1]} vertices "
      f"({track.vertices.nbytes / 2**20:.0f} MB output) in {elapsed:.0f} s; "
      f"peak RSS {peak_rss_mb() / 1024:.2f} GB (before the run: {base / 1024:.2f} GB)")
