"""Dialogue lines in ten languages for a multilingual speech corpus, spoken by espeak-ng.

The lines live in ``sentences/<code>.txt`` (UTF-8, one per line; ``#`` starts a comment
line; the training lines come first, then a ``[held out]`` line and the test lines). Each
language has 48 training sentences and 8 held-out test sentences, written for this
project in the language's own script: everyday dialogue (questions, exclamations,
statements) of about two to four seconds. Most lines carry bilabials (p b m) and, where
the language has them, labiodentals (f v), with rounded and open vowels, so the lips move
visibly. Numbers are spelled out and there are no abbreviations, so espeak-ng never spells
letters or switches to English.

Japanese is written in kana only: espeak-ng 1.51 reads kanji as "Chinese letter" in
English. It also avoids the particles は and へ, which espeak-ng reads as "ha" and "he".
Mandarin uses the ``cmn-latn-pinyin`` voice, which reads simplified hanzi in Mandarin.
The voice of each language is ``languages.ESPEAK_VOICES``.
"""
from __future__ import annotations

from pathlib import Path

from .languages import OTHER_LANGUAGES

FOLDER = Path(__file__).with_name("sentences")
HELD_OUT_MARK = "[held out]"

# Languages written in a non-Latin script: their sentences hold no Latin letters.
NON_LATIN_LANGUAGES: frozenset[str] = frozenset({"ja", "zh", "ko", "hi", "ru"})


def read_sentences(path: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(training lines, held-out lines) of one language's file; ValueError without the mark."""
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if lines.count(HELD_OUT_MARK) != 1:
        raise ValueError(f"{path}: needs exactly one {HELD_OUT_MARK!r} line between training and held-out lines")
    cut = lines.index(HELD_OUT_MARK)
    return tuple(lines[:cut]), tuple(lines[cut + 1:])


_TABLES = {code: read_sentences(FOLDER / f"{code}.txt") for code in OTHER_LANGUAGES}
SENTENCES_BY_LANGUAGE: dict[str, tuple[str, ...]] = {code: t[0] for code, t in _TABLES.items()}
"""48 training sentences per language code."""
TEST_SENTENCES_BY_LANGUAGE: dict[str, tuple[str, ...]] = {code: t[1] for code, t in _TABLES.items()}
"""8 held-out test sentences per language code, never among the training sentences."""
