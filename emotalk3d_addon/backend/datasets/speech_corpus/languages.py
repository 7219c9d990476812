"""The corpus's languages: the espeak-ng voice that speaks each one, its training and
held-out voice variants, and the language any corpus voice speaks.

English is spoken by all three engines (``engines.VOICES``); every other language by
espeak-ng's voice for it, in several of espeak-ng's voice variants (``+m1``, ``+f2``, ...),
two of them held out of training in every language. Phones come as IPA from espeak-ng
and reach the rig's visemes through ``synthetic/visemes.py``, which covers every place
of articulation, so each language's bilabials close and its vowels open.
"""
from __future__ import annotations

ENGLISH = "en"
# language code -> espeak-ng voice (Debian's espeak-ng 1.51). Mandarin is read from hanzi by
# cmn-latn-pinyin: the plain "cmn" voice of 1.51 reads the tone numbers as English words.
ESPEAK_VOICES: dict[str, str] = {
    "es": "es", "fr": "fr", "de": "de", "it": "it", "pt": "pt-br", "ja": "ja",
    "zh": "cmn-latn-pinyin", "ko": "ko", "hi": "hi", "ru": "ru",
}
NAMES: dict[str, str] = {
    "en": "English", "es": "Spanish", "fr": "French", "de": "German", "it": "Italian",
    "pt": "Portuguese (Brazil)", "ja": "Japanese", "zh": "Mandarin", "ko": "Korean", "hi": "Hindi",
    "ru": "Russian",
}
OTHER_LANGUAGES: tuple[str, ...] = tuple(ESPEAK_VOICES)
TRAIN_VARIANTS = ("m1", "f1", "m2", "f2", "m3", "f4", "m7", "klatt2")
HELD_OUT_VARIANTS = ("f3", "m6")


def language_voices(language: str, held_out: bool) -> tuple[str, ...]:
    """espeak-ng voice names ("es+m1") of a language other than English: its training
    variants, or the ones held out of training."""
    if language not in ESPEAK_VOICES:
        raise ValueError(f"no corpus voices for language {language!r}; known: {', '.join(ESPEAK_VOICES)}")
    variants = HELD_OUT_VARIANTS if held_out else TRAIN_VARIANTS
    return tuple(f"{ESPEAK_VOICES[language]}+{v}" for v in variants)


_BY_VOICE = {voice: code for code, voice in ESPEAK_VOICES.items()}


def voice_language(engine: str, voice: str) -> str:
    """The language code a corpus voice speaks: flite's and festival's voices and espeak-ng's
    "en..." voices speak English; espeak-ng's others their own language ("pt-br+f3" -> "pt")."""
    if engine != "espeak-ng":
        return ENGLISH
    base = voice.split("+", 1)[0]
    if base in _BY_VOICE:
        return _BY_VOICE[base]
    code = base.split("-", 1)[0]
    return {"cmn": "zh"}.get(code, code)
