"""``resolve_subject``: the bundle a subject name or path designates (the library folders,
``$EMOTALK3D_SUBJECT_PATH``, the extension's bundled subjects)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ..errors import InputError
from .format import BUNDLED_SUBJECTS_DIR, SUBJECT_PATH_ENV


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
