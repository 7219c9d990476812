"""``emotalk3d evaluate-lipsync``: lip-sync scores (``lipsync.py``) of a subject.

Two sources of (audio, phones):
* a speech corpus's held-out recordings (voices, or whole engines, training never heard),
  scored per language and, for English, per engine, clean and augmented copies apart;
* any recording with a phone alignment (a Praat TextGrid, e.g. from a forced aligner, or
  a "start end phone" table): real human speech.

The emotion comes from speech, as in a default generation, and the mouth measured is the
performance's one track (``performance/service.py``: the motion-basis mix Blender's shape keys
show, the mouth closed in silence), the same track ``emotalk3d predict`` writes.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np

from ..io.audio import load_audio
from ..errors import InputError
from .lipsync import GAP_CLASSES, SHORT_BILABIAL_S, LipSyncScore, lip_aperture, pooled, read_phones, score
from .own_speech import compare_gaps, format_comparison
from ..performance.service import LoadedSubject, Performance
from ..protocol.messages import EmotionSpec
from ..speech.cache import FeatureCache
from ..subject import Subject


class Performer:
    """A subject performing recordings through the Performance service (emotion from speech
    unless ``emotion`` keys one), features kept in memory only."""

    def __init__(self, subject: Subject, device: str = "cpu", close_silence: bool = True,
                 emotion: EmotionSpec | None = None):
        self.service = Performance(cache=FeatureCache())
        self.loaded: LoadedSubject = self.service.add_subject(subject)
        self.subject, self.device, self.close_silence = subject, device, close_silence
        self.emotion = emotion or EmotionSpec.speech()

    def vertices(self, wave, fps: Fraction) -> np.ndarray:
        """(F, V, 3) the performance's track of ``wave`` at ``fps``."""
        return self.service.perform_waveform(self.loaded, wave, fps, self.emotion, self.device,
                                             close_silence=self.close_silence).track.vertices


def _lips(subject: Subject) -> tuple[int, int]:
    marks = subject.geometry.landmarks
    if "upper_lip" not in marks or "lower_lip" not in marks:
        raise InputError(f"subject {subject.name} has no upper_lip / lower_lip landmarks to measure the mouth")
    return marks["upper_lip"], marks["lower_lip"]


def score_recording(performer: Performer, audio: str | Path, phones, fps: Fraction) -> LipSyncScore:
    """Scores of the subject's performance of one audio file against its phones (IPA)."""
    wave = load_audio(audio)
    vertices = performer.vertices(wave, fps)
    upper, lower = _lips(performer.subject)
    aperture = lip_aperture(vertices, performer.subject.geometry.template, upper, lower)
    return score(aperture, phones, wave.samples, wave.sample_rate, float(fps))


def evaluate_recordings(subject: Subject, pairs: list[tuple[str, str]], fps: float | None = None,
                        close_silence: bool = True, emotion: EmotionSpec | None = None,
                        own_speech: dict[str, np.ndarray] | None = None) -> dict:
    """Scores for (audio, phones-file) pairs of real recordings, each and pooled.

    ``emotion``: keyed instead of heard in the speech. ``own_speech``: the subject's own
    speech's lip gap per phone class (``own_speech.own_speech_gaps``); the report then sets the
    pooled lip gap beside it ("own_speech", ``own_speech.compare_gaps``)."""
    performer = Performer(subject, close_silence=close_silence, emotion=emotion)
    rate = Fraction(fps or subject.fps).limit_denominator(1001)
    each = {}
    for audio, phones in pairs:
        each[str(audio)] = score_recording(performer, audio, read_phones(phones), rate)
    together = pooled(list(each.values()))
    report = {"recordings": {k: v.to_dict() for k, v in each.items()}, "pooled": together.to_dict()}
    if own_speech is not None:
        report["own_speech"] = compare_gaps(together.gaps, own_speech)
    return report


def evaluate_corpus(subject: Subject, corpus_root: str | Path, split: str = "test",
                    max_recordings: int | None = None, log: Callable[[str], None] = print,
                    close_silence: bool = True) -> dict:
    """Scores on a corpus split, overall, per language and per engine of the English
    recordings, for the clean and augmented copies."""
    from ..datasets.speech_corpus.languages import ENGLISH
    from ..datasets.speech_corpus.layout import load_corpus

    corpus = load_corpus(corpus_root)
    recordings = corpus.split(split)
    if max_recordings is not None:
        recordings = recordings[:max_recordings]
    if not recordings:
        raise InputError(f"{corpus_root} has no recordings in the {split!r} split")
    performer = Performer(subject, close_silence=close_silence)
    fps = Fraction(corpus.fps).limit_denominator(1001)
    by: dict[tuple[str, str, str], list[LipSyncScore]] = {}
    for i, rec in enumerate(recordings, 1):
        for copy, path in enumerate(rec.audio_files):
            kind = "clean" if copy == 0 else "augmented"
            by.setdefault((rec.language, rec.engine, kind), []).append(
                score_recording(performer, path, list(rec.phones), fps))
        if i % max(1, len(recordings) // 10) == 0 or i == len(recordings):
            log(f"lip sync: {i}/{len(recordings)} recordings")
    report: dict = {"split": split, "recordings": len(recordings), "languages": {}, "engines": {}}
    for kind in ("clean", "augmented"):
        scores = [s for (_, _, k), v in by.items() if k == kind for s in v]
        if scores:
            report[kind] = pooled(scores).to_dict()
        for language in sorted({lang for lang, _, k in by if k == kind}, key=lambda c: (c != ENGLISH, c)):
            group = [s for (lang, _, k), v in by.items() if lang == language and k == kind for s in v]
            report["languages"].setdefault(language, {})[kind] = pooled(group).to_dict()
        for engine in sorted({e for lang, e, k in by if k == kind and lang == ENGLISH}):
            group = by[(ENGLISH, engine, kind)]
            report["engines"].setdefault(engine, {})[kind] = pooled(group).to_dict()
    if set(report["languages"]) == {ENGLISH}:
        del report["languages"]               # an English-only corpus: the per-engine rows say it all
    return report


def format_row(name: str, s: dict) -> str:
    """One line: correlation vs loudness's, partial correlation, closures, lip gap in mm."""
    line = (f"{name:<28} aperture~phones r={s['correlation']:.3f}  loudness~phones r="
            f"{s['loudness_correlation']:.3f}  partial r={s['partial']:.3f}  closures "
            f"{s['closures_reached']}/{s['closures']} ({100 * np.nan_to_num(s['closure_share']):.0f} %)")
    if s.get("short_closures"):
        line += f" [< {1000 * SHORT_BILABIAL_S:.0f} ms: {100 * s['short_closures_reached'] / s['short_closures']:.0f} % of {s['short_closures']}]"
    gap = s.get("lip_gap_mm", {})
    if "all" in gap:
        a = gap["all"]
        line += f"  lip gap p50/p90/max {a['p50_mm']:.1f}/{a['p90_mm']:.1f}/{a['max_mm']:.1f} mm"
        med = [f"{k.split('_')[0]} {gap[k]['p50_mm']:.1f}" for k in GAP_CLASSES if gap.get(k, {}).get("frames")]
        if med:
            line += " (p50 " + ", ".join(med) + ")"
    return line


def format_report(report: dict) -> str:
    """A few lines a person reads, overall, then per language, per English engine (or per
    recording)."""
    lines = []
    row = format_row
    for kind in ("clean", "augmented", "pooled"):
        if kind in report:
            lines.append(row(kind, report[kind]))
    for language, kinds in report.get("languages", {}).items():
        for kind, s in kinds.items():
            lines.append(row(f"  {language} ({kind})", s))
    for engine, kinds in report.get("engines", {}).items():
        for kind, s in kinds.items():
            lines.append(row(f"  {'en ' if 'languages' in report else ''}{engine} ({kind})", s))
    for name, s in report.get("recordings", {}).items() if isinstance(report.get("recordings"), dict) else ():
        lines.append(row(f"  {Path(name).name}", s))
    if "own_speech" in report:
        lines.append(format_comparison(report["own_speech"]))
    return "\n".join(lines)
