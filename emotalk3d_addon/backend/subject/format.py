"""The subject bundle format: its constants and limits, and the small pure helpers the
other modules of the package share (defect wording, safe relative paths). Torch-free."""
from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Sequence

from ..model_limits import MAX_EMOTION_WINDOW, MAX_ENCODER_HIDDEN, MAX_MODEL_LAYERS  # noqa: F401 (re-exported)

FORMAT = "emotalk3d-subject"
FORMAT_VERSION = 1
MANIFEST = "subject.json"
REQUIRED_LANDMARKS = ("upper_lip", "lower_lip", "mouth_left", "mouth_right")
BUNDLED_SUBJECTS_DIR = Path(__file__).resolve().parent.parent.parent / "subjects"
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
MAX_COMPRESSION_RATIO = 100      # an entry may unpack to at most this many times its packed size ...
RATIO_FLOOR_BYTES = 1024 ** 2    # ... once it unpacks to more than this (tensors deflate 1-3x; bombs 1000x)
MAX_JSON_BYTES = 16 * 1024 ** 2
MAX_PATH_CHARS = 1024  # a path inside a bundle (zip entry or manifest file key)
_EXTRACTED_MARKER = ".emotalk3d-extracted"
_MAX_LISTED = 6  # names listed in one defect line before "... and N more"

_FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}


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
