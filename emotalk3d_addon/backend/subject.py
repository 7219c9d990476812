"""Subject bundles: a trained subject as a folder (or a zip of one), format version 1.

A bundle is a JSON manifest plus tensors in safetensors files; nothing in it is ever
unpickled, so a bundle from a stranger cannot run code. Subject space: metres, +Z up,
the face looking toward -Y. Layout::

    subject.json            manifest (see ``make_manifest``)
    geometry.safetensors    template_vertices (V,3) f32, triangles (T,3) i32,
                            uvs (V,2) f32 in [0,1], face_mask (V,) u8 0/1
    basis.safetensors       components (K,V,3) f32
    s2g.safetensors         S2GNet state dict, f32
    emotion.safetensors     EmotionExtractor state dict, f32
    encoder/                only for a bundled encoder: config.json + model.safetensors

Loading validates everything first and reports every defect at once
(``BundleError.defects``, one line each, naming the file or key). A zip is checked
entry by entry before anything is extracted, then extracted into the cache under
``subjects/<sha256[:16]>/``.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import shutil
import stat
import tempfile
import typing
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .emotions import CONDITION_DIM, EMOTIONS
from .errors import BundleError, InputError
from .geometry.basis import MotionBasis
from .geometry.s2gnet import S2GConfig, S2GNet
from .paths import default_cache_dir
from .speech.emotion import EmotionConfig, EmotionExtractor
from .speech.encoder import EncoderSpec
from .appearance.dynamic import AnimatedHead
from .appearance.storage import appearance_section, load_appearance, write_appearance

FORMAT = "emotalk3d-subject"
FORMAT_VERSION = 1
MANIFEST = "subject.json"
REQUIRED_LANDMARKS = ("upper_lip", "lower_lip", "mouth_left", "mouth_right")
BUNDLED_SUBJECTS_DIR = Path(__file__).resolve().parent.parent / "subjects"
SUBJECT_PATH_ENV = "EMOTALK3D_SUBJECT_PATH"

GEOMETRY_FILE = "geometry.safetensors"
BASIS_FILE = "basis.safetensors"
S2G_FILE = "s2g.safetensors"
EMOTION_FILE = "emotion.safetensors"
ENCODER_DIR = "encoder"
ENCODER_FILES = ("config.json", "model.safetensors")

# Limits on what a bundle may hold (zip checks happen before anything is extracted).
MAX_ZIP_MEMBERS = 10_000
MAX_ZIP_BYTES = 2 * 1024 ** 3
MAX_JSON_BYTES = 16 * 1024 ** 2
MAX_PATH_CHARS = 1024  # a path inside a bundle (zip entry or manifest file key)
# Limits on the models a manifest or encoder config may describe. Validation builds them
# on the meta device; a hostile count of layers would take hours to build, and HuBERT
# allocates one real (hidden_size,) tensor even there.
MAX_MODEL_LAYERS = 256
MAX_ENCODER_HIDDEN = 16_384
MAX_EMOTION_WINDOW = 4_096      # frames (80 s at 50 Hz) per emotion-extractor attention window
_EXTRACTED_MARKER = ".emotalk3d-extracted"
_MAX_LISTED = 6  # names listed in one defect line before "... and N more"

_FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}


# --------------------------------------------------------------------------- data


@dataclass
class Geometry:
    """The subject's template mesh, subject space (metres, +Z up, face toward -Y).

    template: (V, 3) float32 vertex positions, metres.
    triangles: (T, 3) int64 vertex indices in [0, V).
    uvs: (V, 2) float32 texture coordinates in [0, 1].
    face_mask: (V,) bool, True for the vertices of the face region.
    landmarks: name -> vertex index (at least ``REQUIRED_LANDMARKS``).
    """

    template: np.ndarray
    triangles: np.ndarray
    uvs: np.ndarray
    face_mask: np.ndarray
    landmarks: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.template = np.ascontiguousarray(self.template, dtype=np.float32)
        self.triangles = np.ascontiguousarray(self.triangles, dtype=np.int64)
        self.uvs = np.ascontiguousarray(self.uvs, dtype=np.float32)
        self.face_mask = np.ascontiguousarray(self.face_mask, dtype=bool)
        self.landmarks = {str(k): int(v) for k, v in self.landmarks.items()}

    @property
    def num_vertices(self) -> int:
        """V."""
        return int(self.template.shape[0])

    @property
    def num_triangles(self) -> int:
        """T."""
        return int(self.triangles.shape[0])


@dataclass
class Subject:
    """A loaded, validated subject.

    root: the bundle folder it was loaded from (for a zip: its extraction in the cache),
    None for a subject built in memory. manifest: the parsed subject.json (unknown keys
    kept). encoder: for a bundled encoder, ``source`` is the absolute path of the
    bundle's encoder folder.
    """

    root: Path | None
    manifest: dict
    geometry: Geometry
    basis: MotionBasis
    s2g_config: S2GConfig
    s2g_state: dict[str, torch.Tensor]
    emotion_config: EmotionConfig
    emotion_state: dict[str, torch.Tensor]
    encoder: EncoderSpec
    appearance: "AnimatedHead | None" = None   # canonical Gaussians + G2ANet (optional section)

    @property
    def name(self) -> str:
        """The subject's name from the manifest."""
        return str(self.manifest.get("name", ""))

    @property
    def fps(self) -> float:
        """Frame rate (frames per second) the subject was trained at."""
        return float(self.manifest.get("fps", 0.0))

    def save(self, path: str | Path, encoder_dir: str | Path | None = None) -> Path:
        """Write the bundle to ``path``: a folder, or a zip when ``path`` ends with ``.zip``.

        ``encoder_dir``: a folder holding config.json + model.safetensors, copied in when
        the encoder is bundled (default: ``self.encoder.source``). The bundle is written
        to a temporary folder next to ``path``, validated, then renamed into place; an
        existing bundle there is replaced, anything else there is refused (InputError).
        Returns the written path.
        """
        target = Path(path).expanduser().absolute()
        as_zip = target.name.lower().endswith(".zip")
        _check_overwrite(target, as_zip)
        target.parent.mkdir(parents=True, exist_ok=True)

        if self.encoder.kind == "bundled":
            src = Path(encoder_dir if encoder_dir is not None else self.encoder.source).expanduser()
            for name in ENCODER_FILES:
                if not (src / name).is_file():
                    raise InputError(f"bundled speech encoder folder {src} has no {name}")
        elif encoder_dir is not None:
            raise InputError("encoder_dir is only used with a bundled speech encoder; "
                             f"this subject's encoder is {self.encoder.kind!r}")
        else:
            src = None

        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            self._write_folder(tmp, src)
            defects, _ = _inspect_folder(tmp.resolve(), load=False)
            if defects:
                raise BundleError(str(target), defects)
            if as_zip:
                _write_zip(tmp, target)
            else:
                _swap_in_folder(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return target

    def _write_folder(self, folder: Path, encoder_src: Path | None) -> None:
        from safetensors.numpy import save_file as save_numpy
        from safetensors.torch import save_file as save_torch

        g = self.geometry
        if g.triangles.size and (g.triangles.min() < 0 or g.triangles.max() >= 2 ** 31):
            raise InputError("triangle indices do not fit int32")
        save_numpy({
            "template_vertices": np.ascontiguousarray(g.template, dtype=np.float32),
            "triangles": np.ascontiguousarray(g.triangles, dtype=np.int32),
            "uvs": np.ascontiguousarray(g.uvs, dtype=np.float32),
            "face_mask": np.ascontiguousarray(g.face_mask, dtype=np.uint8),
        }, str(folder / GEOMETRY_FILE))
        save_numpy({"components": np.ascontiguousarray(self.basis.components, dtype=np.float32)},
                   str(folder / BASIS_FILE))
        for state, name in ((self.s2g_state, S2G_FILE), (self.emotion_state, EMOTION_FILE)):
            tensors = {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in state.items()}
            save_torch(tensors, str(folder / name), metadata={"format": "pt"})
        if encoder_src is not None:
            (folder / ENCODER_DIR).mkdir()
            for name in ENCODER_FILES:
                shutil.copyfile(encoder_src / name, folder / ENCODER_DIR / name)
        if self.appearance is not None:
            write_appearance(self.appearance, folder)
        manifest = self._manifest_for_save()
        try:
            text = json.dumps(manifest, indent=2, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise BundleError(MANIFEST, [f"{MANIFEST}: the manifest cannot be written as JSON: {exc}"]) from None
        (folder / MANIFEST).write_text(text + "\n", encoding="utf-8")

    def _manifest_for_save(self) -> dict:
        """The manifest with every section describing the files brought up to date."""
        m = copy.deepcopy(self.manifest)
        m["format"] = FORMAT
        m["format_version"] = FORMAT_VERSION
        m["encoder"] = _encoder_section(self.encoder)
        geo = dict(m.get("geometry") or {})
        geo.update(file=GEOMETRY_FILE, num_vertices=self.geometry.num_vertices,
                   num_triangles=self.geometry.num_triangles, landmarks=dict(self.geometry.landmarks))
        m["geometry"] = geo
        m["s2g"] = {**(m.get("s2g") or {}), "file": S2G_FILE, "config": self.s2g_config.to_dict()}
        m["emotion_extractor"] = {**(m.get("emotion_extractor") or {}), "file": EMOTION_FILE,
                                  "config": self.emotion_config.to_dict()}
        basis = dict(m.get("basis") or {})
        basis.update(file=BASIS_FILE, num_components=self.basis.num_components)
        m["basis"] = basis
        if self.appearance is not None:
            view = (m.get("appearance") or {}).get("view")
            if view is None:
                raise InputError("the subject's appearance needs a default view (manifest appearance.view)")
            m["appearance"] = appearance_section(self.appearance, view)
        else:
            m.pop("appearance", None)
        return m


def _encoder_section(encoder: EncoderSpec) -> dict:
    if encoder.kind == "bundled":
        return {"kind": "bundled", "path": ENCODER_DIR}
    if encoder.kind == "whisper":
        from .speech.whisper import known_weights

        weights = known_weights(encoder.source)
        return {"kind": "whisper", "model": weights.model, "package": weights.requirement,
                "sha256": encoder.digest or weights.sha256}
    return {"kind": "pretrained", "source": encoder.source}


def make_manifest(name: str, fps: float, encoder: EncoderSpec, geometry: Geometry, basis: MotionBasis,
                  s2g_config: S2GConfig, emotion_config: EmotionConfig, basis_error: tuple[float, float],
                  description: str = "", training: dict | None = None) -> dict:
    """A format-1 manifest for these parts.

    basis_error: (rms_mm, max_mm) reconstruction error of the basis over the training
    frames, millimetres (a ``BasisError`` is accepted too). training: free-form facts
    about the training run (JSON-serialisable).
    """
    if hasattr(basis_error, "rms_mm"):
        rms_mm, max_mm = basis_error.rms_mm, basis_error.max_mm  # type: ignore[union-attr]
    else:
        rms_mm, max_mm = basis_error
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": str(name),
        "description": str(description),
        "space": {"units": "metres", "up": "+Z", "forward": "-Y",
                  "origin": "the template mesh's own origin"},
        "emotions": list(EMOTIONS),
        "fps": float(fps),
        "encoder": _encoder_section(encoder),
        "geometry": {"file": GEOMETRY_FILE, "num_vertices": geometry.num_vertices,
                     "num_triangles": geometry.num_triangles, "landmarks": dict(geometry.landmarks)},
        "s2g": {"file": S2G_FILE, "config": s2g_config.to_dict()},
        "emotion_extractor": {"file": EMOTION_FILE, "config": emotion_config.to_dict()},
        "basis": {"file": BASIS_FILE, "num_components": basis.num_components,
                  "rms_mm": float(rms_mm), "max_mm": float(max_mm)},
        "training": dict(training or {}),
    }


# --------------------------------------------------------------------------- public entry points


def load_subject(path: str | Path, cache_dir: str | Path | None = None) -> Subject:
    """Load and validate a bundle (folder or zip); BundleError listing every defect."""
    defects, subject = _inspect(Path(path).expanduser(), cache_dir, load=True)
    if defects or subject is None:
        raise BundleError(str(path), defects or ["the bundle could not be read"])
    return subject


def validate_subject(path: str | Path, cache_dir: str | Path | None = None) -> list[str]:
    """Every defect of the bundle at ``path``, one line each; [] when it is valid.

    Never raises for a bad bundle. A zip is extracted into the cache when its entries
    are safe, so its contents can be checked.
    """
    defects, _ = _inspect(Path(path).expanduser(), cache_dir, load=False)
    return defects


def resolve_subject(name_or_path: str | Path, library: Sequence[str | Path] = ()) -> Path:
    """The bundle a name or path designates.

    An existing path (folder or .zip) wins. Otherwise a bare name is looked up as
    ``<dir>/<name>`` or ``<dir>/<name>.zip`` in ``library``, then in the folders of
    ``$EMOTALK3D_SUBJECT_PATH`` (os.pathsep-separated), then in the extension's bundled
    subjects. InputError listing where it looked when nothing is found.
    """
    text = str(name_or_path).strip()
    if not text:
        raise InputError("no subject given: pass a subject name or the path of a bundle")
    given = Path(text).expanduser()
    if given.exists():
        if given.is_dir() or given.is_file():
            return given.absolute()
        raise InputError(f"subject {text!r} is neither a folder nor a .zip file")
    bare = os.sep not in text and (os.altsep is None or os.altsep not in text) and "/" not in text
    if not bare or text in (".", ".."):
        raise InputError(f"no subject bundle at {text}: no such file or folder")
    dirs: list[Path] = [Path(d).expanduser() for d in library]
    dirs += [Path(d).expanduser() for d in os.environ.get(SUBJECT_PATH_ENV, "").split(os.pathsep) if d.strip()]
    dirs.append(BUNDLED_SUBJECTS_DIR)
    for d in dirs:
        folder = d / text
        if folder.is_dir():
            return folder.absolute()
        archive = folder if text.lower().endswith(".zip") else d / f"{text}.zip"
        if archive.is_file():
            return archive.absolute()
    places = "\n".join(f"  - {d}" for d in dirs)
    raise InputError(f"subject {text!r} not found; looked for a folder {text!r} or a file "
                     f"'{text}.zip' in:\n{places}\n(add folders with ${SUBJECT_PATH_ENV}, "
                     f"separated by {os.pathsep!r}, or give the bundle's path)")


# --------------------------------------------------------------------------- inspection


def _inspect(path: Path, cache_dir: str | Path | None, load: bool) -> tuple[list[str], Subject | None]:
    try:
        if not path.exists():
            return [f"{path}: no such file or folder"], None
        if path.is_dir():
            return _inspect_folder(path.resolve(), load)
        if not path.is_file():
            return [f"{path}: not a folder or a .zip file"], None
        if not zipfile.is_zipfile(path):
            return [f"{path}: not a folder or a zip file"], None
        defects, root = _extract_zip(path, Path(cache_dir).expanduser() if cache_dir else default_cache_dir())
        if defects or root is None:
            return defects, None
        return _inspect_folder(root, load)
    except Exception as exc:  # a bad bundle must produce defects, never a traceback
        return [f"{path}: could not be checked: {type(exc).__name__}: {_first_line(exc)}"], None


def _inspect_folder(root: Path, load: bool) -> tuple[list[str], Subject | None]:
    """Check a bundle folder (already resolved); the Subject when ``load`` and valid."""
    checker = _FolderChecker(root)
    checker.run()
    if checker.defects or not load:
        return checker.defects, None
    return [], checker.build()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


_KINDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "string": ("a string", lambda v: isinstance(v, str)),
    "integer": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "number": ("a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
    "object": ("an object", lambda v: isinstance(v, dict)),
    "array": ("an array", lambda v: isinstance(v, list)),
    "boolean": ("true or false", lambda v: isinstance(v, bool)),
}


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_MAX_LISTED])
    return shown + (f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else "")


def _short(text: str, limit: int = 80) -> str:
    """``repr(text)``, cut in the middle when longer than ``limit`` characters."""
    r = repr(text)
    return r if len(r) <= limit else f"{r[: limit // 2]}...{r[-limit // 2:]} ({len(text)} characters)"


def _within(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def _unsafe_relative(rel: str) -> str | None:
    """Why ``rel`` is not a safe relative path inside a bundle, or None when it is."""
    if not rel:
        return "is empty"
    if "\\" in rel:
        return "contains a backslash"
    if "\0" in rel:
        return "contains a NUL character"
    if rel.startswith("/") or PurePosixPath(rel).is_absolute() or PureWindowsPath(rel).drive:
        return "is an absolute path"
    if ".." in PurePosixPath(rel).parts:
        return "goes outside the bundle ('..')"
    if len(rel) > MAX_PATH_CHARS or any(len(p.encode("utf-8", "surrogatepass")) > 255 for p in rel.split("/")):
        return f"is too long (at most {MAX_PATH_CHARS} characters, 255 bytes per name)"
    return None


class _FolderChecker:
    """Collects every defect of a bundle folder and keeps what it read, for ``build``."""

    def __init__(self, root: Path):
        self.root = root
        self.defects: list[str] = []
        self.manifest: dict = {}
        self.V: int | None = None
        self.T: int | None = None
        self.K: int | None = None
        self.s2g_config: S2GConfig | None = None
        self.emotion_config: EmotionConfig | None = None
        self.encoder_hidden: int | None = None
        self.encoder_spec: EncoderSpec | None = None
        self.landmarks: dict[str, int] = {}
        self.tensors: dict[str, dict[str, Any]] = {}
        self.appearance: AnimatedHead | None = None

    def add(self, message: str) -> None:
        self.defects.append(message)

    # ---- manifest access

    def get(self, obj: Any, dotted: str, kind: str, required: bool = True) -> Any:
        """``obj[last key]`` checked to be of JSON ``kind``; None (and a defect) otherwise."""
        key = dotted.rsplit(".", 1)[-1]
        if not isinstance(obj, dict):
            return None
        if key not in obj:
            if required:
                self.add(f"{MANIFEST}: missing key {dotted!r}")
            return None
        value = obj[key]
        label, ok = _KINDS[kind]
        if not ok(value):
            self.add(f"{MANIFEST}: {dotted} must be {label}, got {_json_type(value)}")
            return None
        if kind == "number" and not math.isfinite(value):
            self.add(f"{MANIFEST}: {dotted} must be a finite number, got {value!r}")
            return None
        return value

    def file(self, rel: Any, key: str, want_dir: bool = False) -> Path | None:
        """The bundle file a manifest key names, or None (and a defect)."""
        if rel is None:
            return None
        why = _unsafe_relative(rel)
        if why is not None:
            self.add(f"{MANIFEST}: {key} {_short(rel)} {why}")
            return None
        path = self.root / rel
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError) as exc:
            self.add(f"{rel}: cannot be resolved ({_first_line(exc)})")
            return None
        if not _within(resolved, self.root):
            self.add(f"{MANIFEST}: {key} {rel!r} leads outside the bundle (symbolic link)")
            return None
        what = "folder" if want_dir else "file"
        try:
            exists, is_dir, is_file = path.exists(), path.is_dir(), path.is_file()
        except OSError as exc:  # e.g. a name too long for the file system
            self.add(f"{MANIFEST}: {key} {_short(rel)} cannot be accessed ({exc.strerror or _first_line(exc)})")
            return None
        if not exists:
            self.add(f"{rel}: missing (named by {key} in {MANIFEST})")
            return None
        if want_dir and not is_dir:
            self.add(f"{rel}: must be a folder (named by {key} in {MANIFEST})")
            return None
        if not want_dir and not is_file:
            self.add(f"{rel}: must be a {what} (named by {key} in {MANIFEST})")
            return None
        return resolved

    # ---- the checks

    def run(self) -> None:
        self.check_symlinks()
        m = self.read_manifest()
        if m is None:
            return
        self.manifest = m
        if not self.check_header(m):
            return
        self.check_top(m)
        geometry_file = self.check_geometry_section(m)
        basis_file = self.check_basis_section(m)
        s2g_file = self.check_s2g_section(m)
        emotion_file = self.check_emotion_section(m)
        encoder_dir = self.check_encoder_section(m)
        if encoder_dir is not None:
            self.check_encoder(encoder_dir)
        self.check_dims()
        if geometry_file is not None:
            self.check_geometry_file(geometry_file)
        if basis_file is not None:
            self.check_basis_file(basis_file)
        if "appearance" in m:
            self.check_appearance(m["appearance"])
        if s2g_file is not None:
            self.check_model_file(s2g_file, "s2g", self.s2g_config, lambda c: S2GNet(c))
        if emotion_file is not None:
            self.check_model_file(emotion_file, "emotion_extractor", self.emotion_config,
                                  lambda c: EmotionExtractor(c))

    def check_symlinks(self) -> None:
        count = 0
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in dirnames + filenames:
                count += 1
                if count > MAX_ZIP_MEMBERS:
                    self.add(f"the bundle folder holds more than {MAX_ZIP_MEMBERS} entries")
                    return
                p = Path(dirpath) / name
                if p.is_symlink():
                    try:
                        target = p.resolve()
                    except (OSError, RuntimeError):
                        target = None
                    if target is None or not _within(target, self.root):
                        rel = p.relative_to(self.root).as_posix()
                        self.add(f"{rel}: symbolic link pointing outside the bundle ({os.readlink(p)})")

    def read_manifest(self) -> dict | None:
        path = self.root / MANIFEST
        if not path.is_file():
            self.add(f"{MANIFEST}: missing (a subject bundle is a folder holding {MANIFEST})")
            return None
        if not _within(path.resolve(), self.root):
            return None  # already reported as a symbolic link out
        try:
            size = path.stat().st_size
            if size > MAX_JSON_BYTES:
                self.add(f"{MANIFEST}: too large ({size} bytes; at most {MAX_JSON_BYTES})")
                return None
            data = json.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            self.add(f"{MANIFEST}: not UTF-8 text")
            return None
        except json.JSONDecodeError as exc:
            self.add(f"{MANIFEST}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")
            return None
        except (OSError, RecursionError, ValueError) as exc:
            self.add(f"{MANIFEST}: cannot be read ({_first_line(exc)})")
            return None
        if not isinstance(data, dict):
            self.add(f"{MANIFEST}: the top level must be a JSON object, got {_json_type(data)}")
            return None
        return data

    def check_header(self, m: dict) -> bool:
        """format and format_version; False when the rest cannot be read by this version."""
        fmt = self.get(m, "format", "string")
        if fmt is not None and fmt != FORMAT:
            self.add(f"{MANIFEST}: format must be {FORMAT!r}, got {fmt!r} (not an EmoTalk3D subject)")
        version = self.get(m, "format_version", "integer")
        if version is not None:
            if version > FORMAT_VERSION:
                self.add(f"{MANIFEST}: made by a newer EmoTalk3D (format {version}); this version "
                         f"reads format {FORMAT_VERSION} — update the extension")
                return False
            if version < 1:
                self.add(f"{MANIFEST}: format_version must be {FORMAT_VERSION}, got {version}")
            elif version < FORMAT_VERSION:  # pragma: no cover - no older format exists yet
                self.add(f"{MANIFEST}: format {version} is no longer supported; re-export the subject")
        return True

    def check_top(self, m: dict) -> None:
        name = self.get(m, "name", "string")
        if name is not None and not name.strip():
            self.add(f"{MANIFEST}: name must not be empty")
        self.get(m, "description", "string", required=False)
        self.get(m, "training", "object", required=False)
        space = self.get(m, "space", "object")
        if space is not None:
            for key, want in (("units", "metres"), ("up", "+Z"), ("forward", "-Y")):
                value = self.get(space, f"space.{key}", "string")
                if value is not None and value != want:
                    self.add(f"{MANIFEST}: space.{key} must be {want!r}, got {value!r}")
            self.get(space, "space.origin", "string", required=False)
        emotions = self.get(m, "emotions", "array")
        if emotions is not None and emotions != list(EMOTIONS):
            self.add(f"{MANIFEST}: emotions must be exactly {list(EMOTIONS)} (in this order), got {emotions!r}")
        fps = self.get(m, "fps", "number")
        if fps is not None and not fps > 0:
            self.add(f"{MANIFEST}: fps must be a positive number, got {fps!r}")

    def check_geometry_section(self, m: dict) -> Path | None:
        geo = self.get(m, "geometry", "object")
        if geo is None:
            return None
        path = self.file(self.get(geo, "geometry.file", "string"), "geometry.file")
        v = self.get(geo, "geometry.num_vertices", "integer")
        if v is not None:
            if v < 3:
                self.add(f"{MANIFEST}: geometry.num_vertices must be at least 3, got {v}")
            else:
                self.V = v
        t = self.get(geo, "geometry.num_triangles", "integer")
        if t is not None:
            if t < 1:
                self.add(f"{MANIFEST}: geometry.num_triangles must be at least 1, got {t}")
            else:
                self.T = t
        marks = self.get(geo, "geometry.landmarks", "object")
        if marks is not None:
            missing = [n for n in REQUIRED_LANDMARKS if n not in marks]
            if missing:
                self.add(f"{MANIFEST}: geometry.landmarks lacks required landmark(s) {_listing(missing)}")
            for key, index in marks.items():
                if not isinstance(index, int) or isinstance(index, bool):
                    self.add(f"{MANIFEST}: geometry.landmarks.{key} must be an integer vertex index, "
                             f"got {_json_type(index)}")
                elif self.V is not None and not 0 <= index < self.V:
                    self.add(f"{MANIFEST}: geometry.landmarks.{key} = {index} is not a vertex index "
                             f"in [0, {self.V})")
                else:
                    self.landmarks[key] = index
        return path

    def check_basis_section(self, m: dict) -> Path | None:
        basis = self.get(m, "basis", "object")
        if basis is None:
            return None
        path = self.file(self.get(basis, "basis.file", "string"), "basis.file")
        k = self.get(basis, "basis.num_components", "integer")
        if k is not None:
            if k < 1:
                self.add(f"{MANIFEST}: basis.num_components must be at least 1, got {k}")
            else:
                self.K = k
        for key in ("rms_mm", "max_mm"):
            value = self.get(basis, f"basis.{key}", "number")
            if value is not None and value < 0:
                self.add(f"{MANIFEST}: basis.{key} must not be negative, got {value!r}")
        return path

    def check_config(self, cls: type, data: dict, key: str) -> Any:
        """A config dataclass from a manifest object; None (and defects) when it does not fit."""
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        ok = True
        unknown = [k for k in data if k not in fields]
        if unknown:
            self.add(f"{MANIFEST}: {key} has unknown field(s) {_listing(unknown)}")
            ok = False
        for name, f in fields.items():
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if name not in data:
                if required:
                    self.add(f"{MANIFEST}: missing key '{key}.{name}'")
                    ok = False
                continue
            value, hint = data[name], hints[name]
            kind = {int: "integer", float: "number", bool: "boolean", str: "string"}.get(hint)
            if kind is None:  # pragma: no cover - configs only hold scalars
                continue
            if self.get(data, f"{key}.{name}", kind) is None:
                ok = False
                continue
            if kind == "integer" and value < 1:
                self.add(f"{MANIFEST}: {key}.{name} must be a positive integer, got {value}")
                ok = False
            elif kind == "integer" and name == "layers" and value > MAX_MODEL_LAYERS:
                self.add(f"{MANIFEST}: {key}.layers must be at most {MAX_MODEL_LAYERS}, got {value}")
                ok = False
            if kind == "number" and name == "dropout" and not 0 <= value < 1:
                self.add(f"{MANIFEST}: {key}.dropout must be in [0, 1), got {value!r}")
                ok = False
        if not ok:
            return None
        try:
            return cls.from_dict(dict(data))
        except Exception as exc:
            self.add(f"{MANIFEST}: {key} is not a valid {cls.__name__}: {_first_line(exc)}")
            return None

    def check_s2g_section(self, m: dict) -> Path | None:
        s2g = self.get(m, "s2g", "object")
        if s2g is None:
            return None
        path = self.file(self.get(s2g, "s2g.file", "string"), "s2g.file")
        data = self.get(s2g, "s2g.config", "object")
        if data is not None:
            cfg = self.check_config(S2GConfig, data, "s2g.config")
            if cfg is not None and cfg.condition_dim != CONDITION_DIM:
                self.add(f"{MANIFEST}: s2g.config.condition_dim must be {CONDITION_DIM} "
                         f"(8 emotion weights + intensity), got {cfg.condition_dim}")
                cfg = None
            self.s2g_config = cfg
        return path

    def check_emotion_section(self, m: dict) -> Path | None:
        section = self.get(m, "emotion_extractor", "object")
        if section is None:
            return None
        path = self.file(self.get(section, "emotion_extractor.file", "string"), "emotion_extractor.file")
        data = self.get(section, "emotion_extractor.config", "object")
        if data is not None:
            cfg = self.check_config(EmotionConfig, data, "emotion_extractor.config")
            if cfg is not None and not 2 <= cfg.window <= MAX_EMOTION_WINDOW:
                self.add(f"{MANIFEST}: emotion_extractor.config.window must be 2..{MAX_EMOTION_WINDOW} frames "
                         f"(attention memory grows with its square), got {cfg.window}")
                cfg = None
            self.emotion_config = cfg
        return path

    def check_encoder_section(self, m: dict) -> Path | None:
        enc = self.get(m, "encoder", "object")
        if enc is None:
            return None
        kind = self.get(enc, "encoder.kind", "string")
        if kind == "pretrained":
            source = self.get(enc, "encoder.source", "string")
            if source is not None:
                if not source.strip():
                    self.add(f"{MANIFEST}: encoder.source must name a hub model or a folder")
                else:
                    self.encoder_spec = EncoderSpec("pretrained", source)
            return None
        if kind == "bundled":
            rel = self.get(enc, "encoder.path", "string")
            path = self.file(rel, "encoder.path", want_dir=True)
            if path is not None:
                self.encoder_spec = EncoderSpec("bundled", str(path))
            return path
        if kind == "whisper":
            self.check_whisper_section(enc)
            return None
        if kind is not None:
            self.add(f"{MANIFEST}: encoder.kind must be 'whisper', 'pretrained' or 'bundled', got {kind!r}")
        return None

    def check_whisper_section(self, enc: dict) -> None:
        """A Whisper encoder is named by model and pinned by the sha256 of its weights file."""
        from .speech.whisper import KNOWN_WEIGHTS

        model = self.get(enc, "encoder.model", "string")
        digest = self.get(enc, "encoder.sha256", "string")
        if model is None or digest is None:
            return
        weights = KNOWN_WEIGHTS.get(model)
        if weights is None:
            self.add(f"{MANIFEST}: encoder.model {model[:40]!r} is not a Whisper model this backend knows "
                     f"({', '.join(KNOWN_WEIGHTS)})")
        elif digest != weights.sha256:
            self.add(f"{MANIFEST}: encoder.sha256 {digest[:16]!r}... is not the weights this backend pins for "
                     f"Whisper {model} ({weights.requirement}, {weights.sha256[:16]}...)")
        else:
            self.encoder_spec = EncoderSpec("whisper", model, digest)
            self.encoder_hidden = weights.d_model

    def check_dims(self) -> None:
        """Cross-checks between sections."""
        if self.s2g_config is not None and self.V is not None and self.s2g_config.num_vertices != self.V:
            self.add(f"{MANIFEST}: s2g.config.num_vertices is {self.s2g_config.num_vertices}, "
                     f"geometry.num_vertices is {self.V}")
        if self.s2g_config is not None and self.emotion_config is not None \
                and self.s2g_config.feature_dim != self.emotion_config.feature_dim:
            self.add(f"{MANIFEST}: emotion_extractor.config.feature_dim is {self.emotion_config.feature_dim}, "
                     f"s2g.config.feature_dim is {self.s2g_config.feature_dim}; both read the speech features")
        if self.encoder_hidden is not None:
            for key, cfg in (("s2g", self.s2g_config), ("emotion_extractor", self.emotion_config)):
                if cfg is not None and cfg.feature_dim != self.encoder_hidden:
                    self.add(f"{MANIFEST}: {key}.config.feature_dim is {cfg.feature_dim}, but the speech "
                             f"encoder's feature size is {self.encoder_hidden}")

    # ---- tensor files

    def read_tensors(self, path: Path, expected: dict[str, tuple[tuple, set[str]]] | None,
                     framework: str = "pt", keep: bool = True,
                     alias: Callable[[str], str] = lambda n: n) -> dict[str, Any] | None:
        """Check a safetensors file against ``expected`` (name -> (shape, dtypes); None in a
        shape matches any size; ``expected`` None: any names, float32 only) and read its
        tensors: every float tensor must be finite. Returns the tensors read (when ``keep``),
        or None when the file cannot be parsed."""
        from safetensors import safe_open

        rel = path.relative_to(self.root).as_posix()
        try:
            handle = safe_open(str(path), framework=framework)
        except Exception as exc:  # SafetensorError, OSError, ...: never anything executed
            self.add(f"{rel}: not a safetensors file ({_first_line(exc)})")
            return None
        out: dict[str, Any] = {}
        with handle as f:
            names = list(f.keys())
            if expected is not None:
                present = {alias(n) for n in names}
                missing = [n for n in expected if n not in present]
                unexpected = [n for n in names if alias(n) not in expected]
                if missing:
                    self.add(f"{rel}: missing tensor(s) {_listing(missing)}")
                if unexpected:
                    self.add(f"{rel}: unexpected tensor(s) {_listing(unexpected)}")
            for name in names:
                want = ((None,), {"F32"}) if expected is None else expected.get(alias(name))
                if want is None:
                    continue
                shape_want, dtypes = want
                try:
                    sl = f.get_slice(name)
                    shape, dtype = tuple(sl.get_shape()), sl.get_dtype()
                except Exception as exc:
                    self.add(f"{rel}: tensor {name!r} cannot be read ({_first_line(exc)})")
                    continue
                if dtype not in dtypes:
                    self.add(f"{rel}: tensor {name!r} has dtype {dtype}, expected {'/'.join(sorted(dtypes))}")
                    continue
                if shape_want != (None,) and (len(shape) != len(shape_want) or any(
                        w is not None and s != w for s, w in zip(shape, shape_want))):
                    self.add(f"{rel}: tensor {name!r} has shape {list(shape)}, expected "
                             f"{['*' if w is None else w for w in shape_want]}")
                    continue
                try:
                    tensor = f.get_tensor(name)
                except Exception as exc:
                    self.add(f"{rel}: tensor {name!r} cannot be read ({_first_line(exc)})")
                    continue
                if dtype in _FLOAT_DTYPES:
                    finite = bool(torch.isfinite(tensor).all()) if isinstance(tensor, torch.Tensor) \
                        else bool(np.isfinite(tensor).all())
                    if not finite:
                        self.add(f"{rel}: tensor {name!r} contains NaN or Inf")
                        continue
                if keep:
                    out[alias(name)] = tensor.clone() if isinstance(tensor, torch.Tensor) else np.array(tensor)
        return out

    def check_geometry_file(self, path: Path) -> None:
        V, T = self.V, self.T
        expected = {"template_vertices": ((V, 3), {"F32"}), "triangles": ((T, 3), {"I32"}),
                    "uvs": ((V, 2), {"F32"}), "face_mask": ((V,), {"U8"})}
        got = self.read_tensors(path, expected, framework="np")
        if got is None:
            return
        rel = path.relative_to(self.root).as_posix()
        n = V if V is not None else next((a.shape[0] for k, a in got.items() if k != "triangles"), None)
        tri = got.get("triangles")
        if tri is not None and n is not None and tri.size and (tri.min() < 0 or tri.max() >= n):
            self.add(f"{rel}: triangles index vertices outside [0, {n}) "
                     f"(found indices from {int(tri.min())} to {int(tri.max())})")
        uvs = got.get("uvs")
        if uvs is not None and uvs.size and (uvs.min() < 0 or uvs.max() > 1):
            self.add(f"{rel}: uvs must lie in [0, 1], found values from {float(uvs.min()):g} to {float(uvs.max()):g}")
        mask = got.get("face_mask")
        if mask is not None:
            if not np.isin(mask, (0, 1)).all():
                self.add(f"{rel}: face_mask must hold only 0 and 1, found {sorted(set(np.unique(mask).tolist()))[:8]}")
            elif not mask.any():
                self.add(f"{rel}: face_mask is empty (selects no vertex)")
        self.tensors["geometry"] = got

    def check_basis_file(self, path: Path) -> None:
        got = self.read_tensors(path, {"components": ((None, self.V, 3), {"F32"})}, framework="np")
        if got is None:
            return
        comps = got.get("components")
        if comps is not None and self.K is not None and comps.shape[0] != self.K:
            rel = path.relative_to(self.root).as_posix()
            self.add(f"{rel}: components holds {comps.shape[0]} components, "
                     f"basis.num_components in {MANIFEST} says {self.K}")
        self.tensors["basis"] = got

    def check_model_file(self, path: Path, key: str, config: Any, build: Callable[[Any], torch.nn.Module]) -> None:
        expected = None
        if config is not None:
            try:
                with torch.device("meta"):
                    module = build(config)
                expected = {k: (tuple(v.shape), {"F32"}) for k, v in module.state_dict().items()}
            except Exception as exc:
                self.add(f"{MANIFEST}: {key}.config does not build a model: {_first_line(exc)}")
        got = self.read_tensors(path, expected, framework="pt")
        if got is not None:
            self.tensors[key] = got

    def check_encoder(self, folder: Path) -> None:
        rel = folder.relative_to(self.root).as_posix()
        cfg_path, weights = folder / "config.json", folder / "model.safetensors"
        config = None
        for p in (cfg_path, weights):
            if not p.is_file():
                self.add(f"{rel}/{p.name}: missing (the bundled speech encoder needs "
                         f"config.json and model.safetensors)")
            elif not _within(p.resolve(), self.root):
                return  # reported as a symbolic link out
        if cfg_path.is_file():
            config = self.read_encoder_config(cfg_path, f"{rel}/config.json")
        if not weights.is_file():
            return
        expected = None
        if config is not None:
            from transformers import HubertModel

            try:
                with torch.device("meta"):
                    model = HubertModel(config)
                expected = {k: (tuple(v.shape), {"F32", "F16", "BF16"}) for k, v in model.state_dict().items()}
            except Exception as exc:
                self.add(f"{rel}/config.json: does not build a HuBERT model: {_first_line(exc)}")
        if expected is None:
            self.read_tensors(weights, None, keep=False)  # still report unreadable / non-finite
            return
        self.read_tensors(weights, expected, keep=False, alias=_hubert_alias)

    def read_encoder_config(self, path: Path, rel: str) -> Any:
        try:
            if path.stat().st_size > MAX_JSON_BYTES:
                self.add(f"{rel}: too large")
                return None
            data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant,
                              parse_float=_finite_float)
        except (ValueError, OSError, RecursionError) as exc:
            self.add(f"{rel}: not valid JSON ({_first_line(exc)})")
            return None
        if not isinstance(data, dict):
            self.add(f"{rel}: the top level must be a JSON object, got {_json_type(data)}")
            return None
        if data.get("model_type") != "hubert":
            self.add(f"{rel}: model_type must be 'hubert', got {data.get('model_type')!r}")
            return None
        hidden = data.get("hidden_size")
        if not isinstance(hidden, int) or isinstance(hidden, bool) or hidden < 1:
            self.add(f"{rel}: hidden_size must be a positive integer, got {hidden!r}")
            return None
        if hidden > MAX_ENCODER_HIDDEN:
            self.add(f"{rel}: hidden_size must be at most {MAX_ENCODER_HIDDEN}, got {hidden}")
            return None
        layers, convs = data.get("num_hidden_layers", 12), data.get("conv_dim", ())
        if isinstance(layers, int) and layers > MAX_MODEL_LAYERS:
            self.add(f"{rel}: num_hidden_layers must be at most {MAX_MODEL_LAYERS}, got {layers}")
            return None
        if isinstance(convs, (list, tuple)) and len(convs) > MAX_MODEL_LAYERS:
            self.add(f"{rel}: conv_dim must list at most {MAX_MODEL_LAYERS} layers, got {len(convs)}")
            return None
        from transformers import HubertConfig

        try:
            config = HubertConfig(**data)
        except Exception as exc:
            self.add(f"{rel}: not a valid HubertConfig: {_first_line(exc)}")
            return None
        self.encoder_hidden = hidden
        return config

    # ---- result

    def check_appearance(self, section: Any) -> None:
        """The optional appearance section (canonical Gaussians, bindings, G2ANet)."""
        geo = self.tensors.get("geometry")
        if not isinstance(section, dict):
            self.add(f"{MANIFEST}: appearance must be an object, got {_json_type(section)}")
            return
        ply = self.file(self.get(section, "appearance.canonical", "string"), "appearance.canonical")
        tensors = self.file(self.get(section, "appearance.file", "string"), "appearance.file")
        if geo is None:
            return   # the geometry must be readable before the appearance can be checked against it
        try:
            geometry = Geometry(template=geo["template_vertices"], triangles=geo["triangles"].astype(np.int64),
                                uvs=geo["uvs"], face_mask=geo["face_mask"].astype(bool))
            defects, self.appearance = load_appearance(section, ply, tensors, geometry)
        except Exception as exc:  # a broken geometry already has its own defect
            defects = [f"appearance: cannot be checked against the geometry ({_first_line(exc)})"]
        for d in defects:
            self.add(d)

    def build(self) -> Subject:
        m, geo = self.manifest, self.tensors["geometry"]
        geometry = Geometry(template=geo["template_vertices"], triangles=geo["triangles"].astype(np.int64),
                            uvs=geo["uvs"], face_mask=geo["face_mask"].astype(bool),
                            landmarks=dict(m["geometry"]["landmarks"]))
        assert self.s2g_config is not None and self.emotion_config is not None and self.encoder_spec is not None
        return Subject(root=self.root, manifest=m, geometry=geometry,
                       basis=MotionBasis(components=self.tensors["basis"]["components"]),
                       s2g_config=self.s2g_config, s2g_state=self.tensors["s2g"],
                       emotion_config=self.emotion_config, emotion_state=self.tensors["emotion_extractor"],
                       encoder=self.encoder_spec, appearance=self.appearance)


def _no_constant(name: str) -> Any:
    """json ``parse_constant``: NaN and Infinity are not JSON and have no place in a config."""
    raise ValueError(f"{name} is not allowed")


def _finite_float(text: str) -> float:
    """json ``parse_float`` refusing numbers that overflow to infinity (e.g. 1e999)."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


def _hubert_alias(name: str) -> str:
    """Map older / wrapped HuBERT checkpoint names onto ``HubertModel`` state-dict names."""
    if name.startswith("hubert."):
        name = name[len("hubert."):]
    if name.endswith("pos_conv_embed.conv.weight_g"):
        name = name[: -len("weight_g")] + "parametrizations.weight.original0"
    elif name.endswith("pos_conv_embed.conv.weight_v"):
        name = name[: -len("weight_v")] + "parametrizations.weight.original1"
    return name


# --------------------------------------------------------------------------- zips


def _zip_defects(infos: list[zipfile.ZipInfo]) -> tuple[list[str], list[tuple[zipfile.ZipInfo, tuple[str, ...]]]]:
    """Every unsafe entry of a zip, and the (entry, path parts) to extract when none."""
    defects: list[str] = []
    if len(infos) > MAX_ZIP_MEMBERS:
        defects.append(f"the zip holds {len(infos)} entries; at most {MAX_ZIP_MEMBERS} are allowed")
    total = sum(max(0, i.file_size) for i in infos)
    if total > MAX_ZIP_BYTES:
        defects.append(f"the zip unpacks to {total} bytes; at most {MAX_ZIP_BYTES} (2 GiB) are allowed")
    seen: dict[str, str] = {}
    files: set[tuple[str, ...]] = set()
    dirs: set[tuple[str, ...]] = set()
    plan = []
    for info in infos:
        name = info.filename
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            defects.append(f"zip entry {name!r}: symbolic link (not allowed in a bundle)")
            continue
        why = _unsafe_relative(name)
        if why is None and any(ord(c) < 32 for c in name):
            why = "contains a control character"
        if why is not None:
            defects.append(f"zip entry {_short(name)}: path {why}")
            continue
        if info.flag_bits & 0x1:
            defects.append(f"zip entry {name!r}: encrypted (not supported)")
            continue
        parts = tuple(p for p in name.split("/") if p not in ("", "."))
        if not parts:
            continue
        folded = "/".join(parts).casefold()
        if folded in seen:
            defects.append(f"zip entry {name!r}: duplicate name (also {seen[folded]!r})")
            continue
        seen[folded] = name
        if info.is_dir():
            dirs.add(parts)
        else:
            files.add(parts)
        dirs.update(parts[:i] for i in range(1, len(parts)))
        plan.append((info, parts))
    for clash in sorted(files & dirs):
        defects.append(f"zip entry {'/'.join(clash)!r}: is both a file and a folder")
    return defects, plan


def _zip_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _extract_zip(path: Path, cache_dir: Path) -> tuple[list[str], Path | None]:
    """Check a zip's entries, extract it into ``cache_dir/subjects/<hash>/`` (reusing a
    complete earlier extraction) and return the bundle folder inside it."""
    try:
        digest = _zip_digest(path)
        final = cache_dir / "subjects" / digest
        if not (final / _EXTRACTED_MARKER).is_file():
            with zipfile.ZipFile(path) as zf:
                defects, plan = _zip_defects(zf.infolist())
                if defects:
                    return [f"{path.name}: {d}" for d in defects], None
                final.parent.mkdir(parents=True, exist_ok=True)
                if final.exists():  # an incomplete extraction (no marker): start again
                    shutil.rmtree(final)
                tmp = Path(tempfile.mkdtemp(prefix=f".{digest}.tmp-", dir=final.parent))
                try:
                    _extract_plan(zf, plan, tmp)
                    (tmp / _EXTRACTED_MARKER).write_text(digest + "\n", encoding="utf-8")
                    try:
                        os.rename(tmp, final)
                    except OSError:
                        if not (final / _EXTRACTED_MARKER).is_file():  # not a concurrent winner
                            raise
                finally:
                    if tmp.exists():
                        shutil.rmtree(tmp, ignore_errors=True)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
        return [f"{path.name}: damaged or unsupported zip ({_first_line(exc)})"], None
    except OSError as exc:
        return [f"{path.name}: cannot be extracted into {cache_dir} ({_first_line(exc)})"], None
    final = final.resolve()
    if (final / MANIFEST).exists():
        return [], final
    entries = [p for p in final.iterdir() if p.name not in (_EXTRACTED_MARKER, "__MACOSX")]
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return [], entries[0]
    return [f"{path.name}: no {MANIFEST} at the zip's root or inside exactly one top folder"], None


def _extract_plan(zf: zipfile.ZipFile, plan: list[tuple[zipfile.ZipInfo, tuple[str, ...]]], dest: Path) -> None:
    """Write the checked entries under ``dest``, never following links, never past the
    sizes the entries declare."""
    dest_resolved = dest.resolve()
    for info, parts in plan:
        if parts[0] == "__MACOSX":
            continue
        target = dest.joinpath(*parts)
        if not _within(target.resolve(), dest_resolved):  # cannot happen after the checks
            raise OSError(f"entry {info.filename!r} would land outside the extraction folder")
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        with zf.open(info) as src, open(target, "xb") as out:
            for block in iter(lambda: src.read(1 << 20), b""):
                written += len(block)
                if written > info.file_size:
                    raise zipfile.BadZipFile(f"entry {info.filename!r} is larger than it declares")
                out.write(block)


# --------------------------------------------------------------------------- saving


def _is_bundle_zip(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n.strip("/") for n in zf.namelist()]
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n == MANIFEST or (n.count("/") == 1 and n.endswith("/" + MANIFEST)) for n in names)


def _check_overwrite(target: Path, as_zip: bool) -> None:
    if not target.exists() and not target.is_symlink():
        return
    if target.is_symlink():
        raise InputError(f"refusing to overwrite {target}: it is a symbolic link")
    if as_zip:
        if target.is_dir() or not _is_bundle_zip(target):
            raise InputError(f"refusing to overwrite {target}: it is not a subject bundle zip")
        return
    if not target.is_dir():
        raise InputError(f"refusing to overwrite {target}: it is a file, not a subject bundle folder")
    if any(target.iterdir()) and not (target / MANIFEST).is_file():
        raise InputError(f"refusing to overwrite {target}: the folder is not empty and holds no {MANIFEST}")


def _swap_in_folder(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``, replacing an existing bundle folder there."""
    if not target.exists():
        os.rename(tmp, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    old.rmdir()
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except OSError:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _write_zip(folder: Path, target: Path) -> None:
    """Zip ``folder``'s files at the archive root (deterministic: sorted names, fixed
    timestamps), written to a temporary file then renamed over ``target``."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp_name, "w", allowZip64=True) as zf:
            for file in sorted(p for p in folder.rglob("*") if p.is_file()):
                arcname = file.relative_to(folder).as_posix()
                info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED if file.suffix == ".json" else zipfile.ZIP_STORED
                size = file.stat().st_size
                with open(file, "rb") as src, zf.open(info, "w", force_zip64=size > 2 ** 31 - 1) as out:
                    shutil.copyfileobj(src, out, 1 << 20)
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
