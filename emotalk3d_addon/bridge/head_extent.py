"""Where a subject's head reaches: its mesh and its Gaussians (hair, ears, neck), in subject space.

The mesh is only the face; the Gaussians of the canonical PLY (``appearance.canonical`` in
the manifest) reach further: the hair above it, the neck and shoulders below. Framing and
placement use the Gaussians' centres, read here with numpy alone (no torch) from a bundle
folder or zip. Subject space is the head object's own space: metres, +Z up, face toward -Y.
"""
from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from . import subjects
from ..backend.errors import InputError
from ..backend.io.ply_format import read_vertex_columns

MIN_OPACITY = 0.1             # Gaussians fainter than this do not count as part of the head
_CACHE: dict[tuple, np.ndarray | None] = {}


def _parse_ply(data: bytes, min_opacity: float) -> np.ndarray | None:
    """(N, 3) float32 centres of the Gaussians at least ``min_opacity`` opaque (the backend's
    own PLY parser, ``backend/io/ply_format.py``); None for a file it refuses."""
    try:
        _, cols = read_vertex_columns(data, "the subject's canonical PLY")
    except InputError:
        return None
    if not {"x", "y", "z"} <= cols.keys():
        return None
    xyz = np.stack([cols["x"], cols["y"], cols["z"]], axis=1).astype(np.float32)
    keep = np.isfinite(xyz).all(axis=1)
    if "opacity" in cols and 0.0 < min_opacity < 1.0:      # stored as a logit
        keep &= np.asarray(cols["opacity"], np.float64) > math.log(min_opacity / (1.0 - min_opacity))
    return xyz[keep]


def _read_member(bundle: Path, name: str) -> bytes | None:
    if bundle.is_dir():
        path = bundle / name
        return path.read_bytes() if path.is_file() else None
    with zipfile.ZipFile(bundle) as zf:
        members = [n for n in zf.namelist() if n == name or (n.count("/") == 1 and n.endswith("/" + name))]
        return zf.read(sorted(members, key=len)[0]) if members else None


def gaussian_centres(bundle: Path | str | None, min_opacity: float = MIN_OPACITY) -> np.ndarray | None:
    """(N, 3) float32 centres of a subject's canonical Gaussians in subject space (metres);
    None when the bundle has no readable canonical PLY. Cached per file version."""
    if bundle is None:
        return None
    bundle = Path(bundle)
    manifest = subjects.read_manifest(bundle)
    name = str((manifest.get("appearance") or {}).get("canonical") or "")
    if not name:
        return None
    try:
        stat = bundle.stat() if bundle.is_file() else (bundle / name).stat()
        key = (str(bundle.resolve()), name, stat.st_mtime_ns, stat.st_size, float(min_opacity))
        if key not in _CACHE:
            data = _read_member(bundle, name)
            if len(_CACHE) > 8:
                _CACHE.clear()
            _CACHE[key] = _parse_ply(data, min_opacity) if data else None
    except (OSError, ValueError, zipfile.BadZipFile):
        return None
    found = _CACHE[key]
    return found if found is not None and len(found) else None


def subject_bundle(head, scene=None) -> Path | None:
    """The bundle ``head`` was built from (its own reference, else the scene's subject); None when not found."""
    import bpy

    refs = [str(getattr(getattr(head, "emotalk3d_head", None), "subject", "") or "")]
    settings = getattr(scene, "emotalk3d", None) if scene is not None else None
    if settings is not None:
        refs.append(str(settings.subject or ""))
    try:
        from ..preferences import current_settings

        dirs = current_settings().library_dirs()
    except Exception:  # noqa: BLE001 - not enabled as an add-on: the bundled folder still counts
        dirs = subjects.library_dirs()
    for ref in refs:
        if ref:
            found = subjects.resolve_subject(ref, dirs, bpy.path.abspath)
            if found is not None:
                return found
    return None


def local_box(head, bundle: Path | str | None) -> tuple[np.ndarray, np.ndarray]:
    """(lo (3,), hi (3,)) of the mesh ``head`` in its object space: its vertices' box and its Gaussians'."""
    verts = head.data.vertices
    if len(verts):
        co = np.empty(len(verts) * 3, np.float32)
        verts.foreach_get("co", co)
        co = co.reshape(-1, 3).astype(np.float64)
    else:
        co = np.array([tuple(c) for c in head.bound_box], np.float64)
    lo, hi = co.min(axis=0), co.max(axis=0)
    centres = gaussian_centres(bundle)
    if centres is not None:
        lo, hi = np.minimum(lo, centres.min(axis=0)), np.maximum(hi, centres.max(axis=0))
    return lo, hi


def head_points(mesh_local: np.ndarray, bundle: Path | str | None) -> np.ndarray:
    """(N, 3) object-space points of the head proper: the mesh's vertices and the Gaussians
    from the mesh's lowest point up (hair and ears; the neck and shoulders below are left
    to run out of a portrait frame)."""
    points = np.asarray(mesh_local, np.float64).reshape(-1, 3)
    centres = gaussian_centres(bundle)
    if centres is None or not len(points):
        return points
    above = centres[centres[:, 2] >= points[:, 2].min()]
    return np.concatenate([points, above.astype(np.float64)]) if len(above) else points


__all__ = ["gaussian_centres", "subject_bundle", "local_box", "head_points", "MIN_OPACITY"]
