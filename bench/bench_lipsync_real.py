"""Lip sync on real human speech: recordings from PyPI source packages (``real_speech.py``:
read, spontaneous, hoarse, broadcast and telephone speech of several speakers), phones
from a forced alignment of their transcripts.

Per recording and pooled over all: the correlation of the lip aperture with the phones'
openness beside the loudness envelope's, the partial correlation with loudness regressed
out, the p/b/m closures reached, and the lip gap in mm (``lipsync.py``), of the performance's one
track (the shape keys' mix, closed in silence: what ``predict`` writes). Emotion from speech, as
in a default generation. Then the emotion heard in each recording alone and in each copy of it played
three times in a row (away from the joins): the same emotion should come out.

With ``--own-speech DATASET`` the pooled lip gap is set beside the subject's own neutral training
speech in that dataset (``own_speech.py``): p50/p90 per phone class, and p90 over all frames, raw
and at these recordings' phone mix; with ``--emotion neutral`` the mouth is keyed neutral.

Goals: aperture~phones beats loudness~phones by >= 0.1, partial >= 0.5, closures >= 80 %; keyed
neutral, the lip gap's p90 within 25 % of the subject's own neutral speech.
Usage: python bench/bench_lipsync_real.py [--subject demo] [--cache build/real_speech] [--set validation]
       [--emotion neutral] [--own-speech build/demo/data]
"""
import argparse
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from real_speech import SETS, prepare_all  # noqa: E402

from emotalk3d_addon.backend.io.audio import Waveform, load_audio  # noqa: E402
from emotalk3d_addon.backend.emotions import EMOTIONS  # noqa: E402
from emotalk3d_addon.backend.datasets.layout import load_dataset  # noqa: E402
from emotalk3d_addon.backend.protocol.messages import EmotionSpec  # noqa: E402
from emotalk3d_addon.backend.tools.evaluate_lipsync import evaluate_recordings, format_row  # noqa: E402
from emotalk3d_addon.backend.tools.own_speech import format_comparison, own_speech_gaps  # noqa: E402
from emotalk3d_addon.backend.performance.runtime import SubjectRuntime  # noqa: E402
from emotalk3d_addon.backend.timebase import frame_count  # noqa: E402
from emotalk3d_addon.backend.subject import load_subject, resolve_subject  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--subject", default="demo")
parser.add_argument("--cache", default="build/real_speech")
parser.add_argument("--set", choices=tuple(SETS), default="test",
                    help="test (the figures in BENCHMARKS.md) or validation (other speakers, for choosing recipes)")
parser.add_argument("--emotion", help="key this emotion (default: heard in the speech)")
parser.add_argument("--own-speech", metavar="DATASET", help="the subject's training dataset: set the lip gap "
                                                             "beside its neutral training speech")
args = parser.parse_args()

own = own_speech_gaps(load_dataset(args.own_speech)) if args.own_speech else None
prepared = prepare_all(Path(args.cache), recordings=SETS[args.set])
subject = load_subject(resolve_subject(args.subject))
report = evaluate_recordings(subject, [(str(a), str(p)) for _, a, p in prepared],
                             emotion=EmotionSpec.constant(args.emotion) if args.emotion else None, own_speech=own)
seconds = sum(load_audio(a).samples.size for _, a, _ in prepared) / 16000
print(f"subject {subject.name} ({subject.encoder.kind} {subject.encoder.source}) on {len(prepared)} real "
      f"recordings ({args.set} set), {seconds:.0f} s" + (f", keyed {args.emotion}" if args.emotion else ""))
for rec, audio, _ in prepared:
    print(format_row(rec.name, report["recordings"][str(audio)]))
print(format_row("pooled (frame-weighted)", report["pooled"]))
if own is not None:
    print(format_comparison(report["own_speech"]))

runtime = SubjectRuntime(subject)
fps = Fraction(25)
print("\nemotion from speech: alone | copy 1 | copy 2 | copy 3 of the same recording played three times")
agree = 0
for rec, audio, _ in prepared:
    wave = load_audio(audio)
    n = frame_count(wave.samples.size, wave.sample_rate, fps)
    inner = slice(15, n - 15)
    alone = runtime.emotion_from_speech(runtime.model_features(wave), fps, n, wave).weights[inner].mean(0)
    tiled = Waveform(np.tile(wave.samples, 3), wave.sample_rate)
    three = runtime.emotion_from_speech(runtime.model_features(tiled), fps,
                                        frame_count(tiled.samples.size, tiled.sample_rate, fps), tiled).weights
    copies = [three[k * n:(k + 1) * n][inner].mean(0) for k in range(3)]
    name = lambda w: f"{EMOTIONS[int(w.argmax())]} {w.max():.2f}"
    same = all(c.argmax() == alone.argmax() for c in copies)
    agree += same
    spread = max(np.abs(c - alone).sum() for c in copies)
    print(f"{rec.name:<22} {name(alone):<14} | " + " | ".join(f"{name(c):<14}" for c in copies)
          + f"  L1 {spread:.2f}{'' if same else '  DIFFERS'}")
print(f"same top emotion in all three copies: {agree}/{len(prepared)}")
