"""Reader of the speech-corpus layout (audio, phone-timed face motion, emotion labels).

    CORPUS/
      corpus.json         {"format": "emotalk3d-speech-corpus", "version": 1, "name": str, "fps": number,
                           "engines": {engine: [voices]}, "held_out": {engine: [voices]}, ...}
      topology.npz        as in a multi-view dataset (template, triangles, uvs, face_mask, landmarks)
      recordings/<id>/
        meta.json         {"engine", "voice", "language" (code, languages.py; absent: from the voice),
                           "split": "train"|"test", "frames": F, "duration": s,
                           "audio": [{"file": name, "chain": text}, ...]  (the first is clean),
                           "utterances": [{"text", "start", "end", "emotion", "intensity"}],
                           "phones": [[start_s, end_s, ipa], ...]  (the synthesiser's own timings)}
        audio*.flac       16 kHz mono; every copy has the same length and phone times
        motion.npy        (F, V, 3) float16, metres: face displacement from the template
        emotion.npy       (F, 9) float32: per-frame emotion weights (8, sum 1) + intensity

F = ceil(duration * fps). A recording's folder appears only once it is complete
(``meta.json`` is written last), so an interrupted build resumes where it stopped.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import DatasetError
from ..layout import Topology, _read_json, _read_topology
from .languages import voice_language

CORPUS_FORMAT = "emotalk3d-speech-corpus"


@dataclass(frozen=True)
class Recording:
    name: str
    folder: Path
    engine: str
    voice: str
    split: str
    fps: float
    frames: int
    audio_files: tuple[Path, ...]
    phones: tuple[tuple[float, float, str], ...]
    language: str = "en"

    def motion(self) -> np.ndarray:
        """(F, V, 3) float16 displacement, metres, memory-mapped."""
        return np.load(self.folder / "motion.npy", mmap_mode="r", allow_pickle=False)

    def emotion(self) -> np.ndarray:
        """(F, 9) float32: weights (8) + intensity."""
        return np.load(self.folder / "emotion.npy", allow_pickle=False)

    @property
    def meta(self) -> dict:
        return json.loads((self.folder / "meta.json").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Corpus:
    root: Path
    name: str
    fps: float
    topology: Topology
    recordings: tuple[Recording, ...]
    info: dict

    def split(self, name: str) -> list[Recording]:
        return [r for r in self.recordings if r.split == name]

    def hours(self, split: str | None = None) -> float:
        recs = self.recordings if split is None else self.split(split)
        return sum(r.frames for r in recs) / self.fps / 3600


def is_corpus(root: str | Path) -> bool:
    try:
        info = json.loads((Path(root) / "corpus.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and info.get("format") == CORPUS_FORMAT


def load_corpus(root: str | Path) -> Corpus:
    """Read and check the layout above; DatasetError naming the first defect."""
    root = Path(root)
    info = _read_json(root / "corpus.json")
    if info.get("format") != CORPUS_FORMAT:
        raise DatasetError(f"{root / 'corpus.json'}: 'format' must be {CORPUS_FORMAT!r}")
    fps = info.get("fps")
    if not isinstance(fps, (int, float)) or fps <= 0:
        raise DatasetError(f"{root / 'corpus.json'}: 'fps' must be a positive number")
    topology = _read_topology(root / "topology.npz")
    recordings = []
    for folder in sorted(p for p in (root / "recordings").glob("*") if p.is_dir() and not p.name.endswith(".tmp")):
        if not (folder / "meta.json").is_file():
            continue          # unfinished (the build writes meta.json last)
        meta = _read_json(folder / "meta.json")
        files = tuple(folder / str(a.get("file")) for a in meta.get("audio", []) if isinstance(a, dict))
        if not files or not all(f.is_file() for f in files):
            raise DatasetError(f"{folder}: meta.json names audio files that are missing")
        for name in ("motion.npy", "emotion.npy"):
            if not (folder / name).is_file():
                raise DatasetError(f"{folder}: {name} is missing")
        split = meta.get("split")
        if split not in ("train", "test"):
            raise DatasetError(f"{folder / 'meta.json'}: 'split' must be 'train' or 'test'")
        frames = meta.get("frames")
        if not isinstance(frames, int) or frames < 1:
            raise DatasetError(f"{folder / 'meta.json'}: 'frames' must be a positive integer")
        phones = tuple((float(s), float(e), str(p)) for s, e, p in meta.get("phones", []))
        engine, voice = str(meta.get("engine")), str(meta.get("voice"))
        language = meta.get("language")
        if language is None:
            language = voice_language(engine, voice)      # corpora built before languages were recorded
        elif not isinstance(language, str) or not language:
            raise DatasetError(f"{folder / 'meta.json'}: 'language' must be a language code such as \"es\"")
        recordings.append(Recording(folder.name, folder, engine, voice, split, float(fps), frames, files, phones,
                                    language))
    if not recordings:
        raise DatasetError(f"no finished recordings under {root / 'recordings'}")
    return Corpus(root, str(info.get("name", root.name)), float(fps), topology, tuple(recordings), info)
