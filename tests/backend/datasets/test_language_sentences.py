"""The multilingual dialogue lines: counts, held-out split, scripts, and espeak-ng reading
them in their own language (no switch to English)."""
from __future__ import annotations

import re
import shutil
import subprocess
import unicodedata

import pytest

from emotalk3d_addon.backend.datasets.speech_corpus.language_sentences import (
    NON_LATIN_LANGUAGES, SENTENCES_BY_LANGUAGE, TEST_SENTENCES_BY_LANGUAGE)
from emotalk3d_addon.backend.datasets.speech_corpus.languages import ESPEAK_VOICES, NAMES, OTHER_LANGUAGES

LANGUAGES = ("es", "fr", "de", "it", "pt", "ja", "zh", "ko", "hi", "ru")
# Unicode name prefixes of the letters each language may use.
SCRIPTS = {"ja": ("HIRAGANA", "KATAKANA"), "zh": ("CJK UNIFIED IDEOGRAPH",), "ko": ("HANGUL",),
           "hi": ("DEVANAGARI",), "ru": ("CYRILLIC",)}
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def _all(lang: str) -> tuple[str, ...]:
    return SENTENCES_BY_LANGUAGE[lang] + TEST_SENTENCES_BY_LANGUAGE[lang]


def test_every_language_has_48_training_and_8_held_out_distinct_sentences():
    for table in (SENTENCES_BY_LANGUAGE, TEST_SENTENCES_BY_LANGUAGE, ESPEAK_VOICES):
        assert tuple(table) == LANGUAGES == OTHER_LANGUAGES
    assert set(LANGUAGES) < set(NAMES)
    assert ESPEAK_VOICES["zh"] == "cmn-latn-pinyin" and ESPEAK_VOICES["pt"] == "pt-br"
    for lang in LANGUAGES:
        train, held_out = SENTENCES_BY_LANGUAGE[lang], TEST_SENTENCES_BY_LANGUAGE[lang]
        assert len(train) == 48 and len(set(train)) == 48, lang
        assert len(held_out) == 8 and len(set(held_out)) == 8, lang
        assert not set(train) & set(held_out), lang
        assert all(s == s.strip() and s for s in _all(lang)), lang


def test_sentences_hold_no_digits_and_only_their_own_script():
    for lang in LANGUAGES:
        scripts = SCRIPTS.get(lang, ("LATIN",))
        for s in _all(lang):
            assert not any(c.isdigit() for c in s), (lang, s)
            letters = [c for c in s if unicodedata.category(c).startswith("L")]
            foreign = [c for c in letters if not unicodedata.name(c, "").startswith(scripts)]
            assert not foreign, (lang, s, foreign)
            if lang in NON_LATIN_LANGUAGES:
                assert not re.search(r"[A-Za-z]", s), (lang, s)


def test_sentences_are_dialogue_lines_of_five_to_fifteen_words():
    for lang in LANGUAGES:
        for s in _all(lang):
            if lang in ("ja", "zh"):         # no spaces between words: count characters instead
                letters = sum(unicodedata.category(c).startswith("L") for c in s)
                assert 8 <= letters <= 30, (lang, s)
            else:
                assert 5 <= len(s.split()) <= 15, (lang, s)
        # a mix of questions and exclamations, not only statements
        assert sum(s.endswith(("?", "？")) for s in _all(lang)) >= 8, lang
        assert sum(s.endswith(("!", "！")) for s in _all(lang)) >= 6, lang


@needs_espeak
@pytest.mark.parametrize("lang", LANGUAGES)
def test_espeak_reads_a_sample_in_its_own_language(lang):
    train = SENTENCES_BY_LANGUAGE[lang]
    sample = (train[0], train[len(train) // 2], TEST_SENTENCES_BY_LANGUAGE[lang][-1])
    proc = subprocess.run(["espeak-ng", "-v", ESPEAK_VOICES[lang], "-q", "--ipa"],
                          input="\n".join(sample), capture_output=True, text=True, timeout=30, check=True)
    ipa = proc.stdout
    assert len(ipa.strip()) > 3 * 10, ipa             # it spoke all three lines
    assert not re.search(r"\([a-z-]+\)", ipa), ipa   # no "(en)"-style language switch
    if lang != "zh":                                  # the pinyin voice writes tones as digits
        assert not re.search(r"\d", ipa), ipa


def test_a_sentence_file_needs_its_held_out_mark(tmp_path):
    from emotalk3d_addon.backend.datasets.speech_corpus.language_sentences import read_sentences

    good = tmp_path / "xx.txt"
    good.write_text("# comment\nUna frase.\n\nOtra frase.\n[held out]\nLa prueba.\n", encoding="utf-8")
    assert read_sentences(good) == (("Una frase.", "Otra frase."), ("La prueba.",))
    bad = tmp_path / "yy.txt"
    bad.write_text("Una frase.\nLa prueba.\n", encoding="utf-8")
    with pytest.raises(ValueError, match="held out"):
        read_sentences(bad)
