"""Build a speech corpus (``emotalk3d make-corpus``): resumable, in parallel, with progress.

Each recording is one voice speaking several utterances (each with its own emotion and
intensity, prosody from the engine) separated by pauses, like a stretch of dialogue.
Its face motion comes from the synthesiser's phone times through the synthetic head's
rig; augmented copies of its audio share that motion. Training recordings can also get
faster tempo copies (``tempo.py``, ``CorpusPreset.tempo_copies``), re-timed and animated
again. Some voices of every engine are
held out (split "test"); training can also leave whole engines out, for an ablation
(``S2GTrainConfig.exclude_engines``). Beside English, a preset can speak other languages
(``languages.py``: espeak-ng's voice of each, two voice variants per language held out and
speaking sentences training never saw); training can leave whole languages out
(``S2GTrainConfig.exclude_languages``). A preset can also add English from a neural voice
(``CorpusPreset.neural_hours``: Piper, ``engines.EXTRA_ENGINES``), planned after everything else
so the other recordings keep their names and seeds; it has one voice, so its held-out
recordings speak English sentences no training recording speaks instead.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

from ...emotions import EMOTIONS, MILD, STRONG
from ...errors import InputError
from ...timebase import frame_count
from ..synthetic.speech import Phoneme, SpeechError
from .augment import apply_chain, random_chain
from .engines import ENGINES, NEURAL_ENGINE, SAMPLE_RATE, VOICES, Voice, emotion_prosody, require, synthesize, \
    synthesize_festival
from .language_sentences import SENTENCES_BY_LANGUAGE, TEST_SENTENCES_BY_LANGUAGE
from .languages import ENGLISH, OTHER_LANGUAGES, language_voices
from .layout import CORPUS_FORMAT
from .motion import animate_recording, is_animated_by_current_rig
from .tempo import TEMPO_RANGE, build_tempo_copy, tempo_copy_name
from .text import corpus_sentences

CORPUS_VERSION = 1
LEAD_S, TAIL_S = 0.3, 0.3
PAUSE_S = (0.15, 1.1)
UNSEEN_SENTENCES = 60        # English sentences only the neural voice's held-out recordings speak


@dataclass(frozen=True)
class CorpusPreset:
    name: str
    hours: float                          # clean audio in the train split (augmented copies extra)
    recording_s: float = 24.0             # target length of one recording
    augmented_copies: int = 1             # per recording, beside the clean one
    tempo_copies: int = 0                 # faster re-timed copies per training recording (tempo.py)
    fps: int = 25
    test_share: float = 0.08              # of the recordings, spoken by the held-out voices
    engine_share: dict = field(default_factory=lambda: {"espeak-ng": 0.4, "flite": 0.35, "festival": 0.25})
    held_out: dict = field(default_factory=lambda: {
        "espeak-ng": ("en-029+f3", "en-gb-x-gbcwmd+m6"), "flite": ("rms",), "festival": ("kal_diphone",)})
    languages: tuple[str, ...] = ()       # beside English (languages.OTHER_LANGUAGES)
    language_hours: float = 0.0           # clean training speech per other language
    language_test_recordings: int = 4     # per other language, by its held-out voices
    neural_hours: float = 0.0             # clean English training speech from the neural engine (Piper)
    neural_test_recordings: int = 4       # by the neural voice, speaking sentences training never saw


PRESETS = {
    "demo": CorpusPreset("demo", hours=2.0, languages=OTHER_LANGUAGES, language_hours=0.15, neural_hours=0.3),
    "small": CorpusPreset("small", hours=0.25, recording_s=20.0, languages=OTHER_LANGUAGES, language_hours=0.03),
    # only "tiny" (tests) makes tempo copies: trained with them, the demo's closures on real
    # speech did not improve (BENCHMARKS.md, real human speech)
    "tiny": CorpusPreset("tiny", hours=0.01, recording_s=8.0, test_share=0.3, tempo_copies=1, languages=("es",),
                         language_hours=0.002, language_test_recordings=1, neural_hours=0.002,
                         neural_test_recordings=1),
}


@dataclass(frozen=True)
class RecordingSpec:
    index: int
    voice: Voice
    split: str
    seed: int
    language: str = ENGLISH


def plan_recordings(preset: CorpusPreset, seed: int) -> list[RecordingSpec]:
    """Which voice speaks each recording, in which split and language: English first (the
    preset engines), then each other language of the preset (espeak-ng) in the preset's
    order, then English from the neural voice (``neural_hours``). Each part draws from its
    own random stream, so adding a later part leaves the earlier recordings as they were."""
    train_count = max(1, int(round(preset.hours * 3600 / preset.recording_s)))
    test_count = max(len(ENGINES), int(round(train_count * preset.test_share / (1 - preset.test_share))))
    rng = np.random.default_rng([seed, 1])
    engines = list(ENGINES)
    share = np.array([preset.engine_share[e] for e in engines], np.float64)
    specs, k = [], 0
    for split, count, pool in (("train", train_count, lambda e: [v for v in VOICES[e] if v not in preset.held_out[e]]),
                               ("test", test_count, lambda e: list(preset.held_out[e]))):
        use = engines if split == "train" else list(ENGINES)
        p = share / share.sum() if split == "train" else np.full(len(use), 1 / len(use))
        for i in range(count):
            engine = use[int(rng.choice(len(use), p=p))] if split == "train" else use[i % len(use)]
            voices = pool(engine)
            specs.append(RecordingSpec(k, Voice(engine, voices[int(rng.integers(len(voices)))]), split, seed * 100_003 + k))
            k += 1
    per_language = int(round(preset.language_hours * 3600 / preset.recording_s)) if preset.language_hours > 0 else 0
    for language in preset.languages:
        if language not in OTHER_LANGUAGES:
            raise InputError(f"the corpus has no voices for language {language!r}; known: {', '.join(OTHER_LANGUAGES)}")
        lrng = np.random.default_rng([seed, 11, OTHER_LANGUAGES.index(language)])
        for split, count, pool in (("train", max(1, per_language), language_voices(language, held_out=False)),
                                   ("test", preset.language_test_recordings, language_voices(language, held_out=True))):
            for i in range(count):
                voice = pool[i % len(pool)] if split == "test" else pool[int(lrng.integers(len(pool)))]
                specs.append(RecordingSpec(k, Voice("espeak-ng", voice), split, seed * 100_003 + k, language))
                k += 1
    if preset.neural_hours > 0:
        nrng = np.random.default_rng([seed, 13])
        voices = VOICES[NEURAL_ENGINE]
        train = max(1, int(round(preset.neural_hours * 3600 / preset.recording_s)))
        for split, count in (("train", train), ("test", preset.neural_test_recordings)):
            for _ in range(count):
                voice = Voice(NEURAL_ENGINE, voices[int(nrng.integers(len(voices)))])
                specs.append(RecordingSpec(k, voice, split, seed * 100_003 + k))
                k += 1
    return specs


def recording_sentences(spec: RecordingSpec, english: list[str], english_unseen: list[str] = ()) -> list[str]:
    """The sentences a recording draws its utterances from: English ones from the corpus's
    list (``english_unseen``, sentences no other recording speaks, for the neural voice's
    held-out recordings), another language's from its own training or (held-out voices)
    test sentences."""
    if spec.language == ENGLISH:
        if spec.voice.engine == NEURAL_ENGINE and spec.split == "test":
            if not english_unseen:
                raise InputError("the neural voice's held-out recordings need English sentences training never saw")
            return list(english_unseen)
        return english
    table = SENTENCES_BY_LANGUAGE if spec.split == "train" else TEST_SENTENCES_BY_LANGUAGE
    return list(table[spec.language])


def _draw_emotions(rng: np.random.Generator, count: int) -> list[tuple[str, float]]:
    """Emotions of consecutive utterances: runs of one emotion, sometimes a change."""
    out, current = [], None
    for _ in range(count):
        if current is None or rng.random() < 0.45:
            emotion = EMOTIONS[int(rng.integers(len(EMOTIONS)))]
            level = 0.0 if emotion == "neutral" else float(rng.choice([MILD, STRONG, rng.uniform(0.3, 1.0)]))
            current = (emotion, level)
        out.append(current)
    return out


_MODEL = None


def _head_model():
    global _MODEL
    if _MODEL is None:
        from ..synthetic.model import HeadModel
        _MODEL = HeadModel()
    return _MODEL


def build_recording(spec: RecordingSpec, sentences: list[str], preset: CorpusPreset, out: Path) -> dict:
    """Synthesise, animate and write one recording into ``out/<name>`` (atomic); its summary."""
    rng = np.random.default_rng(spec.seed)
    name = recording_name(spec)
    final = out / name
    if (final / "meta.json").is_file():
        return json.loads((final / "meta.json").read_text(encoding="utf-8"))
    # draw utterances until the recording is long enough (a guess of 2.5 s each, then trimmed)
    guess = max(1, int(np.ceil(preset.recording_s / 2.6)))
    texts = [sentences[int(rng.integers(len(sentences)))] for _ in range(guess)]
    emotions = _draw_emotions(rng, guess)
    prosodies = [emotion_prosody(e, i, rng) for e, i in emotions]
    if spec.voice.engine == "festival":
        utterances = synthesize_festival(spec.voice, texts, prosodies)
    else:
        utterances = [synthesize(spec.voice, t, p) for t, p in zip(texts, prosodies)]
    pieces = [np.zeros(int(LEAD_S * SAMPLE_RATE), np.float32)]
    cursor = LEAD_S
    phones: list[Phoneme] = []
    utter_meta = []
    for utt, text, (emotion, level) in zip(utterances, texts, emotions):
        if utter_meta and cursor + utt.duration > preset.recording_s:
            break
        pieces.append(utt.samples)
        phones += [Phoneme(p.start + cursor, p.end + cursor, p.ipa) for p in utt.phonemes]
        utter_meta.append({"text": text, "start": round(cursor, 4), "end": round(cursor + utt.duration, 4),
                           "emotion": emotion, "intensity": level})
        cursor += utt.duration
        gap = float(rng.uniform(*PAUSE_S))
        pieces.append(np.zeros(int(round(gap * SAMPLE_RATE)), np.float32))
        cursor = sum(p.size for p in pieces) / SAMPLE_RATE
    pieces[-1] = np.zeros(int(TAIL_S * SAMPLE_RATE), np.float32)
    clean = np.concatenate(pieces)
    frames = frame_count(clean.size, SAMPLE_RATE, Fraction(preset.fps))
    tmp = out / (name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    audio = [{"file": "audio.flac", "chain": "clean"}]
    sf.write(tmp / "audio.flac", clean, SAMPLE_RATE, subtype="PCM_16")
    for c in range(preset.augmented_copies):
        chain = random_chain(rng)
        sf.write(tmp / f"audio_aug{c + 1}.flac", apply_chain(clean, chain, rng), SAMPLE_RATE, subtype="PCM_16")
        audio.append({"file": f"audio_aug{c + 1}.flac", "chain": chain.describe()})
    meta = {"engine": spec.voice.engine, "voice": spec.voice.name, "language": spec.language,
            "split": spec.split, "fps": preset.fps,
            "frames": frames, "duration": round(clean.size / SAMPLE_RATE, 4), "audio": audio,
            "utterances": utter_meta,
            "phones": [[round(p.start, 4), round(p.end, 4), p.ipa] for p in phones]}
    meta = animate_recording(tmp, meta, spec.seed, _head_model())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return meta


def recording_name(spec: RecordingSpec) -> str:
    return f"{spec.split}_{spec.index:05d}_{spec.voice.engine}_{spec.voice.name}".replace("+", "-")


def _build_one(args) -> dict:
    spec, sentences, preset, out = args
    return build_recording(spec, sentences, preset, out)


def _animate_one(args) -> dict:
    folder, seed = args
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    return animate_recording(folder, meta, seed, _head_model())


def stale_motion(specs: list[RecordingSpec], preset: CorpusPreset, seed: int, folder: Path) -> list[tuple[Path, int]]:
    """(folder, motion seed) of every built recording and tempo copy whose motion an older
    rig made (``synthetic.head.RIG_VERSION``): their audio stays, their motion is made again."""
    jobs = [(folder / recording_name(s), s.seed) for s in specs]
    jobs += [(src.parent / tempo_copy_name(src.name, factor), copy_seed)
             for src, factor, copy_seed in tempo_plan(specs, preset, seed, folder)]
    stale = []
    for path, motion_seed in jobs:
        meta_path = path / "meta.json"
        if meta_path.is_file() and not is_animated_by_current_rig(json.loads(meta_path.read_text(encoding="utf-8"))):
            stale.append((path, motion_seed))
    return stale


def _tempo_one(args) -> dict:
    source, factor, seed = args
    return build_tempo_copy(source, factor, seed, _head_model())


def tempo_plan(specs: list[RecordingSpec], preset: CorpusPreset, seed: int,
               folder: Path) -> list[tuple[Path, float, int]]:
    """(source folder, tempo factor, seed) of every tempo copy: training recordings only."""
    jobs = []
    for spec in specs:
        if spec.split != "train":
            continue
        rng = np.random.default_rng([seed, spec.index, 7])
        for _ in range(preset.tempo_copies):
            jobs.append((folder / recording_name(spec), float(rng.uniform(*TEMPO_RANGE)), int(rng.integers(2 ** 31))))
    return jobs


def _in_parallel(fn, jobs: list, workers: int, what: str, log: Callable[[str], None], chunksize: int = 1) -> None:
    """``fn`` over ``jobs`` in ``workers`` processes, logging progress and time left 20 times."""
    started = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        for i, _ in enumerate(pool.map(fn, jobs, chunksize=chunksize), 1):
            if i % max(1, len(jobs) // 20) == 0 or i == len(jobs):
                elapsed = time.perf_counter() - started
                log(f"{what} {i}/{len(jobs)} in {elapsed:.0f} s, about {elapsed / i * (len(jobs) - i):.0f} s left")


def make_corpus(out: str | Path, preset: str = "demo", seed: int = 0, workers: int | None = None,
                log: Callable[[str], None] = print) -> Path:
    """Build (or finish building) the corpus in ``out``; returns it. Safe to interrupt and rerun."""
    if preset not in PRESETS:
        raise InputError(f"unknown corpus preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    p = PRESETS[preset]
    engines = ENGINES + ((NEURAL_ENGINE,) if p.neural_hours > 0 else ())
    for engine in engines:
        require(engine)
    out = Path(out)
    info_path = out / "corpus.json"
    specs = plan_recordings(p, seed)
    info = {"format": CORPUS_FORMAT, "version": CORPUS_VERSION, "name": f"speech-{p.name}", "fps": p.fps,
            "preset": asdict(p), "seed": seed, "languages": [ENGLISH] + list(p.languages),
            "engines": {e: list(VOICES[e]) for e in engines}, "held_out": {e: list(v) for e, v in p.held_out.items()},
            "recordings": len(specs)}
    if info_path.is_file():
        old = json.loads(info_path.read_text(encoding="utf-8"))
        settings = ("preset", "seed")
        new = json.loads(json.dumps({k: info[k] for k in settings}))
        if isinstance(old.get("preset"), dict):       # settings added since that build take their defaults
            old = old | {"preset": new["preset"] | old["preset"]}
        if {k: old.get(k) for k in settings} != new:
            raise InputError(f"{out} holds a corpus built with other settings; use another folder")
    elif out.exists() and any(out.iterdir()):
        raise InputError(f"output folder {out} is not empty and holds no corpus")
    (out / "recordings").mkdir(parents=True, exist_ok=True)
    model = _head_model()
    np.savez(out / "topology.npz", template=model.face_template, triangles=model.face_triangles.astype(np.int32),
             uvs=model.face_uvs, face_mask=model.face_mask, landmark_names=np.array(list(model.landmarks)),
             landmark_indices=np.array(list(model.landmarks.values()), np.int64))
    info_path.write_text(json.dumps(info, indent=1), encoding="utf-8")
    english = [s for s in specs if s.language == ENGLISH and s.voice.engine in ENGINES]
    count = max(200, len(english) * 12)
    pool = corpus_sentences(count + UNSEEN_SENTENCES, seed)     # the first ``count`` as before
    sentences, unseen = pool[:count], pool[count:]
    todo = [s for s in specs if not (out / "recordings" / recording_name(s) / "meta.json").is_file()]
    log(f"corpus {out}: {len(specs)} recordings planned, {len(specs) - len(todo)} already built")
    started, done_s = time.perf_counter(), 0.0
    jobs = [(s, recording_sentences(s, sentences, unseen), p, out / "recordings") for s in todo]
    workers = workers or min(2, os.cpu_count() or 1)
    try:
        with ProcessPoolExecutor(workers) as pool:
            for i, meta in enumerate(pool.map(_build_one, jobs, chunksize=1), 1):
                done_s += meta["duration"]
                elapsed = time.perf_counter() - started
                if i % max(1, len(todo) // 50) == 0 or i == len(todo):
                    left = elapsed / i * (len(todo) - i)
                    log(f"recording {i}/{len(todo)}: {done_s / 60:.1f} min of speech in {elapsed:.0f} s, "
                        f"about {left:.0f} s left")
        stale = stale_motion(specs, p, seed, out / "recordings")
        if stale:
            log(f"rig motion: {len(stale)} recordings were animated by an older rig; animating them again")
            _in_parallel(_animate_one, stale, workers, "animated", log, chunksize=4)
        copies = [j for j in tempo_plan(specs, p, seed, out / "recordings")
                  if not (j[0].parent / tempo_copy_name(j[0].name, j[1]) / "meta.json").is_file()]
        if copies:
            log(f"tempo copies: {len(copies)} to make")
            _in_parallel(_tempo_one, copies, workers, "tempo copy", log)
    except SpeechError as exc:
        raise InputError(f"speech synthesis failed: {exc}") from None
    return out
