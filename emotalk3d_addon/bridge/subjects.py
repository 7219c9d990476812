"""Subject library folders, read in Blender without the backend (JSON manifests only).

A subject reference is what the scene stores: a bare name (looked up in the library
folders, then ``$EMOTALK3D_SUBJECT_PATH``, then the extension's bundled subjects — the
same order as the backend's ``resolve_subject``) or the path of a bundle (folder or zip).
"""
from __future__ import annotations

import json
import ntpath
import os
import zipfile
from dataclasses import dataclass, field
from typing import Callable
from pathlib import Path

ADDON_DIR = Path(__file__).resolve().parent.parent
BUNDLED_DIR = ADDON_DIR / "subjects"
SUBJECT_PATH_ENV = "EMOTALK3D_SUBJECT_PATH"
MANIFEST = "subject.json"
PREVIEW_NAMES = ("preview.png", "preview.jpg", "thumbnail.png")


@dataclass
class SubjectEntry:
    name: str                 # the manifest's name (else the folder name)
    ref: str                  # what the scene stores: the bare name in a library, else the path
    path: Path
    library: Path | None
    manifest: dict = field(default_factory=dict)
    error: str = ""

    @property
    def emotions(self) -> list[str]:
        return [str(e) for e in self.manifest.get("emotions", [])]

    @property
    def num_vertices(self) -> int:
        return int((self.manifest.get("geometry") or {}).get("num_vertices", 0) or 0)

    @property
    def num_components(self) -> int:
        return int((self.manifest.get("basis") or {}).get("num_components", 0) or 0)

    @property
    def preview(self) -> Path | None:
        if self.path.is_dir():
            for n in PREVIEW_NAMES:
                if (self.path / n).is_file():
                    return self.path / n
        return None


def label(ref: str) -> str:
    """What the subject list shows for a stored reference: its last part, whichever
    separators it uses and whatever system runs this (``C:\\Users\\ana\\subjects\\kate``,
    ``/home/ana/subjects/kate/`` and ``\\\\server\\share\\kate`` all show ``kate``);
    a bare name shows as it is."""
    text = (ref or "").strip()
    trimmed = text.rstrip("/\\") or text
    drive, rest = ntpath.splitdrive(trimmed)        # ntpath splits on both separators on every system
    name = ntpath.basename(rest.rstrip("/\\"))
    if name:
        return name
    return ntpath.basename(drive.rstrip("/\\")) or drive or trimmed    # a share or drive root


def is_path(ref: str) -> bool:
    """True when a stored reference is a path (it has a separator of any system), not a bare name."""
    return "/" in ref or "\\" in ref or os.sep in ref


def library_dirs(configured: list[str] | tuple[str, ...] = ()) -> list[Path]:
    """Folders searched for subjects: the preferences', $EMOTALK3D_SUBJECT_PATH's, the bundled one (always)."""
    dirs: list[Path] = []
    for d in list(configured) + os.environ.get(SUBJECT_PATH_ENV, "").split(os.pathsep):
        d = (d or "").strip()
        if d:
            p = Path(d).expanduser()
            if p not in dirs:
                dirs.append(p)
    if BUNDLED_DIR not in dirs:
        dirs.append(BUNDLED_DIR)
    return dirs


def read_manifest(path: Path) -> dict:
    """The subject.json of a bundle folder or zip (top level or one folder deep); {} if none."""
    try:
        if path.is_dir():
            return json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        if path.is_file() and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if n == MANIFEST or (n.count("/") == 1 and n.endswith("/" + MANIFEST))]
                if names:
                    info = zf.getinfo(sorted(names, key=len)[0])
                    if info.file_size <= 16 << 20:
                        return json.loads(zf.read(info).decode("utf-8"))
    except (OSError, ValueError, zipfile.BadZipFile, UnicodeDecodeError):
        pass
    return {}


def _entry(path: Path, library: Path | None) -> SubjectEntry | None:
    manifest = read_manifest(path)
    if not manifest:
        return None
    stem = path.name[:-4] if path.name.lower().endswith(".zip") else path.name
    name = str(manifest.get("name") or stem)
    ref = stem if library is not None else str(path)
    return SubjectEntry(name=name, ref=ref, path=path, library=library, manifest=manifest)


def scan(dirs: list[Path]) -> list[SubjectEntry]:
    """Every bundle (folder with subject.json, or .zip) directly inside the library folders."""
    out: list[SubjectEntry] = []
    seen: set[str] = set()
    for d in dirs:
        try:
            children = sorted(d.iterdir()) if d.is_dir() else []
        except OSError:
            continue
        for child in children:
            if child.name.startswith(".") or not (child.is_dir() or child.name.lower().endswith(".zip")):
                continue
            entry = _entry(child, d)
            if entry is not None and entry.ref not in seen:
                seen.add(entry.ref)
                out.append(entry)
    return out


def resolve(ref: str, dirs: list[Path]) -> Path | None:
    """The bundle a stored reference designates, or None when it is missing."""
    text = (ref or "").strip()
    if not text:
        return None
    given = Path(text).expanduser()
    if given.exists():
        return given
    if is_path(text):
        return None
    for d in dirs:
        if (d / text).is_dir():
            return d / text
        if (d / f"{text}.zip").is_file():
            return d / f"{text}.zip"
    return None


def describe(ref: str, dirs: list[Path]) -> SubjectEntry | None:
    path = resolve(ref, dirs)
    if path is None:
        return None
    library = path.parent if path.parent in dirs and not Path(ref).is_absolute() else None
    entry = _entry(path, library)
    if entry is None:
        return SubjectEntry(name=label(ref), ref=ref, path=path, library=library, error="no subject.json")
    entry.ref = ref
    return entry


def resolve_subject(ref: str, dirs: list[Path], abspath: Callable[[str], str] = lambda p: p) -> Path | None:
    """A head's subject bundle: the stored reference (blend-relative ``//`` paths too), else a
    bundle of the same name in the library folders (a render-farm worker has other paths)."""
    text = (ref or "").strip()
    if not text:
        return None
    found = resolve(abspath(text) if text.startswith("//") else text, dirs)
    if found is not None:
        return found
    name = Path(text.replace("\\", "/")).name
    if name.endswith(".zip"):
        name = name[:-4]
    return resolve(name, dirs) if name and name != text else None
