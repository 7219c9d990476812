"""Phonemes (IPA from espeak-ng) -> viseme targets -> smooth per-frame mouth parameters.

Each phoneme has a target for the speech parameters (jaw open, lip round, lip spread,
bilabial closure, lip-to-teeth "f/v") and a dominance per parameter. Coarticulation
follows the dominance model of Cohen & Massaro: at time t each parameter is the
dominance-weighted mean of the targets of the phonemes around t, with dominance
falling off exponentially outside each phoneme. Bilabials (p b m) dominate closure, so
the lips meet on them even between open vowels. Diphthongs glide from their first to
their second vowel.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...speech.phones import letters
from .speech import Phoneme

PARAMS = ("jaw", "round", "spread", "close", "fv")

# vowel qualities by IPA base letter: (jaw, round, spread)
_VOWELS = {
    "i": (0.20, 0.0, 0.70), "y": (0.20, 0.7, 0.0), "ɪ": (0.30, 0.0, 0.45), "ʏ": (0.30, 0.5, 0.0),
    "e": (0.42, 0.0, 0.40), "ø": (0.40, 0.5, 0.0), "ɛ": (0.55, 0.0, 0.30), "œ": (0.55, 0.4, 0.0),
    "æ": (0.75, 0.0, 0.35), "a": (0.85, 0.0, 0.15), "ɐ": (0.62, 0.0, 0.05), "ɑ": (0.90, 0.0, 0.0),
    "ɒ": (0.72, 0.40, 0.0), "ɔ": (0.58, 0.60, 0.0), "o": (0.42, 0.75, 0.0), "ʊ": (0.32, 0.60, 0.0),
    "u": (0.22, 0.92, 0.0), "ʉ": (0.24, 0.75, 0.0), "ʌ": (0.60, 0.0, 0.05), "ə": (0.38, 0.0, 0.05),
    "ɜ": (0.42, 0.15, 0.05), "ɚ": (0.40, 0.30, 0.0), "ɝ": (0.40, 0.30, 0.0), "ɘ": (0.35, 0.0, 0.1),
    "ɵ": (0.35, 0.4, 0.0), "ɨ": (0.25, 0.0, 0.2), "ᵻ": (0.28, 0.0, 0.3), "ɤ": (0.42, 0.0, 0.1),
    "ɯ": (0.25, 0.0, 0.3), "ɶ": (0.80, 0.4, 0.0), "ɞ": (0.55, 0.4, 0.0),
}
# consonants: (jaw, round, spread, close, fv) and the dominance of closure / f-v / rounding.
# Every place of articulation of the IPA chart is covered, so each language's phones find a
# target: bilabial stops and nasals seal the lips; bilabial fricatives and approximants
# (Spanish β, Japanese ɸ) nearly meet; labiodentals touch lip to teeth; the rest leave the
# lips to the vowels around them, with a jaw set by place (front consonants close, back open).
_CONSONANTS = {
    # bilabial
    "p": (0.08, 0.0, 0.0, 1.0, 0.0), "b": (0.08, 0.0, 0.0, 1.0, 0.0), "m": (0.08, 0.0, 0.0, 1.0, 0.0),
    "ʙ": (0.08, 0.0, 0.0, 1.0, 0.0), "ɓ": (0.08, 0.0, 0.0, 1.0, 0.0),
    "ɸ": (0.10, 0.35, 0.0, 0.55, 0.0), "β": (0.12, 0.0, 0.0, 0.55, 0.0),
    # labiodental
    "f": (0.14, 0.0, 0.0, 0.0, 1.0), "v": (0.14, 0.0, 0.0, 0.0, 1.0), "ɱ": (0.12, 0.0, 0.0, 0.0, 1.0),
    "ʋ": (0.16, 0.0, 0.0, 0.0, 0.7),
    # dental and alveolar
    "θ": (0.24, 0.0, 0.05, 0.0, 0.0), "ð": (0.22, 0.0, 0.05, 0.0, 0.0),
    "s": (0.12, 0.0, 0.35, 0.0, 0.0), "z": (0.12, 0.0, 0.35, 0.0, 0.0),
    "t": (0.20, 0.0, 0.1, 0.0, 0.0), "d": (0.20, 0.0, 0.1, 0.0, 0.0), "n": (0.20, 0.0, 0.1, 0.0, 0.0),
    "l": (0.26, 0.0, 0.05, 0.0, 0.0), "ɾ": (0.22, 0.0, 0.05, 0.0, 0.0), "ɫ": (0.28, 0.1, 0.0, 0.0, 0.0),
    "ɬ": (0.24, 0.0, 0.1, 0.0, 0.0), "ɮ": (0.24, 0.0, 0.1, 0.0, 0.0), "ɺ": (0.22, 0.0, 0.05, 0.0, 0.0),
    "ɹ": (0.20, 0.45, 0.0, 0.0, 0.0), "r": (0.22, 0.35, 0.0, 0.0, 0.0),
    # postalveolar, alveolo-palatal and retroflex
    "ʃ": (0.16, 0.55, 0.0, 0.0, 0.0), "ʒ": (0.16, 0.55, 0.0, 0.0, 0.0),
    "ɕ": (0.16, 0.15, 0.3, 0.0, 0.0), "ʑ": (0.16, 0.15, 0.3, 0.0, 0.0),
    "ʂ": (0.18, 0.35, 0.0, 0.0, 0.0), "ʐ": (0.18, 0.35, 0.0, 0.0, 0.0), "ʈ": (0.20, 0.0, 0.05, 0.0, 0.0),
    "ɖ": (0.20, 0.0, 0.05, 0.0, 0.0), "ɳ": (0.20, 0.0, 0.05, 0.0, 0.0), "ɭ": (0.24, 0.0, 0.0, 0.0, 0.0),
    "ɽ": (0.22, 0.0, 0.0, 0.0, 0.0), "ɻ": (0.20, 0.45, 0.0, 0.0, 0.0),
    # palatal
    "j": (0.16, 0.0, 0.45, 0.0, 0.0), "c": (0.18, 0.0, 0.35, 0.0, 0.0), "ɟ": (0.18, 0.0, 0.35, 0.0, 0.0),
    "ɲ": (0.18, 0.0, 0.35, 0.0, 0.0), "ç": (0.16, 0.0, 0.4, 0.0, 0.0), "ʝ": (0.16, 0.0, 0.4, 0.0, 0.0),
    "ʎ": (0.22, 0.0, 0.3, 0.0, 0.0), "ɥ": (0.14, 0.9, 0.0, 0.0, 0.0),
    # velar, uvular, pharyngeal, glottal
    "k": (0.26, 0.0, 0.0, 0.0, 0.0), "g": (0.26, 0.0, 0.0, 0.0, 0.0), "ɡ": (0.26, 0.0, 0.0, 0.0, 0.0),
    "ŋ": (0.24, 0.0, 0.0, 0.0, 0.0), "x": (0.26, 0.0, 0.0, 0.0, 0.0), "ɣ": (0.26, 0.0, 0.0, 0.0, 0.0),
    "ɰ": (0.24, 0.0, 0.1, 0.0, 0.0), "ʟ": (0.26, 0.0, 0.0, 0.0, 0.0),
    "q": (0.30, 0.0, 0.0, 0.0, 0.0), "ɢ": (0.30, 0.0, 0.0, 0.0, 0.0), "ɴ": (0.28, 0.0, 0.0, 0.0, 0.0),
    "χ": (0.30, 0.0, 0.0, 0.0, 0.0), "ʁ": (0.28, 0.1, 0.0, 0.0, 0.0), "ʀ": (0.28, 0.1, 0.0, 0.0, 0.0),
    "ħ": (0.40, 0.0, 0.0, 0.0, 0.0), "ʕ": (0.40, 0.0, 0.0, 0.0, 0.0),
    "h": (0.36, 0.0, 0.0, 0.0, 0.0), "ɦ": (0.36, 0.0, 0.0, 0.0, 0.0), "ʔ": (0.20, 0.0, 0.0, 0.0, 0.0),
    # labial-velar
    "w": (0.14, 1.0, 0.0, 0.0, 0.0), "ʍ": (0.14, 1.0, 0.0, 0.0, 0.0),
}
# one-letter affricate ligatures and their two-letter spellings -> the fricative the lips show
_AFFRICATES = {"ʧ": "ʃ", "ʤ": "ʒ", "ʦ": "s", "ʣ": "z", "ʨ": "ɕ", "ʥ": "ʑ",
               "tʃ": "ʃ", "dʒ": "ʒ", "ts": "s", "dz": "z", "tɕ": "ɕ", "dʑ": "ʑ", "ʈʂ": "ʂ", "ɖʐ": "ʐ",
               "tɬ": "ɬ", "pf": "f", "bv": "v"}
REST = (0.0, 0.0, 0.0, 0.0, 0.0)
FALLBACK = (0.22, 0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Target:
    start: float
    end: float
    values: tuple[float, float, float, float, float]
    dominance: tuple[float, float, float, float, float]


def _consonant(s: str) -> tuple[float, float, float, float, float] | None:
    """The target of a consonant's base letters ("tʃ", "ʦ", "p"); None if unknown."""
    head = _AFFRICATES.get(s[:2]) or _AFFRICATES.get(s[:1]) or s[0]
    return _CONSONANTS.get(head)


def is_known_phone(ipa: str) -> bool:
    """Whether a phone label (IPA, any language) has its own viseme target: a pause, a
    vowel of the table or a consonant of the table (else it gets a neutral fallback)."""
    s = letters(ipa)
    return not s or any(ch in _VOWELS for ch in s) or _consonant(s) is not None


def phoneme_targets(ph: Phoneme) -> list[Target]:
    """One phoneme -> one or two (diphthong) viseme targets."""
    s = letters(ph.ipa)
    if not s:
        # pause: the mouth rests, strongly only for long pauses
        dom = 1.5 if ph.end - ph.start > 0.12 else 0.4
        return [Target(ph.start, ph.end, REST, (dom,) * 5)]
    vowels = [ch for ch in s if ch in _VOWELS]
    if vowels:
        if len(vowels) >= 2:
            mid = ph.start + 0.55 * (ph.end - ph.start)
            return [_vowel(ph.start, mid, vowels[0]), _vowel(mid, ph.end, vowels[1])]
        return [_vowel(ph.start, ph.end, vowels[0])]
    c = _consonant(s) or FALLBACK
    jaw_dom = 2.5 if c[3] > 0 or c[4] > 0 else 0.7
    dom = (jaw_dom, 2.5 if c[1] > 0.5 else 0.6, 0.6, 4.0 if c[3] > 0 else 1.5,
           4.0 if c[4] > 0 else 1.5)
    return [Target(ph.start, ph.end, c, dom)]


def _vowel(start, end, ch) -> Target:
    jaw, rnd, spr = _VOWELS[ch]
    return Target(start, end, (jaw, rnd, spr, 0.0, 0.0), (1.6, 1.2 if rnd > 0 else 0.8, 0.8, 1.5, 1.5))


TAU = (0.050, 0.060, 0.050, 0.020, 0.025)     # per parameter: lips seal and release quickly


def viseme_track(phonemes: tuple[Phoneme, ...] | list[Phoneme], times: np.ndarray,
                 lead: float = 0.03, tau=TAU) -> dict[str, np.ndarray]:
    """Per-frame speech parameters at ``times`` (seconds).

    ``lead``: the mouth moves this much ahead of the sound (anticipation).
    ``tau``: the time constants of coarticulation (dominance decay outside a phoneme),
    one per parameter.
    Before the first and after the last phoneme the mouth rests (closed).
    """
    t = np.asarray(times, np.float64) + lead
    targets = [tg for ph in phonemes for tg in phoneme_targets(ph)]
    if targets:
        first, last = targets[0].start, targets[-1].end
        targets = ([Target(-1e3, first, REST, (1.2,) * 5)] + targets + [Target(last, 1e3, REST, (1.2,) * 5)])
    else:
        targets = [Target(-1e3, 1e3, REST, (1.0,) * 5)]
    starts = np.array([tg.start for tg in targets])
    ends = np.array([tg.end for tg in targets])
    vals = np.array([tg.values for tg in targets])               # (P, 5)
    doms = np.array([tg.dominance for tg in targets])            # (P, 5)
    dist = np.maximum(np.maximum(starts[None] - t[:, None], t[:, None] - ends[None]), 0.0)   # (F, P)
    w = np.exp(-dist[..., None] / np.asarray(tau, np.float64)) * doms[None]     # (F, P, 5)
    out = (w * vals[None]).sum(1) / np.maximum(w.sum(1), 1e-12)
    track = {name: out[:, i] for i, name in enumerate(PARAMS)}
    # closure: sharpen so bilabials really seal the lips
    track["close"] = np.clip((track["close"] - 0.12) / 0.7, 0.0, 1.0)
    track["close"] = track["close"] ** 0.8
    track["fv"] = np.clip((track["fv"] - 0.1) / 0.75, 0.0, 1.0)
    return track
