"""``Subject`` (a loaded subject; ``save`` writes its bundle), ``make_manifest``, and
loading and validating a bundle: ``load_subject`` / ``validate_subject``."""
from __future__ import annotations

import copy
import json
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..emotions import EMOTIONS
from ..errors import BundleError, InputError
from ..arkit.basis import ARKIT_FILE, ArkitBasis
from ..geometry.basis import MotionBasis
from ..geometry.s2gnet import S2GConfig
from ..paths import default_cache_dir
from ..speech.emotion import EmotionConfig
from ..speech.encoder import EncoderSpec
from ..appearance.dynamic import AnimatedHead
from ..appearance.storage import APPEARANCE_FILE, CANONICAL_PLY, appearance_section, write_appearance
from .archive import _check_overwrite, _extract_zip, _swap_in_folder, _write_zip
from .checks import _FolderChecker
from .format import (BASIS_FILE, EMOTION_FILE, ENCODER_DIR, ENCODER_FILES, FORMAT, FORMAT_VERSION,
                     GEOMETRY_FILE, MANIFEST, S2G_FILE, _first_line)
from .geometry import Geometry


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
    arkit: ArkitBasis | None = None             # the 52 ARKit shapes on this topology (optional section)

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
        Files an existing bundle folder holds beside its own (a demo clip, notes) are
        carried into the new one; the bundle's own files never are. Returns the written path.
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
                if target.is_dir():
                    _carry_other_files(target, tmp)
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
        if self.arkit is not None:
            save_numpy({"shapes": self.arkit.shapes, "present": self.arkit.present.astype(np.uint8)},
                       str(folder / ARKIT_FILE))
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
        if self.arkit is not None:
            m["arkit"] = self.arkit.section()
        else:
            m.pop("arkit", None)
        return m


def _encoder_section(encoder: EncoderSpec) -> dict:
    if encoder.kind == "bundled":
        return {"kind": "bundled", "path": ENCODER_DIR}
    if encoder.kind == "whisper":
        from ..speech.whisper import known_weights

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
    return [], _build_subject(checker)


def _build_subject(checker: _FolderChecker) -> Subject:
    """The Subject a checked, defect-free bundle folder holds (what ``checker`` read)."""
    m, geo = checker.manifest, checker.tensors["geometry"]
    geometry = Geometry(template=geo["template_vertices"], triangles=geo["triangles"].astype(np.int64),
                        uvs=geo["uvs"], face_mask=geo["face_mask"].astype(bool),
                        landmarks=dict(m["geometry"]["landmarks"]))
    assert checker.s2g_config is not None and checker.emotion_config is not None \
        and checker.encoder_spec is not None
    return Subject(root=checker.root, manifest=m, geometry=geometry,
                   basis=MotionBasis(components=checker.tensors["basis"]["components"]),
                   s2g_config=checker.s2g_config, s2g_state=checker.tensors["s2g"],
                   emotion_config=checker.emotion_config, emotion_state=checker.tensors["emotion_extractor"],
                   encoder=checker.encoder_spec, appearance=checker.appearance,
                   arkit=None if "arkit" not in checker.tensors else
                   ArkitBasis(checker.tensors["arkit"]["shapes"], checker.tensors["arkit"]["present"].astype(bool)))


BUNDLE_FILES = frozenset({MANIFEST, GEOMETRY_FILE, BASIS_FILE, S2G_FILE, EMOTION_FILE, ARKIT_FILE,
                          CANONICAL_PLY, APPEARANCE_FILE, ENCODER_DIR})


def _carry_other_files(old: Path, new: Path) -> None:
    """Copy the plain top-level files of bundle folder ``old`` that are not the bundle's own
    (``BUNDLE_FILES``) and that ``new`` lacks into ``new``."""
    for item in old.iterdir():
        if item.name in BUNDLE_FILES or item.name.startswith(".") or item.is_symlink() or not item.is_file():
            continue
        if not (new / item.name).exists():
            shutil.copy2(item, new / item.name)
