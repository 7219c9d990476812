"""Lip sync on held-out voices: does the demo subject's mouth follow the phones better than
the audio's loudness does?

Scores the subject on a speech corpus's test split (voices training never heard, every
engine and language; each language on its own), clean and augmented copies apart, beside the same scores of the corpus's own
rig motion (the ground truth the subject learned from: an upper bound). The subject's mouth
is the performance's one track (the shape keys' mix, closed in silence), as ``predict`` writes
it; beside the scale-free scores, its lip gap in mm (p50/p90/max, and the median per phone
class), to set against the rig's own.
Goals: aperture~phones correlation beats loudness~phones by >= 0.1, partial correlation
given loudness >= 0.5, >= 80 % of p/b/m closures reached.

Usage: python bench/bench_lipsync.py [--subject demo] [--corpus build/demo/corpus] [--max-recordings N]
       [--open-in-silence]   (the mouth left as S2GNet moved it in silence: the figures without the closing)
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emotalk3d_addon.backend.datasets.speech_corpus.layout import load_corpus  # noqa: E402
from emotalk3d_addon.backend.tools.evaluate_lipsync import evaluate_corpus, format_report, format_row  # noqa: E402
from emotalk3d_addon.backend.tools.lipsync import lip_aperture, pooled, score  # noqa: E402
from emotalk3d_addon.backend.subject import load_subject, resolve_subject  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--subject", default="demo")
parser.add_argument("--corpus", default="build/demo/corpus")
parser.add_argument("--split", default="test")
parser.add_argument("--max-recordings", type=int)
parser.add_argument("--open-in-silence", action="store_true", help="do not close the mouth in silence")
args = parser.parse_args()

subject = load_subject(resolve_subject(args.subject))
report = evaluate_corpus(subject, args.corpus, args.split, args.max_recordings, log=lambda _: None,
                         close_silence=not args.open_in_silence)
print(f"subject {subject.name} ({subject.encoder.kind} {subject.encoder.source}) on {report['recordings']} "
      f"held-out recordings of {args.corpus}" + (", mouth open in silence" if args.open_in_silence else ""))
print(format_report(report))

corpus = load_corpus(args.corpus)
recs = corpus.split(args.split)[:args.max_recordings]
lm, template = corpus.topology.landmarks, corpus.topology.template
truth: dict[str, list] = {}
for rec in recs:
    aperture = lip_aperture(np.asarray(rec.motion(), np.float32) + template, template, lm["upper_lip"], lm["lower_lip"])
    samples, rate = sf.read(rec.audio_files[0], dtype="float32")
    truth.setdefault(rec.language, []).append(score(aperture, list(rec.phones), samples, rate, corpus.fps))
print(format_row("rig ground truth (clean)", pooled([s for v in truth.values() for s in v]).to_dict()))
if len(truth) > 1:
    for language, scores in truth.items():
        print(format_row(f"  {language} rig ground truth", pooled(scores).to_dict()))
