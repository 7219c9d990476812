"""ARKit-52 weights on the demo subject: solve time for 10 minutes at 30 fps (goal <= 0.5 s
on 2 cores), the re-solve after an emotion edit, and the fit residual on held-out and
real speech (mm per face vertex, RMS) beside the 15-component motion basis's error.

    python bench/bench_arkit.py [--real build/real_speech/audio]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_of  # noqa: E402

from emotalk3d_addon.backend.performance.service import Performance  # noqa: E402
from emotalk3d_addon.backend.protocol.messages import EmotionKey, EmotionSpec, PerformRequest  # noqa: E402
from emotalk3d_addon.backend.subject import resolve_subject  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--real", default="build/real_speech/audio", help="folder of real recordings (optional)")
args = parser.parse_args()

service = Performance()
clip = resolve_subject("demo") / "demo_clip.wav"


def perform(audio, emotion, fps=(30, 1)):
    return service.perform(PerformRequest("demo", str(audio), fps, emotion, device="cpu"))


result = perform(clip, EmotionSpec.constant("happy"))
coefficients = np.tile(result.coefficients, (-(-18000 // result.track.num_frames), 1))[:18000]
result.solver.solve(coefficients[:200])                       # numba compile
t = best_of(lambda: result.solver.solve(coefficients), 3)
fit = result.solver.solve(coefficients)
print(f"solve 18,000 frames (10 min at 30 fps): {t:.3f} s, {fit.sweeps} sweeps (goal <= 0.5 s)")

edited = perform(clip, EmotionSpec.keyed([EmotionKey(0, "neutral"), EmotionKey(result.track.num_frames // 2, "angry")]))
t_edit = best_of(lambda: edited.solver.solve(edited.coefficients), 3)
minute = np.tile(edited.coefficients, (-(-1800 // edited.track.num_frames), 1))[:1800]
t_minute = best_of(lambda: edited.solver.solve(minute), 3)
print(f"re-solve after a key edit: {1000 * t_edit:.1f} ms for {edited.track.num_frames} frames, "
      f"{1000 * t_minute:.1f} ms for 60 s at 30 fps (within the 0.3 s re-generation budget)")

clips = [("demo clip (held-out voice)", clip)]
real = Path(args.real)
if real.is_dir():
    clips += [(p.stem, p) for p in sorted(real.iterdir()) if p.suffix in (".wav", ".flac")]
print(f"{'speech':34s} {'frames':>6s} {'ARKit fit rms/max mm':>21s} {'basis error rms/max mm':>23s}")
rows = []
for name, path in clips:
    r = perform(path, EmotionSpec.speech())
    f = r.arkit()
    e, _ = r.basis_error()
    rows.append((f.rms_mm, e.rms_mm))
    print(f"{name[:34]:34s} {r.track.num_frames:6d} {f.rms_mm:10.3f} / {f.max_mm:6.3f}   {e.rms_mm:10.3f} / {e.max_mm:6.3f}")
fits, errs = np.array(rows).T
print(f"mean over {len(rows)} clips: ARKit fit {fits.mean():.3f} mm RMS, motion basis {errs.mean():.3f} mm RMS")
