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

Modules (each imports only those above it):

    format          the format's constants and limits, small shared pure helpers (torch-free)
    geometry        ``Geometry``, the template mesh
    section_checks  the manifest's per-section checks (a mixin of ``_FolderChecker``)
    file_checks     the checks of the files it names: tensors, bundled encoder, appearance
    checks          ``_FolderChecker``: the folder-level walk, every defect at once
    archive         zip safety and extraction; the on-disk side of saving
    library         ``resolve_subject``: a bundle by name or path
    model           ``Subject`` (and ``save``), ``make_manifest``, ``load_subject``, ``validate_subject``
"""
from __future__ import annotations

from .archive import _zip_defects
from .format import (BASIS_FILE, BUNDLED_SUBJECTS_DIR, EMOTION_FILE, ENCODER_DIR, ENCODER_FILES, FORMAT,
                     FORMAT_VERSION, GEOMETRY_FILE, MANIFEST, MAX_EMOTION_WINDOW, MAX_ENCODER_HIDDEN,
                     MAX_JSON_BYTES, MAX_MODEL_LAYERS, MAX_PATH_CHARS, MAX_ZIP_BYTES, MAX_ZIP_MEMBERS,
                     REQUIRED_LANDMARKS, S2G_FILE, SUBJECT_PATH_ENV)
from .geometry import Geometry
from .library import resolve_subject
from .model import Subject, load_subject, make_manifest, validate_subject

__all__ = [
    "BASIS_FILE", "BUNDLED_SUBJECTS_DIR", "EMOTION_FILE", "ENCODER_DIR", "ENCODER_FILES", "FORMAT",
    "FORMAT_VERSION", "GEOMETRY_FILE", "MANIFEST", "MAX_EMOTION_WINDOW", "MAX_ENCODER_HIDDEN",
    "MAX_JSON_BYTES", "MAX_MODEL_LAYERS", "MAX_PATH_CHARS", "MAX_ZIP_BYTES", "MAX_ZIP_MEMBERS",
    "REQUIRED_LANDMARKS", "S2G_FILE", "SUBJECT_PATH_ENV",
    "Geometry", "Subject", "load_subject", "make_manifest", "resolve_subject", "validate_subject",
    "_zip_defects",   # tests/backend/test_subject.py checks zip entries with it directly
]
