"""The corpus's other languages: espeak-ng's voice of each, voices held out in every language,
English's plan untouched by them, and every language's phones reaching the rig's visemes
(bilabials close, open vowels open)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from emotalk3d_addon.backend.datasets.speech_corpus.build import PRESETS, plan_recordings, recording_sentences
from emotalk3d_addon.backend.datasets.speech_corpus.engines import available
from emotalk3d_addon.backend.datasets.speech_corpus.languages import (ENGLISH, HELD_OUT_VARIANTS, OTHER_LANGUAGES,
                                                                      language_voices, voice_language)
from emotalk3d_addon.backend.datasets.synthetic.speech import Phoneme, synthesize
from emotalk3d_addon.backend.datasets.synthetic.visemes import is_known_phone, viseme_track
from emotalk3d_addon.backend.speech.phones import is_bilabial, letters, openness

needs_espeak = pytest.mark.skipif(not available("espeak-ng"), reason="espeak-ng is needed (make sysdeps)")


@pytest.mark.parametrize("label, base", [("ɐ̃ː", "ɐ"), ("bʰ", "b"), ("ɯᵝ", "ɯ"), ("s.", "s"), ("ä", "a"), ("o̞", "o"),
                                         ("ˈaɪ", "aɪ"), ("n̩", "n"), ("uː5", "u"), ("pʲ", "p"), ("ə-", "ə")])
def test_diacritics_stress_tones_and_modifiers_leave_the_base_letters(label, base):
    assert letters(label) == base


def test_bilabials_and_openness_read_through_the_marks():
    assert is_bilabial("bʰ") and is_bilabial("ph") and is_bilabial("m̩") and not is_bilabial("β")
    assert openness("ä") == openness("a") == 1.0 and openness("ũ") == openness("u")


@pytest.mark.parametrize("engine, voice, language", [
    ("espeak-ng", "en-us+m3", "en"), ("espeak-ng", "en-gb-x-rp+m1", "en"), ("flite", "slt", "en"),
    ("festival", "kal_diphone", "en"), ("espeak-ng", "pt-br+f3", "pt"), ("espeak-ng", "cmn-latn-pinyin+m6", "zh"),
    ("espeak-ng", "es+m1", "es"), ("espeak-ng", "ja", "ja")])
def test_every_voice_names_its_language(engine, voice, language):
    assert voice_language(engine, voice) == language


def test_every_language_holds_out_voices_and_english_keeps_its_plan():
    preset = PRESETS["demo"]
    plan = plan_recordings(preset, 0)
    english_only = plan_recordings(replace(preset, languages=(), neural_hours=0.0), 0)
    assert plan[:len(english_only)] == english_only       # English recordings unchanged, first
    assert [s.index for s in plan] == list(range(len(plan)))
    assert set(preset.languages) == set(OTHER_LANGUAGES) and len(OTHER_LANGUAGES) >= 8
    for language in OTHER_LANGUAGES:
        mine = [s for s in plan if s.language == language]
        train = {s.voice.name for s in mine if s.split == "train"}
        test = {s.voice.name for s in mine if s.split == "test"}
        assert train and test and not train & test
        assert test == set(language_voices(language, held_out=True)) and len(test) == len(HELD_OUT_VARIANTS)
        assert train <= set(language_voices(language, held_out=False))
        assert all(voice_language(s.voice.engine, s.voice.name) == language and s.voice.engine == "espeak-ng"
                   for s in mine)
        held_out_text = set(recording_sentences(next(s for s in mine if s.split == "test"), []))
        training_text = set(recording_sentences(next(s for s in mine if s.split == "train"), []))
        assert held_out_text and training_text and not held_out_text & training_text


@needs_espeak
@pytest.mark.parametrize("language", OTHER_LANGUAGES)
def test_each_languages_bilabials_close_and_open_vowels_open(language):
    """Spoken by its own espeak-ng voice, every phone of two sentences has a viseme target,
    the lips meet on every p/b/m, and the jaw opens further on open vowels than on bilabials."""
    from emotalk3d_addon.backend.datasets.speech_corpus.language_sentences import SENTENCES_BY_LANGUAGE

    voice = language_voices(language, held_out=True)[0]
    phones: list[Phoneme] = []
    for text in SENTENCES_BY_LANGUAGE[language][:2]:
        utt = synthesize(text, voice)
        offset = phones[-1].end + 0.3 if phones else 0.0
        phones += [Phoneme(p.start + offset, p.end + offset, p.ipa) for p in utt.phonemes]
    unknown = sorted({p.ipa for p in phones if not is_known_phone(p.ipa)})
    assert not unknown, f"{language}: phones without a viseme target: {unknown}"
    lead = 0.03                                   # viseme_track's default anticipation, seconds
    middles = np.array([0.5 * (p.start + p.end) for p in phones]) - lead
    track = viseme_track(phones, middles)         # each parameter at the middle of each phone
    bilabial = np.array([is_bilabial(p.ipa) for p in phones])
    assert bilabial.any(), f"{language}: no p/b/m in the sample sentences"
    assert track["close"][bilabial].min() > 0.8, (language, [p for p, c in zip(phones, track["close"]) if c <= 0.8])
    open_vowel = np.array([openness(p.ipa) >= 0.75 and p.end - p.start >= 0.06 for p in phones])
    assert open_vowel.any() and track["jaw"][open_vowel].mean() > track["jaw"][bilabial].mean() + 0.2
