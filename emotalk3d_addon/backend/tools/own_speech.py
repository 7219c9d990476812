"""The lip gap of a subject's own speech, and a performance's lip gap set against it.

A subject's training dataset holds its own speaking motion (meshes) and, where a
synthesiser made it, the phones. ``own_speech_gaps`` measures that motion's lip gap (mm)
per phone class (``lipsync.gaps_by_class``: open vowels, bilabials, other phones, silence).

``compare_gaps`` sets another set's lip gap (e.g. a performance of real recordings) beside it:

* per class: p50 and p90 of each class, and the ratio performance / own;
* over all frames: p90 against the own speech's p90 over all its frames ("raw"), and
  against the own speech re-weighted to the other set's phone-class mix ("matched"): the p90
  the subject's own motion would have if it spoke that set's phones in the same proportions.
  Three short sentences full of "v" and "s" have a lower p90 than an hour of dialogue rich
  in open vowels, whoever moves the mouth; the matched figure takes the phone mix out and
  leaves how wide the mouth opens on each kind of phone.

Percentiles here are of the inverted empirical CDF (the smallest value whose cumulative
share reaches q), so a weighted percentile equals the plain one of the frames repeated in
proportion to their weights.
"""
from __future__ import annotations

import numpy as np

from ..datasets.layout import SpeechDataset
from ..errors import InputError
from .lipsync import GAP_CLASSES, gaps_by_class, lip_aperture

PERCENTILES = (50.0, 90.0)


def own_speech_gaps(dataset: SpeechDataset, emotion: str = "neutral", split: str = "train") -> dict[str, np.ndarray]:
    """Lip gap (mm) per frame of the dataset's ``split`` sequences of ``emotion`` that carry
    phones: {"all": (N,), and each of ``GAP_CLASSES``: (N_c,)} float64.

    InputError when no such sequence exists (the comparison needs the phones)."""
    marks = dataset.topology.landmarks
    if "upper_lip" not in marks or "lower_lip" not in marks:
        raise InputError(f"dataset {dataset.name} has no upper_lip / lower_lip landmarks to measure the mouth")
    template = dataset.topology.template
    parts: dict[str, list[np.ndarray]] = {}
    for seq in dataset.sequences:
        phones = seq.phones()
        if seq.emotion != emotion or seq.split != split or not phones:
            continue
        meshes = seq.meshes()
        aperture = lip_aperture(meshes, template, marks["upper_lip"], marks["lower_lip"])
        times = np.arange(meshes.shape[0]) / seq.fps
        for name, values in gaps_by_class(aperture, phones, times).items():
            parts.setdefault(name, []).append(values)
    if not parts:
        raise InputError(f"dataset {dataset.name} has no {split} sequence of emotion {emotion!r} with phones "
                         "(meta.json \"phonemes\") to measure its own speech's lip gap")
    return {name: np.concatenate(values) for name, values in parts.items()}


def weighted_percentile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The q-th percentile (0..100) of ``values`` where each counts ``weights`` times
    (inverted empirical CDF); NaN when the weights add up to nothing."""
    values = np.asarray(values, np.float64).ravel()
    weights = np.asarray(weights, np.float64).ravel()
    keep = weights > 0
    if not keep.any():
        return float("nan")
    order = np.argsort(values[keep], kind="stable")
    v, cdf = values[keep][order], np.cumsum(weights[keep][order])
    target = q / 100.0 * cdf[-1]
    i = int(np.searchsorted(cdf, target * (1 - 1e-12), side="left"))
    return float(v[min(i, v.size - 1)])


def class_matched_percentile(own: dict[str, np.ndarray], shares: dict[str, float], q: float) -> float:
    """The q-th percentile of the own speech's lip gap with its phone classes re-weighted to
    ``shares`` (class -> share of frames, summing to 1). A class the own speech never shows
    (no frames) is left out and the other shares scaled up."""
    values, weights = [], []
    for name in GAP_CLASSES:
        frames = own.get(name, np.zeros(0))
        share = shares.get(name, 0.0)
        if frames.size and share > 0:
            values.append(frames)
            weights.append(np.full(frames.size, share / frames.size))
    if not values:
        return float("nan")
    return weighted_percentile(np.concatenate(values), np.concatenate(weights), q)


def _percentile(values: np.ndarray, q: float) -> float:
    return weighted_percentile(values, np.ones(np.size(values)), q)


def compare_gaps(performed: dict[str, np.ndarray], own: dict[str, np.ndarray]) -> dict:
    """A performance's lip gap (``LipSyncScore.gaps``: "all" and per class, mm) against the
    subject's own speech's (``own_speech_gaps``). JSON-ready:
    {"classes": {class: {"frames", "own_frames", "p50_mm", "own_p50_mm", "p50_ratio", same for p90}},
     "all": {"p90_mm", "own_p90_mm", "matched_p90_mm", "raw_ratio", "matched_ratio"},
     "shares": {class: share of the performance's frames}}; None where a side has no frames."""
    total = sum(performed.get(name, np.zeros(0)).size for name in GAP_CLASSES)
    if total == 0:
        raise InputError("the performance has no frames to compare")
    shares = {name: performed.get(name, np.zeros(0)).size / total for name in GAP_CLASSES}
    finite = lambda x: None if x is None or not np.isfinite(x) else float(x)
    ratio = lambda a, b: finite(a / b) if a is not None and b not in (None, 0.0) else None
    classes = {}
    for name in GAP_CLASSES:
        mine, theirs = performed.get(name, np.zeros(0)), own.get(name, np.zeros(0))
        row = {"frames": int(mine.size), "own_frames": int(theirs.size)}
        for q in PERCENTILES:
            key = f"p{q:.0f}"
            a = finite(_percentile(mine, q)) if mine.size else None
            b = finite(_percentile(theirs, q)) if theirs.size else None
            row |= {f"{key}_mm": a, f"own_{key}_mm": b, f"{key}_ratio": ratio(a, b)}
        classes[name] = row
    p90 = finite(_percentile(performed["all"], 90.0))
    own_p90 = finite(_percentile(own["all"], 90.0))
    matched = finite(class_matched_percentile(own, shares, 90.0))
    return {"classes": classes, "shares": shares,
            "all": {"p90_mm": p90, "own_p90_mm": own_p90, "matched_p90_mm": matched,
                    "raw_ratio": ratio(p90, own_p90), "matched_ratio": ratio(p90, matched)}}


def format_comparison(comparison: dict) -> str:
    """A few lines a person reads: p90 over all frames against the own speech's (raw and at
    this set's phone mix), then p50/p90 per phone class beside the own speech's."""
    a = comparison["all"]
    show = lambda x: "-" if x is None else f"{x:.1f}"
    pct = lambda r: "-" if r is None else f"{100 * (r - 1):+.0f} %"
    lines = [f"lip gap p90 {show(a['p90_mm'])} mm; the subject's own neutral speech {show(a['own_p90_mm'])} mm "
             f"({pct(a['raw_ratio'])}), at this set's phone mix {show(a['matched_p90_mm'])} mm "
             f"({pct(a['matched_ratio'])})"]
    for name, row in comparison["classes"].items():
        lines.append(f"  {name:<13} {100 * comparison['shares'][name]:4.0f} % of frames  p50 "
                     f"{show(row['p50_mm'])} (own {show(row['own_p50_mm'])})  p90 {show(row['p90_mm'])} "
                     f"(own {show(row['own_p90_mm'])}) mm  [own frames {row['own_frames']}]")
    return "\n".join(lines)
