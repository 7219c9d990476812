"""Lip-sync scores: does the mouth follow the phones, or only the loudness?

For a predicted vertex track and the phones of its audio (a synthesiser's own timings, or
a forced alignment of a real recording):

* aperture: lip opening per frame (upper-lip to lower-lip landmark distance minus the
  template's), millimetres;
* openness: a phone-derived curve, each phone's articulatory openness
  (``speech_corpus.phones.openness``: open vowels 1, close vowels 0.3, consonants 0.2,
  bilabials and pauses 0) on a 100 Hz grid, smoothed with a 40 ms Gaussian;
* loudness: the audio's RMS envelope in dB over 40 ms windows.

Scores: the Pearson correlation of aperture with openness, next to loudness's own
correlation with openness (a mouth that only follows loudness scores no better than the
envelope); the partial correlation of aperture and openness with loudness regressed out
of both; and the share of p/b/m closures reached (the minimum aperture within a bilabial,
+-1 frame, under 25 % of the median aperture during open vowels), also for the short ones
alone (under 50 ms, about one frame at 25 fps: espeak-ng speaks many stops that short).

Beside these scale-free figures, the lip gap itself in millimetres (the aperture): its
median, 90th percentile and maximum over all frames and per phone class (open vowels,
openness >= 0.7; bilabials; the other phones; silence: pauses and frames no phone covers),
to set beside the lip gap of the subject's own training speech.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..speech.phones import arpabet_to_ipa, is_bilabial, letters, openness
from ..errors import InputError

GRID_HZ = 100
SMOOTH_S = 0.04
LOUDNESS_WINDOW_S = 0.04
CLOSURE_SHARE = 0.25
SHORT_BILABIAL_S = 0.05       # p/b/m shorter than this are counted apart as well
DYNAMIC_RANGE_DB = 60.0
OPEN_VOWEL = 0.7              # openness of the phones counted as open vowels
GAP_CLASSES = ("open_vowels", "bilabials", "other_phones", "silence")

Phones = list[tuple[float, float, str]]      # (start s, end s, IPA)


@dataclass(frozen=True)
class GapStats:
    """The lip gap (aperture, mm) over some frames."""

    frames: int
    p50_mm: float
    p90_mm: float
    max_mm: float

    @classmethod
    def of(cls, aperture: np.ndarray) -> "GapStats":
        a = np.asarray(aperture, np.float64)
        if a.size == 0:
            return cls(0, float("nan"), float("nan"), float("nan"))
        return cls(int(a.size), float(np.percentile(a, 50)), float(np.percentile(a, 90)), float(a.max()))

    def to_dict(self) -> dict:
        """JSON-ready: None for the figures of no frames."""
        value = lambda x: x if self.frames else None
        return {"frames": self.frames, "p50_mm": value(self.p50_mm), "p90_mm": value(self.p90_mm),
                "max_mm": value(self.max_mm)}


@dataclass(frozen=True)
class LipSyncScore:
    frames: int
    correlation: float            # aperture vs phone openness (Pearson)
    loudness_correlation: float   # loudness envelope vs phone openness
    partial: float                # aperture vs openness, loudness regressed out of both
    closures_reached: int
    closures: int
    # per-frame aperture (mm) by phone class ("all" and GAP_CLASSES), kept for pooling
    gaps: dict[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)
    short_closures_reached: int = 0   # the same for the p/b/m shorter than SHORT_BILABIAL_S
    short_closures: int = 0

    @property
    def closure_share(self) -> float:
        return self.closures_reached / self.closures if self.closures else float("nan")

    def lip_gap(self) -> dict[str, GapStats]:
        """The lip gap (mm) over all frames and per phone class."""
        return {k: GapStats.of(v) for k, v in self.gaps.items()}

    def to_dict(self) -> dict:
        return {"frames": self.frames, "correlation": self.correlation,
                "loudness_correlation": self.loudness_correlation, "partial": self.partial,
                "closures_reached": self.closures_reached, "closures": self.closures,
                "closure_share": self.closure_share,
                "short_closures_reached": self.short_closures_reached, "short_closures": self.short_closures,
                "lip_gap_mm": {k: v.to_dict() for k, v in self.lip_gap().items()}}


def phone_classes(phones: Phones, times: np.ndarray) -> np.ndarray:
    """(F,) index into ``GAP_CLASSES`` of the phone at each time (silence where none)."""
    out = np.full(times.size, GAP_CLASSES.index("silence"), np.int8)
    for start, stop, ipa in phones:
        if not letters(ipa):
            continue
        if is_bilabial(ipa):
            kind = "bilabials"
        elif openness(ipa) >= OPEN_VOWEL:
            kind = "open_vowels"
        else:
            kind = "other_phones"
        out[(times >= start) & (times < stop)] = GAP_CLASSES.index(kind)
    return out


def gaps_by_class(aperture: np.ndarray, phones: Phones, times: np.ndarray) -> dict[str, np.ndarray]:
    """Aperture (mm) of all frames ("all") and of each phone class."""
    kinds = phone_classes(phones, times)
    a = np.asarray(aperture, np.float64)
    return {"all": a} | {name: a[kinds == i] for i, name in enumerate(GAP_CLASSES)}


def lip_aperture(vertices: np.ndarray, template: np.ndarray, upper: int, lower: int) -> np.ndarray:
    """(F,) lip opening in mm: |upper - lower| per frame minus the template's."""
    rest = float(np.linalg.norm(template[upper] - template[lower]))
    gap = np.linalg.norm(np.asarray(vertices[:, upper], np.float64) - np.asarray(vertices[:, lower], np.float64), axis=1)
    return (gap - rest) * 1000.0


def openness_curve(phones: Phones, times: np.ndarray) -> np.ndarray:
    """(F,) phone-derived openness at ``times`` (seconds)."""
    end = max([times[-1] if times.size else 0.0] + [e for _, e, _ in phones]) + 0.5
    grid = np.arange(0.0, end, 1.0 / GRID_HZ)
    value = np.zeros_like(grid)
    for start, stop, ipa in phones:
        value[(grid >= start) & (grid < stop)] = openness(ipa)
    sigma = SMOOTH_S * GRID_HZ
    k = np.arange(-int(4 * sigma), int(4 * sigma) + 1)
    kernel = np.exp(-0.5 * (k / sigma) ** 2)
    smooth = np.convolve(value, kernel / kernel.sum(), "same")
    return np.interp(times, grid, smooth)


def loudness_envelope(samples: np.ndarray, sample_rate: int, times: np.ndarray) -> np.ndarray:
    """(F,) RMS level in dB of ``LOUDNESS_WINDOW_S`` windows centred at ``times``, floored
    ``DYNAMIC_RANGE_DB`` below the clip's loudest window (digital silence is not infinitely quiet)."""
    x = np.asarray(samples, np.float64)
    half = max(1, int(LOUDNESS_WINDOW_S * sample_rate / 2))
    power = np.concatenate([[0.0], np.cumsum(x * x)])
    centre = np.clip(np.round(times * sample_rate).astype(np.int64), 0, x.size)
    lo, hi = np.clip(centre - half, 0, x.size), np.clip(centre + half, 0, x.size)
    mean = (power[hi] - power[lo]) / np.maximum(hi - lo, 1)
    db = 10 * np.log10(np.maximum(mean, 1e-12))
    return np.maximum(db, db.max(initial=-120.0) - DYNAMIC_RANGE_DB)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64) - np.mean(a), np.asarray(b, np.float64) - np.mean(b)
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def residual(y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``y`` minus its least-squares fit on [1, z]."""
    design = np.stack([np.ones_like(z), z], 1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return y - design @ coef


def partial_correlation(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
    """Correlation of x and y with z regressed out of both (0 when z explains one of them)."""
    x, y, z = (np.asarray(v, np.float64) for v in (x, y, z))
    rx, ry = residual(x, z), residual(y, z)
    for r, v in ((rx, x), (ry, y)):
        if np.linalg.norm(r) <= 1e-9 * max(np.linalg.norm(v - v.mean()), 1e-300):
            return 0.0
    return pearson(rx, ry)


def closures(aperture: np.ndarray, phones: Phones, times: np.ndarray) -> tuple[int, int]:
    """(reached, total) p/b/m closures: min aperture within the phone (+-1 frame) under
    ``CLOSURE_SHARE`` of the median aperture over open-vowel frames (a clip without open
    vowels uses its mid vowels, then any vowel)."""
    hits = closure_hits(aperture, phones, times)
    return sum(reached for _, reached in hits), len(hits)


def closure_hits(aperture: np.ndarray, phones: Phones, times: np.ndarray) -> list[tuple[float, bool]]:
    """(duration s, reached) of each p/b/m phone the frames ``times`` (s) cover, as
    ``closures`` counts them."""
    hop = float(times[1] - times[0]) if times.size > 1 else 1.0
    open_frames = np.zeros(times.size, bool)
    for level in (0.7, 0.5, 0.25):
        for start, stop, ipa in phones:
            if openness(ipa) >= level:
                open_frames |= (times >= start) & (times < stop)
        if open_frames.any():
            break
    if not open_frames.any():
        return []
    reference = float(np.median(aperture[open_frames]))
    hits = []
    for start, stop, ipa in phones:
        if not is_bilabial(ipa):
            continue
        inside = (times >= start - hop) & (times <= stop + hop)
        if inside.any():
            hits.append((float(stop - start), bool(aperture[inside].min() < CLOSURE_SHARE * reference)))
    return hits


def score(aperture: np.ndarray, phones: Phones, samples: np.ndarray, sample_rate: int, fps: float) -> LipSyncScore:
    """All scores for one clip. aperture (F,) mm; phones in IPA; audio at ``sample_rate``."""
    times = np.arange(aperture.size) / float(fps)
    target = openness_curve(phones, times)
    loud = loudness_envelope(samples, sample_rate, times)
    hits = closure_hits(aperture, phones, times)
    short = [reached for duration, reached in hits if duration < SHORT_BILABIAL_S]
    return LipSyncScore(int(aperture.size), pearson(aperture, target), pearson(loud, target),
                        partial_correlation(aperture, target, loud), sum(r for _, r in hits), len(hits),
                        gaps_by_class(aperture, phones, times), sum(short), len(short))


def pooled(scores: list[LipSyncScore]) -> LipSyncScore:
    """Frame-weighted means of the correlations; closure counts added up; lip gaps of all frames."""
    if not scores:
        raise ValueError("no scores to pool")
    w = np.array([s.frames for s in scores], np.float64)
    mean = lambda key: float(np.average([getattr(s, key) for s in scores], weights=w))
    keys = [k for k in scores[0].gaps if all(k in s.gaps for s in scores)]
    gaps = {k: np.concatenate([s.gaps[k] for s in scores]) for k in keys}
    return LipSyncScore(int(w.sum()), mean("correlation"), mean("loudness_correlation"), mean("partial"),
                        sum(s.closures_reached for s in scores), sum(s.closures for s in scores), gaps,
                        sum(s.short_closures_reached for s in scores), sum(s.short_closures for s in scores))


def read_phones(path: str | Path) -> Phones:
    """Phones of a recording: a Praat TextGrid (the tier named "phones", else the last
    interval tier), or text lines "start end label" (seconds; comma, tab or space
    separated). ARPAbet labels (with or without stress digits) become IPA."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read phones file {path}: {exc}") from None
    rows = _textgrid(text) if "IntervalTier" in text else _table(text, path)
    if not rows:
        raise InputError(f"{path} holds no phones")
    out = []
    for start, end, label in rows:
        if not (np.isfinite(start) and np.isfinite(end)) or end < start:
            raise InputError(f"{path}: phone {label!r} has bad times {start}..{end}")
        out.append((start, end, _to_ipa(label)))
    return out


def _to_ipa(label: str) -> str:
    plain = label.strip()
    if re.fullmatch(r"[A-Za-z]{1,3}[012]?", plain):
        return arpabet_to_ipa(plain)
    return plain or "_"


def _table(text: str, path: Path) -> list[tuple[float, float, str]]:
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        parts = [p for p in re.split(r"[,\t ]+", line.strip()) if p]
        if not parts or parts[0].startswith("#"):
            continue
        try:
            rows.append((float(parts[0]), float(parts[1]), parts[2] if len(parts) > 2 else ""))
        except (ValueError, IndexError):
            if n == 1:
                continue            # a header line
            raise InputError(f"{path}:{n}: expected 'start end phone', got {line.strip()[:60]!r}") from None
    return rows


def _textgrid(text: str) -> list[tuple[float, float, str]]:
    tiers = re.split(r'class\s*=\s*"IntervalTier"', text)[1:]
    chosen = None
    for tier in tiers:
        name = re.search(r'name\s*=\s*"([^"]*)"', tier)
        if name and name.group(1).lower() in ("phones", "phone", "phonemes"):
            chosen = tier
    chosen = chosen if chosen is not None else (tiers[-1] if tiers else "")
    pattern = r'xmin\s*=\s*([0-9.eE+-]+)\s*xmax\s*=\s*([0-9.eE+-]+)\s*text\s*=\s*"([^"]*)"'
    return [(float(a), float(b), c) for a, b, c in re.findall(pattern, chosen)]
