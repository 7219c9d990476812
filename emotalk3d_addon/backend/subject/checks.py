"""``_FolderChecker``: checks a bundle folder and reports every defect at once.

The folder-level walk lives here (symbolic links, the manifest, its header and top-level
keys, the cross-checks between sections); the per-section manifest checks are in
``section_checks`` and the checks of the files a manifest names in ``file_checks``."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable

from ..emotions import EMOTIONS
from ..geometry.s2gnet import S2GConfig, S2GNet
from ..speech.emotion import EmotionConfig, EmotionExtractor
from ..speech.encoder import EncoderSpec
from ..appearance.dynamic import AnimatedHead
from .format import (FORMAT, FORMAT_VERSION, MANIFEST, MAX_JSON_BYTES, MAX_ZIP_MEMBERS, _first_line,
                     _json_type, _short, _unsafe_relative, _within)
from .file_checks import _FileChecks
from .section_checks import _SectionChecks

_KINDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "string": ("a string", lambda v: isinstance(v, str)),
    "integer": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "number": ("a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
    "object": ("an object", lambda v: isinstance(v, dict)),
    "array": ("an array", lambda v: isinstance(v, list)),
    "boolean": ("true or false", lambda v: isinstance(v, bool)),
}


class _FolderChecker(_SectionChecks, _FileChecks):
    """Collects every defect of a bundle folder and keeps what it read, for ``model._build_subject``."""

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
        self.arkit_absent: set[str] | None = None

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
        arkit_file = self.check_arkit_section(m)
        if encoder_dir is not None:
            self.check_encoder(encoder_dir)
        self.check_dims()
        if geometry_file is not None:
            self.check_geometry_file(geometry_file)
        if basis_file is not None:
            self.check_basis_file(basis_file)
        if arkit_file is not None:
            self.check_arkit_file(arkit_file)
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
