"""Phone labels: CMU/ARPAbet (flite, festival) to IPA, and phone classes for lip-sync scoring.

The synthetic viseme rig (``datasets/synthetic/visemes.py``) reads IPA as espeak-ng writes it; flite and
festival label their segments with the CMU phone set, mapped here.
"""
from __future__ import annotations

import unicodedata

ARPABET_TO_IPA: dict[str, str] = {
    "aa": "ɑ", "ae": "æ", "ah": "ʌ", "ao": "ɔ", "aw": "aʊ", "ax": "ə", "axr": "ɚ", "ay": "aɪ",
    "b": "b", "ch": "tʃ", "d": "d", "dh": "ð", "dx": "ɾ", "eh": "ɛ", "el": "l", "em": "m", "en": "n",
    "er": "ɝ", "ey": "eɪ", "f": "f", "g": "ɡ", "hh": "h", "hv": "h", "ih": "ɪ", "ix": "ɪ", "iy": "i",
    "jh": "dʒ", "k": "k", "l": "l", "m": "m", "n": "n", "ng": "ŋ", "nx": "n", "ow": "oʊ", "oy": "ɔɪ",
    "p": "p", "r": "ɹ", "s": "s", "sh": "ʃ", "t": "t", "th": "θ", "uh": "ʊ", "uw": "u", "ux": "u",
    "v": "v", "w": "w", "wh": "ʍ", "y": "j", "z": "z", "zh": "ʒ",
}
PAUSES = {"pau", "h#", "brth", "sil", "sp", "_", ""}


def arpabet_to_ipa(label: str) -> str:
    """One CMU phone label ("aa1", "pau") -> IPA ("ɑ", "_" for pauses and unknown labels)."""
    key = label.strip().lower().rstrip("012")
    if key in PAUSES:
        return "_"
    return ARPABET_TO_IPA.get(key, "_")


# mouth openness of vowels by IPA base letter (open 1 ... close 0.3), an articulatory
# scale independent of the rig's own targets
_OPEN = {"a": 1.0, "ɑ": 1.0, "æ": 0.9, "ɐ": 0.8, "ʌ": 0.8, "ɒ": 0.85, "ɔ": 0.75, "ɛ": 0.7, "œ": 0.7,
         "e": 0.55, "ø": 0.5, "ə": 0.5, "ɜ": 0.55, "ɚ": 0.5, "ɝ": 0.5, "ɘ": 0.45, "ɵ": 0.45, "ɤ": 0.5,
         "o": 0.55, "ɪ": 0.4, "ʏ": 0.4, "ʊ": 0.4, "i": 0.3, "y": 0.3, "u": 0.3, "ʉ": 0.3, "ɨ": 0.3,
         "ᵻ": 0.35, "ɯ": 0.3, "ɶ": 0.9, "ɞ": 0.6}
BILABIALS = {"p", "b", "m"}


def letters(ipa: str) -> str:
    """The base letters of a phone label: decomposed (NFD), then only letters kept, so
    diacritics (nasal ``ɐ̃``, centralised ``ä``, lowered ``o̞``), modifier letters (length
    ``ː``, stress ``ˈ``, aspiration ``ʰ``, palatalisation ``ʲ``, ``ᵝ``), tone digits and
    espeak-ng's punctuation (``s.``, ``s-``) go: "ɐ̃ː" -> "ɐ", "bʰ" -> "b", "ɯᵝ" -> "ɯ"."""
    return "".join(ch for ch in unicodedata.normalize("NFD", ipa)
                   if unicodedata.category(ch) in ("Ll", "Lu", "Lo", "Lt"))


def is_bilabial(ipa: str) -> bool:
    """p, b, m (and their marked forms): the lips must close."""
    s = letters(ipa)
    return bool(s) and s[0] in BILABIALS and not any(ch in _OPEN for ch in s)


def openness(ipa: str) -> float:
    """Articulatory mouth openness of a phone in [0, 1]: vowels by height, consonants low,
    bilabials and pauses closed."""
    s = letters(ipa)
    if not s:
        return 0.0
    vowels = [_OPEN[ch] for ch in s if ch in _OPEN]
    if vowels:
        return max(vowels)
    if s[0] in BILABIALS:
        return 0.0
    if s[0] in "fv":
        return 0.1
    return 0.2
