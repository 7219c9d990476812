"""Reader of the training dataset layout (one subject per folder).

    SUBJECT_DIR/
      dataset.json          {"format": "emotalk3d-dataset", "version": 1, "name": str, "fps": number}
      topology.npz          template (V,3) float32 metres, triangles (T,3) int, uvs (V,2) float32,
                            face_mask (V,) 0/1, landmark_names (L,) str, landmark_indices (L,) int
      sequences/<id>/
        audio.wav           any format libsndfile reads (wav, flac, ogg, mp3)
        meshes.npy          (F,V,3) float32 metres, subject space (+Z up, face toward -Y),
                            F = ceil(duration * fps) (a difference of up to 2 frames is trimmed)
        meta.json           {"emotion": name, "intensity": 0..1, "split": "train"|"test", "fps": number,
                             "image_frames": [frame indices with images],
                             optional "phonemes": [[start s, end s, IPA], ...] (the synthesiser's)}
        images/<cam>/<frame:06d>.png    RGBA, straight alpha, transparent background
      cameras.json          {"cameras": [{"name", "width", "height", "K": 3x3, "world_to_camera": 4x4}]}
                            OpenCV axes (x right, y down, z forward), world = subject space
      rigid_parts.npz       optional: the moving parts the face mesh does not cover (eyeballs,
                            teeth): names (K,) str and per name <name>.vertices (V,3) float32
                            metres at rest, <name>.triangles (T,3) int, <name>.anchor (A,) int
                            template-vertex indices the part moves rigidly with (empty: the
                            skull); see appearance/rigid.py

All meshes share one topology (the template's). Images and cameras are needed only by
the appearance stages (see ``multiview.py``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..appearance.rigid import RigidPart, load_rigid_parts
from ..emotions import emotion_index
from ..errors import DatasetError, InputError

DATASET_FORMAT = "emotalk3d-dataset"
RIGID_PARTS_FILE = "rigid_parts.npz"
AUDIO_NAMES = ("audio.wav", "audio.flac", "audio.ogg", "audio.mp3")
FRAME_TOLERANCE = 2


@dataclass(frozen=True)
class Topology:
    template: np.ndarray        # (V, 3) float32, metres
    triangles: np.ndarray       # (T, 3) int64
    uvs: np.ndarray             # (V, 2) float32
    face_mask: np.ndarray       # (V,) bool
    landmarks: dict[str, int]


@dataclass(frozen=True)
class Sequence:
    name: str
    folder: Path
    audio_path: Path
    emotion: str
    intensity: float
    split: str
    fps: float
    image_frames: tuple[int, ...] = ()     # frames that have multi-view images

    def meshes(self) -> np.ndarray:
        """(F, V, 3) float32 metres, memory-mapped."""
        return np.load(self.folder / "meshes.npy", mmap_mode="r", allow_pickle=False)

    def phones(self) -> list[tuple[float, float, str]]:
        """(start s, end s, IPA) of the sequence's phones (meta.json "phonemes"), [] when it has none."""
        try:
            rows = json.loads((self.folder / "meta.json").read_text(encoding="utf-8")).get("phonemes", [])
            return [(float(a), float(b), str(p)) for a, b, p in rows]
        except (OSError, ValueError, TypeError, AttributeError):
            return []


@dataclass(frozen=True)
class SpeechDataset:
    root: Path
    name: str
    fps: float
    topology: Topology
    sequences: tuple[Sequence, ...]
    rigid_parts: tuple[RigidPart, ...] = ()

    def split(self, name: str) -> list[Sequence]:
        return [s for s in self.sequences if s.split == name]


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"dataset file missing: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path} must hold a JSON object")
    return data


def _read_topology(path: Path) -> Topology:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise DatasetError(f"dataset file missing: {path}") from None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path} is not a readable .npz: {exc}") from None
    missing = {"template", "triangles", "uvs", "face_mask", "landmark_names", "landmark_indices"} - set(arrays)
    if missing:
        raise DatasetError(f"{path} lacks {', '.join(sorted(missing))}")
    template = arrays["template"].astype(np.float32)
    v = template.shape[0]
    if template.ndim != 2 or template.shape[1] != 3 or not np.isfinite(template).all():
        raise DatasetError(f"{path}: template must be finite (V, 3)")
    triangles = arrays["triangles"].astype(np.int64)
    if triangles.ndim != 2 or triangles.shape[1] != 3 or triangles.min() < 0 or triangles.max() >= v:
        raise DatasetError(f"{path}: triangles must be (T, 3) indices in [0, {v})")
    if arrays["uvs"].shape != (v, 2) or arrays["face_mask"].shape != (v,):
        raise DatasetError(f"{path}: uvs must be (V, 2) and face_mask (V,)")
    landmarks = {str(n): int(i) for n, i in zip(arrays["landmark_names"], arrays["landmark_indices"])}
    return Topology(template, triangles, arrays["uvs"].astype(np.float32),
                    arrays["face_mask"].astype(bool), landmarks)


def load_dataset(root: str | Path) -> SpeechDataset:
    """Read and check the layout above; DatasetError naming the first defect."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    info = _read_json(root / "dataset.json")
    if info.get("format") != DATASET_FORMAT:
        raise DatasetError(f"{root / 'dataset.json'}: 'format' must be {DATASET_FORMAT!r}")
    fps = info.get("fps")
    if not isinstance(fps, (int, float)) or fps <= 0:
        raise DatasetError(f"{root / 'dataset.json'}: 'fps' must be a positive number")
    topology = _read_topology(root / "topology.npz")
    sequences = []
    for folder in sorted(p for p in (root / "sequences").glob("*") if p.is_dir()):
        meta = _read_json(folder / "meta.json")
        audio = next((folder / n for n in AUDIO_NAMES if (folder / n).is_file()), None)
        if audio is None or not (folder / "meshes.npy").is_file():
            raise DatasetError(f"sequence {folder} needs an audio file ({', '.join(AUDIO_NAMES)}) and meshes.npy")
        try:
            emotion_index(str(meta.get("emotion")))
        except InputError as exc:
            raise DatasetError(f"{folder / 'meta.json'}: {exc}") from None
        intensity = meta.get("intensity", 1.0)
        if not isinstance(intensity, (int, float)) or not 0 <= intensity <= 1:
            raise DatasetError(f"{folder / 'meta.json'}: 'intensity' must be in [0, 1]")
        split = meta.get("split", "train")
        if split not in ("train", "test"):
            raise DatasetError(f"{folder / 'meta.json'}: 'split' must be 'train' or 'test'")
        frames = meta.get("image_frames", [])
        if not isinstance(frames, list) or not all(isinstance(f, int) and f >= 0 for f in frames):
            raise DatasetError(f"{folder / 'meta.json'}: 'image_frames' must be a list of frame indices")
        sequences.append(Sequence(folder.name, folder, audio, str(meta["emotion"]).lower(), float(intensity),
                                  split, float(meta.get("fps", fps)), tuple(frames)))
    if not sequences:
        raise DatasetError(f"no sequences under {root / 'sequences'}")
    return SpeechDataset(root, str(info.get("name", root.name)), float(fps), topology, tuple(sequences),
                         _read_rigid_parts(root / RIGID_PARTS_FILE, topology.template.shape[0]))


def _read_rigid_parts(path: Path, num_vertices: int) -> tuple[RigidPart, ...]:
    if not path.is_file():
        return ()
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        return tuple(load_rigid_parts(arrays, num_vertices))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path} is not a readable .npz: {exc}") from None
    except InputError as exc:
        raise DatasetError(f"{path}: {exc}") from None


def write_rigid_parts(parts: list[RigidPart] | tuple[RigidPart, ...], root: str | Path) -> Path:
    """Write a dataset's rigid_parts.npz (the layout above)."""
    arrays: dict[str, np.ndarray] = {"names": np.array([p.name for p in parts], dtype=str)}
    for p in parts:
        arrays |= {f"{p.name}.vertices": p.vertices.astype(np.float32),
                   f"{p.name}.triangles": p.triangles.astype(np.int64),
                   f"{p.name}.anchor": p.anchor.astype(np.int64)}
    path = Path(root) / RIGID_PARTS_FILE
    np.savez(path, **arrays)
    return path
