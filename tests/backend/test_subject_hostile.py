"""Hostile subject bundles: what a stranger's bundle can try, beyond test_subject.py.

Every case must be refused with a BundleError whose defect names the problem (never the
"could not be checked" catch-all), load_subject and validate_subject must agree, nothing
may be executed, and nothing may be written outside the cache folder: the whole of
tmp_path (with a planted sentinel folder) is compared before and after.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import load_file as load_torch
from safetensors.torch import save_file as save_torch

from emotalk3d_addon.backend.errors import BundleError
from emotalk3d_addon.backend.speech.encoder import load_encoder
from emotalk3d_addon.backend.subject import (MANIFEST, MAX_JSON_BYTES, MAX_MODEL_LAYERS, load_subject,
                                             validate_subject)

CATCH_ALL = "could not be checked"

# ---------------------------------------------------------------------------- the world outside the bundle


@pytest.fixture(autouse=True)
def sentinel(tmp_path: Path) -> Path:
    """A folder beside the bundle that hostile paths aim at; it must stay as it is."""
    folder = tmp_path / "sentinel"
    (folder / "inner").mkdir(parents=True)
    (folder / "keep.txt").write_text("do not touch\n")
    (folder / "inner" / "data.bin").write_bytes(bytes(range(256)))
    return folder


def snapshot(root: Path, skip: Path) -> dict[str, tuple]:
    """Every entry under ``root`` except ``skip``: kind and content (links not followed,
    special files not opened), plus the names beside ``root``."""
    out: dict[str, tuple] = {"..": tuple(sorted(os.listdir(root.parent)))}
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        if d == skip or skip in d.parents:
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            p = d / name
            if p == skip:
                continue
            st_ = p.lstat()
            rel = p.relative_to(root).as_posix()
            if stat.S_ISLNK(st_.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISREG(st_.st_mode):
                out[rel] = ("file", st_.st_size, hashlib.sha256(p.read_bytes()).hexdigest())
            else:
                out[rel] = (stat.S_IFMT(st_.st_mode),)
    return out


def _unnamed(defect: str) -> str:
    return re.sub(r"`[^`]*`", "`...`", defect)


def refused(bundle: Path, tmp_path: Path, *parts: str) -> list[str]:
    """Validate and load ``bundle`` (cache in tmp_path/cache): both refuse with the same
    defects, one of which holds every string in ``parts``; nothing outside the cache
    changes. Returns the defects."""
    cache = tmp_path / "cache"
    before = snapshot(tmp_path, cache)
    defects = validate_subject(bundle, cache_dir=cache)
    with pytest.raises(BundleError) as info:
        load_subject(bundle, cache_dir=cache)
    assert snapshot(tmp_path, cache) == before
    # (safetensors names an arbitrary one of two clashing tensors: compare without names)
    assert [_unnamed(d) for d in info.value.defects] == [_unnamed(d) for d in defects] and defects
    assert not any(CATCH_ALL in d for d in defects), defects
    line = next((d for d in defects if all(p in d for p in parts)), None)
    assert line is not None, f"no defect mentions {parts}; defects: {defects}"
    assert _unnamed(line) in _unnamed(str(info.value))
    return defects


# ---------------------------------------------------------------------------- editing bundles


def read_manifest(root: Path) -> dict:
    return json.loads((root / MANIFEST).read_text())


def write_manifest(root: Path, manifest: Any) -> None:
    (root / MANIFEST).write_text(json.dumps(manifest))


def set_key(root: Path, dotted: str, value: Any) -> None:
    m = read_manifest(root)
    *parents, last = dotted.split(".")
    obj = m
    for p in parents:
        obj = obj[p]
    obj[last] = value
    write_manifest(root, m)


def edit_tensors(path: Path, fn: Callable[[dict], None]) -> None:
    """Rewrite a safetensors file after ``fn`` edits its tensors (numpy for geometry and
    basis, torch for the rest)."""
    numpy_file = path.name in ("geometry.safetensors", "basis.safetensors")
    tensors = dict((load_numpy if numpy_file else load_torch)(str(path)))
    fn(tensors)
    (save_numpy if numpy_file else save_torch)(tensors, str(path))


def edit_encoder_config(root: Path, **changes: Any) -> None:
    path = root / "encoder" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def zip_folder(folder: Path, out: Path, prefix: str = "", extra=(), skip=()) -> Path:
    """Zip a bundle folder (under ``prefix``), leaving out ``skip``, then add ``extra``
    (ZipInfo or name, data)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in sorted(folder.rglob("*")):
                rel = p.relative_to(folder).as_posix()
                if p.is_file() and rel not in skip:
                    zf.write(p, prefix + rel)
            for info, data in extra:
                zf.writestr(info, data)
    return out


def central_records(data: bytes) -> list[int]:
    """Offsets of the central-directory file headers of a zip."""
    out, at = [], data.find(b"PK\x01\x02")
    while at >= 0:
        out.append(at)
        at = data.find(b"PK\x01\x02", at + 4)
    return out


def safetensors_bytes(header: Any, data: bytes = b"", length: int | None = None) -> bytes:
    """A safetensors file from a header object (any JSON), data bytes and an optional
    forged header-length field."""
    h = json.dumps(header).encode() if not isinstance(header, bytes) else header
    return struct.pack("<Q", len(h) if length is None else length) + h + data


# ---------------------------------------------------------------------------- pickles


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: it would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def pickle_file(kind: str, marker: Path, path: Path) -> None:
    """Write a pickle whose loading creates ``marker``: a torch.save zip checkpoint, a
    legacy torch.save file or a bare pickle."""
    payload = {"weight": _Payload(marker)}
    if kind == "torch-zip":
        torch.save(payload, path)
    elif kind == "torch-legacy":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    else:
        import pickle

        path.write_bytes(pickle.dumps(payload, protocol=2))


PICKLE_KINDS = ["torch-zip", "torch-legacy", "pickle"]


@pytest.mark.parametrize("kind", PICKLE_KINDS)
def test_the_pickle_payloads_are_live(tmp_path, kind):
    """Control: loading these files with pickle really does create the marker."""
    marker = tmp_path / "sentinel" / f"control-{kind}"
    path = tmp_path / "payload.bin"
    pickle_file(kind, marker, path)
    if kind == "pickle":
        import pickle

        pickle.loads(path.read_bytes())
    else:
        torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("kind", PICKLE_KINDS)
@pytest.mark.parametrize("file", ["geometry.safetensors", "basis.safetensors", "s2g.safetensors",
                                  "emotion.safetensors", "encoder/model.safetensors"])
def test_pickle_in_place_of_safetensors_is_never_loaded(tiny_subject, tmp_path, file, kind):
    """A torch checkpoint or bare pickle renamed to .safetensors: refused as not a
    safetensors file; its payload never runs."""
    marker = tmp_path / "sentinel" / "pwned"
    pickle_file(kind, marker, tiny_subject / file)
    refused(tiny_subject, tmp_path, f"{file}: not a safetensors file")
    assert not marker.exists()


def test_pickle_in_a_zip_bundle_is_never_loaded(tiny_subject, tmp_path):
    """The same inside a zip: extracted to the cache only, refused, never unpickled."""
    marker = tmp_path / "sentinel" / "pwned"
    pickle_file("torch-zip", marker, tiny_subject / "s2g.safetensors")
    archive = zip_folder(tiny_subject, tmp_path / "evil.zip")
    refused(archive, tmp_path, "s2g.safetensors: not a safetensors file")
    assert not marker.exists()


def test_pickled_encoder_weights_beside_the_safetensors_are_ignored(tiny_subject, tmp_path):
    """A pytorch_model.bin payload next to the encoder's model.safetensors: the bundle is
    valid and loading its encoder reads only the safetensors."""
    marker = tmp_path / "sentinel" / "pwned"
    pickle_file("torch-zip", marker, tiny_subject / "encoder" / "pytorch_model.bin")
    assert validate_subject(tiny_subject, cache_dir=tmp_path / "cache") == []
    encoder = load_encoder(load_subject(tiny_subject).encoder)
    assert encoder.feature_dim == 16 and not marker.exists()


def test_pickled_encoder_weights_alone_are_refused(tiny_subject, tmp_path):
    """Only a pytorch_model.bin (no model.safetensors): model.safetensors is missing."""
    marker = tmp_path / "sentinel" / "pwned"
    (tiny_subject / "encoder" / "model.safetensors").unlink()
    pickle_file("torch-zip", marker, tiny_subject / "encoder" / "pytorch_model.bin")
    refused(tiny_subject, tmp_path, "encoder/model.safetensors: missing")
    assert not marker.exists()


# ---------------------------------------------------------------------------- zip entries that escape


def _escaping_entries(tmp_path: Path) -> list[tuple[str, str, str]]:
    """(id, entry name, expected words); each name, if followed, lands in the sentinel."""
    target = (tmp_path / "sentinel" / "pwned").as_posix()
    return [
        ("top-folder-dotdot", "tiny/../../../../../sentinel/pwned", "goes outside the bundle"),
        ("dot-then-dotdot", "./../sentinel/pwned", "goes outside the bundle"),
        ("dotdot-after-dot-folder", "tiny/./../../sentinel/pwned", "goes outside the bundle"),
        ("absolute-into-sentinel", target, "is an absolute path"),
        ("double-slash", "/" + target, "is an absolute path"),
        ("drive-relative", "C:sentinel/pwned", "is an absolute path"),
        ("windows-dotdot", "tiny\\..\\..\\sentinel\\pwned", "contains a backslash"),
        ("control", "tiny/\x1b[2Jpwned", "contains a control character"),
        ("long-name", "tiny/" + "a" * 300, "is too long"),
        ("deep", "/".join(["d"] * 2000) + "/pwned", "is too long"),
    ]


@pytest.mark.parametrize("case", range(len(_escaping_entries(Path("/x")))),
                         ids=[c[0] for c in _escaping_entries(Path("/x"))])
def test_escaping_zip_entry_is_refused_before_extraction(tiny_subject, tmp_path, case):
    """Entries that climb out ('..'), are absolute (even pointing at the sentinel), use
    backslashes or control characters, or are too long: refused, nothing extracted."""
    _, name, words = _escaping_entries(tmp_path)[case]
    info = zipfile.ZipInfo("x")
    info.filename = name  # bypass zipfile's own clean-up of the name
    archive = zip_folder(tiny_subject, tmp_path / "evil.zip", prefix="tiny/", extra=[(info, b"pwned")])
    refused(archive, tmp_path, "evil.zip: zip entry", words)
    cache = tmp_path / "cache"
    assert not cache.exists() or not [p for p in cache.rglob("*") if p.is_file()]


def test_odd_but_harmless_entry_names_stay_inside(tiny_subject, tmp_path):
    """Look-alikes of '..' ('%2e%2e', '..x', U+2024) are plain names: extracted inside the
    cache, the bundle stays valid."""
    names = ["tiny/%2e%2e/x", "tiny/..x", "tiny/\u2024\u2024/x", "tiny/.../x"]
    archive = zip_folder(tiny_subject, tmp_path / "odd.zip", prefix="tiny/", extra=[(n, b"x") for n in names])
    before = snapshot(tmp_path, tmp_path / "cache")
    assert validate_subject(archive, cache_dir=tmp_path / "cache") == []
    assert snapshot(tmp_path, tmp_path / "cache") == before
    roots = [p.parent for p in (tmp_path / "cache").rglob(MANIFEST)]
    assert len(roots) == 1 and roots[0].parent.parent == tmp_path / "cache" / "subjects"
    assert all((roots[0].parent / n).is_file() for n in names)


# ---------------------------------------------------------------------------- symbolic links


def _link_out(root: Path, rel: str) -> None:
    """Move ``rel`` out of the bundle (into the sentinel) and leave a link to it."""
    outside = root.parent / "sentinel" / Path(rel).name
    shutil.move(root / rel, outside)
    os.symlink(outside, root / rel)


FOLDER_LINKS = [
    ("encoder-folder-out", lambda r: _link_out(r, "encoder"), ("encoder: symbolic link pointing outside",)),
    ("manifest-out", lambda r: _link_out(r, MANIFEST), ("subject.json: symbolic link pointing outside",)),
    ("encoder-config-out", lambda r: _link_out(r, "encoder/config.json"),
     ("encoder/config.json: symbolic link pointing outside",)),
    ("relative-out", lambda r: ((r / "s2g.safetensors").unlink(),
                                os.symlink("../sentinel/inner/data.bin", r / "s2g.safetensors")),
     ("s2g.safetensors: symbolic link pointing outside", "../sentinel")),
    ("dev-zero", lambda r: ((r / "s2g.safetensors").unlink(), os.symlink("/dev/zero", r / "s2g.safetensors")),
     ("s2g.file", "leads outside the bundle")),
    ("loop", lambda r: ((r / "basis.safetensors").unlink(), os.symlink("basis.safetensors", r / "basis.safetensors")),
     ("basis.safetensors", "cannot be resolved")),
    ("dangling", lambda r: ((r / "basis.safetensors").unlink(), os.symlink("/nonexistent/x", r / "basis.safetensors")),
     ("basis.safetensors: symbolic link pointing outside",)),
]


@pytest.mark.parametrize("make,expected", [c[1:] for c in FOLDER_LINKS], ids=[c[0] for c in FOLDER_LINKS])
def test_symlink_out_of_a_bundle_folder(tiny_subject, tmp_path, make, expected):
    """Links to folders or files outside the bundle, to a device, in a loop or dangling:
    refused without reading through them."""
    make(tiny_subject)
    refused(tiny_subject, tmp_path, *expected)


def _link_entry(name: str, mode: int = stat.S_IFLNK | 0o777) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = mode << 16
    return info


ZIP_LINKS = [
    ("in-top-folder", [(_link_entry("tiny/s2g.safetensors"), "../../../sentinel/keep.txt")],
     ("tiny/s2g.safetensors",), "symbolic link"),
    ("pointing-inside", [(_link_entry("tiny/alias.safetensors"), "s2g.safetensors")], (), "symbolic link"),
    ("folder-link", [(_link_entry("tiny/encoder/"), "/etc")],
     ("tiny/encoder/model.safetensors", "tiny/encoder/config.json"), "symbolic link"),
]


@pytest.mark.parametrize("extra,skip,words", [c[1:] for c in ZIP_LINKS], ids=[c[0] for c in ZIP_LINKS])
def test_symlink_entries_in_a_zip_are_refused(tiny_subject, tmp_path, extra, skip, words):
    """Symbolic-link entries are never allowed in a zip, wherever they point."""
    archive = zip_folder(tiny_subject, tmp_path / "links.zip", prefix="tiny/", extra=extra,
                         skip={s[len("tiny/"):] for s in skip})
    refused(archive, tmp_path, "links.zip: zip entry", words)
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("*.safetensors"))


@pytest.mark.parametrize("rel", ["s2g.safetensors", MANIFEST, "encoder/config.json", "encoder/model.safetensors"])
def test_fifo_in_place_of_a_file_does_not_hang(tiny_subject, tmp_path, rel):
    """A named pipe where a file belongs is refused without being opened (opening it
    would block for ever)."""
    (tiny_subject / rel).unlink()
    os.mkfifo(tiny_subject / rel)
    refused(tiny_subject, tmp_path, rel)


# ---------------------------------------------------------------------------- safetensors headers

_GOOD = {"dtype": "F32", "shape": [4, 49, 3], "data_offsets": [0, 2352]}
HEADERS = [
    ("shape-2^40-squared", safetensors_bytes({"components": {"dtype": "F32", "shape": [2**40, 2**40],
                                                            "data_offsets": [0, 64]}}, bytes(64))),
    ("shape-overflows-u64", safetensors_bytes({"components": {"dtype": "F32", "shape": [2**62, 2**62, 3],
                                                             "data_offsets": [0, 0]}})),
    ("offsets-beyond-file", safetensors_bytes({"components": _GOOD}, bytes(64))),
    ("offsets-reversed", safetensors_bytes({"components": {**_GOOD, "data_offsets": [2352, 0]}}, bytes(2352))),
    ("offsets-overlap", safetensors_bytes({"components": _GOOD, "x": {**_GOOD, "data_offsets": [0, 2352]}},
                                          bytes(2352))),
    ("length-file-plus-one", None),
    ("length-zero", safetensors_bytes(b"", bytes(16), length=0)),
    ("length-only", struct.pack("<Q", 2)),
    ("shorter-than-length-field", b"\x05\x00\x00"),
    ("header-not-utf8", safetensors_bytes(b"\xff\xfe{}")),
    ("header-a-list", safetensors_bytes([1, 2, 3])),
    ("unknown-dtype", safetensors_bytes({"components": {**_GOOD, "dtype": "Q99"}}, bytes(2352))),
    ("negative-dimension", safetensors_bytes({"components": {**_GOOD, "shape": [-1, 49, 3]}}, bytes(2352))),
    ("metadata-not-strings", safetensors_bytes({"__metadata__": {"a": [1]}, "components": _GOOD}, bytes(2352))),
    ("empty-file", b""),
]


@pytest.mark.parametrize("data", [h[1] for h in HEADERS], ids=[h[0] for h in HEADERS])
def test_forged_safetensors_header_is_refused(tiny_subject, tmp_path, data):
    """Absurd shapes (2**40 x 2**40, u64 overflow), offsets past the end, reversed or
    overlapping, a length field larger than the file, non-UTF-8 or non-object headers,
    unknown dtypes: 'not a safetensors file', without allocating what the header claims."""
    path = tiny_subject / "basis.safetensors"
    if data is None:
        real = path.read_bytes()
        data = struct.pack("<Q", len(real) - 8 + 1) + real[8:]  # one byte more than there is
    path.write_bytes(data)
    refused(tiny_subject, tmp_path, "basis.safetensors: not a safetensors file")


# ---------------------------------------------------------------------------- dtypes, shapes and values


def _np(name: str, fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict], None]:
    def edit(t: dict) -> None:
        a = fn(t[name])
        t[name] = np.ascontiguousarray(a) if a.ndim else a  # keep a rank-0 array rank 0
    return edit


def _pt(name: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[dict], None]:
    return lambda t: t.update({name: fn(t[name]).contiguous()})


TENSOR_DEFECTS = [
    ("template-f64", "geometry.safetensors", _np("template_vertices", lambda a: a.astype(np.float64)),
     ("'template_vertices' has dtype F64, expected F32",)),
    ("template-rank3", "geometry.safetensors", _np("template_vertices", lambda a: a[:, :, None]),
     ("'template_vertices' has shape [49, 3, 1], expected [49, 3]",)),
    ("template-transposed", "geometry.safetensors", _np("template_vertices", lambda a: a.T),
     ("'template_vertices' has shape [3, 49], expected [49, 3]",)),
    ("triangles-i64", "geometry.safetensors", _np("triangles", lambda a: a.astype(np.int64)),
     ("'triangles' has dtype I64, expected I32",)),
    ("mask-bool", "geometry.safetensors", _np("face_mask", lambda a: a.astype(bool)),
     ("'face_mask' has dtype BOOL, expected U8",)),
    ("uvs-f16", "geometry.safetensors", _np("uvs", lambda a: a.astype(np.float16)),
     ("'uvs' has dtype F16, expected F32",)),
    ("components-i32", "basis.safetensors", _np("components", lambda a: a.astype(np.int32)),
     ("'components' has dtype I32, expected F32",)),
    ("components-scalar", "basis.safetensors", _np("components", lambda a: np.array(a[0, 0, 0])),
     ("'components' has shape [], expected ['*', 49, 3]",)),
    ("s2g-bf16", "s2g.safetensors", _pt("head.weight", lambda t: t.to(torch.bfloat16)),
     ("s2g.safetensors: tensor 'head.weight' has dtype BF16, expected F32",)),
    ("emotion-u8", "emotion.safetensors", _pt("norm.weight", lambda t: t.to(torch.uint8)),
     ("emotion.safetensors: tensor 'norm.weight' has dtype U8, expected F32",)),
    ("encoder-f64", "encoder/model.safetensors", _pt("encoder.layer_norm.weight", lambda t: t.double()),
     ("tensor 'encoder.layer_norm.weight' has dtype F64, expected BF16/F16/F32",)),
    ("encoder-i8", "encoder/model.safetensors", _pt("masked_spec_embed", lambda t: t.to(torch.int8)),
     ("tensor 'masked_spec_embed' has dtype I8",)),
    ("encoder-shape", "encoder/model.safetensors", _pt("encoder.layer_norm.bias", lambda t: t[:8]),
     ("tensor 'encoder.layer_norm.bias' has shape [8], expected [16]",)),
]


@pytest.mark.parametrize("file,edit,expected", [c[1:] for c in TENSOR_DEFECTS], ids=[c[0] for c in TENSOR_DEFECTS])
def test_wrong_dtype_or_shape_is_named(tiny_subject, tmp_path, file, edit, expected):
    """Plausible mistakes (float64, int64 triangles, bool mask, bf16) and forged ranks."""
    edit_tensors(tiny_subject / file, edit)
    refused(tiny_subject, tmp_path, file, *expected)


NON_FINITE_SITES = [
    ("basis.safetensors", "components", (1, 7, 2)),
    ("geometry.safetensors", "uvs", (10, 1)),
    ("s2g.safetensors", "gru.weight_hh_l1", (3, 5)),
    ("emotion.safetensors", "emotion_head.weight", (0, 0)),
    ("encoder/model.safetensors", "feature_projection.projection.weight", (2, 2)),
]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("file,name,index", NON_FINITE_SITES, ids=[s[0].split(".")[0] for s in NON_FINITE_SITES])
def test_non_finite_weight_is_named(tiny_subject, tmp_path, file, name, index, bad):
    """One NaN or +-Inf anywhere (geometry, basis, S2GNet, emotion extractor, encoder)."""
    def poison(t: dict) -> None:
        t[name][index] = bad
    edit_tensors(tiny_subject / file, poison)
    refused(tiny_subject, tmp_path, f"{file}: tensor '{name}' contains NaN or Inf")


def test_non_finite_half_precision_encoder_weight_is_named(tiny_subject, tmp_path):
    """The encoder may ship float16 weights; a NaN among them is still found."""
    path = tiny_subject / "encoder" / "model.safetensors"
    tensors = {k: v.half() for k, v in load_torch(str(path)).items()}
    tensors["encoder.layer_norm.bias"][3] = float("nan")
    save_torch(tensors, str(path))
    refused(tiny_subject, tmp_path, "tensor 'encoder.layer_norm.bias' contains NaN or Inf")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_number_in_the_encoder_config_is_refused(tiny_subject, tmp_path, literal):
    """json.loads accepts NaN/Infinity (and 1e999 overflows to inf); a layer_norm_eps of
    NaN would make every feature NaN. Refused as invalid JSON."""
    path = tiny_subject / "encoder" / "config.json"
    text = path.read_text()
    assert '"layer_norm_eps": 1e-05' in text
    path.write_text(text.replace('"layer_norm_eps": 1e-05', f'"layer_norm_eps": {literal}'))
    refused(tiny_subject, tmp_path, "encoder/config.json: not valid JSON", literal.lstrip("-"))


# ---------------------------------------------------------------------------- absurd models


@pytest.mark.parametrize("key,value,expected", [
    ("s2g.config.layers", 10_000, f"s2g.config.layers must be at most {MAX_MODEL_LAYERS}, got 10000"),
    ("emotion_extractor.config.layers", 10_000,
     f"emotion_extractor.config.layers must be at most {MAX_MODEL_LAYERS}, got 10000"),
])
def test_manifest_describing_an_absurd_model_is_refused(tiny_subject, tmp_path, key, value, expected):
    """Validation builds the described model on the meta device; 10,000 layers used to
    take many seconds (a million: hours). Refused from the number alone."""
    set_key(tiny_subject, key, value)
    refused(tiny_subject, tmp_path, expected)


@pytest.mark.parametrize("changes,expected", [
    ({"num_hidden_layers": 2000}, f"num_hidden_layers must be at most {MAX_MODEL_LAYERS}, got 2000"),
    ({"conv_dim": [16] * 2000, "conv_kernel": [2] * 2000, "conv_stride": [1] * 2000},
     f"conv_dim must list at most {MAX_MODEL_LAYERS} layers, got 2000"),
    ({"hidden_size": 2**40}, "hidden_size must be at most 16384, got 1099511627776"),
], ids=["layers", "conv-layers", "hidden-size"])
def test_encoder_config_describing_an_absurd_model_is_refused(tiny_subject, tmp_path, changes, expected):
    """A HuBERT config with thousands of layers (slow to build even on the meta device)
    or a hidden_size HuBERT allocates for real (4 TiB here; 2**31 would be 8 GiB)."""
    edit_encoder_config(tiny_subject, **changes)
    refused(tiny_subject, tmp_path, "encoder/config.json", expected)


# ---------------------------------------------------------------------------- format versions


def test_newer_format_with_a_foreign_layout_reads_nothing_else(tiny_subject, tmp_path):
    """A format-7 manifest of unknown shape, next to a pickle: the one defect asks for an
    update; no other file is opened (the payload never runs)."""
    marker = tmp_path / "sentinel" / "pwned"
    pickle_file("torch-zip", marker, tiny_subject / "s2g.safetensors")
    write_manifest(tiny_subject, {"format": "emotalk3d-subject", "format_version": 7,
                                  "geometry": ["mesh.usd"], "s2g": "s2g.safetensors"})
    defects = refused(tiny_subject, tmp_path, "newer EmoTalk3D (format 7)", "update the extension")
    assert len(defects) == 1 and not marker.exists()


@pytest.mark.parametrize("value,expected", [
    (10**50, "newer EmoTalk3D (format 1" + "0" * 50 + ")"),
    (1.0, "format_version must be an integer, got number"),
    ("2", "format_version must be an integer, got string"),
    (True, "format_version must be an integer, got boolean"),
    (None, "format_version must be an integer, got null"),
    ([2], "format_version must be an integer, got array"),
    (-1, "format_version must be 1, got -1"),
])
def test_format_version_values(tiny_subject, tmp_path, value, expected):
    """Huge, fractional, textual, boolean, null, list and negative versions are named."""
    set_key(tiny_subject, "format_version", value)
    refused(tiny_subject, tmp_path, expected)


# ---------------------------------------------------------------------------- manifests of the wrong types

_WRONG = {
    "string": [0, 1.5, True, None, [], {}, ["x"]],
    "integer": ["3", 2.5, True, False, None, [], {}],
    "number": ["30", True, None, [], {"v": 1}],
    "boolean": ["false", 0, 1, None, []],
    "object": ["x", 0, 1.5, True, None, [], [{"a": 1}]],
    "array": ["neutral", 0, None, {}, True],
}


def _kind(value: Any) -> str:
    return {str: "string", bool: "boolean", int: "integer", float: "number", list: "array",
            dict: "object"}[type(value)]


def _checked_paths(manifest: dict, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted path, JSON kind) of every value the loader checks (not 'training')."""
    out = []
    for key, value in manifest.items():
        dotted = prefix + key
        out.append((dotted, _kind(value)))
        if isinstance(value, dict) and dotted != "training":
            out += _checked_paths(value, dotted + ".")
    return out


REQUIRED = ["format", "format_version", "name", "space", "emotions", "fps", "encoder", "geometry", "s2g",
            "emotion_extractor", "basis", "space.units", "space.up", "space.forward", "encoder.kind",
            "encoder.path", "geometry.file", "geometry.num_vertices", "geometry.num_triangles",
            "geometry.landmarks", "s2g.file", "s2g.config", "s2g.config.feature_dim", "s2g.config.num_vertices",
            "emotion_extractor.file", "emotion_extractor.config", "emotion_extractor.config.feature_dim",
            "basis.file", "basis.num_components", "basis.rms_mm", "basis.max_mm"]


@pytest.fixture(scope="module")
def bundle_for_manifests(tiny_subject_master: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One bundle copy whose manifest the hypothesis examples rewrite (and restore)."""
    return Path(shutil.copytree(tiny_subject_master, tmp_path_factory.mktemp("manifests") / "tiny"))


def _refused_manifest(bundle: Path, manifest: Any, *parts: str) -> None:
    original = (bundle / MANIFEST).read_text()
    try:
        write_manifest(bundle, manifest)
        refused(bundle, bundle.parent, *parts)
    finally:
        (bundle / MANIFEST).write_text(original)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_value_of_the_wrong_type_is_named(bundle_for_manifests, data):
    """Hypothesis: any checked manifest value (sections, strings, numbers, configs,
    landmarks) replaced by a value of another JSON type; the defect names its path."""
    manifest = read_manifest(bundle_for_manifests)
    paths = _checked_paths(manifest)
    dotted, kind = data.draw(st.sampled_from(paths), label="path")
    wrong = data.draw(st.sampled_from(_WRONG[kind]), label="value")
    obj = manifest
    *parents, last = dotted.split(".")
    for p in parents:
        obj = obj[p]
    obj[last] = wrong
    _refused_manifest(bundle_for_manifests, manifest, f"{dotted} must be")


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(dotted=st.sampled_from(REQUIRED))
def test_any_missing_required_key_is_named(bundle_for_manifests, dotted):
    """Hypothesis: any required key deleted; the defect says which one is missing."""
    manifest = read_manifest(bundle_for_manifests)
    obj = manifest
    *parents, last = dotted.split(".")
    for p in parents:
        obj = obj[p]
    del obj[last]
    _refused_manifest(bundle_for_manifests, manifest, f"missing key '{dotted}'")


@pytest.mark.parametrize("top", [[], ["subject"], "subject", 3, 2.5, None, True],
                         ids=["empty-list", "list", "string", "integer", "number", "null", "true"])
def test_manifest_that_is_not_an_object(tiny_subject, tmp_path, top):
    """A list, string, number, null or boolean at the top level."""
    write_manifest(tiny_subject, top)
    refused(tiny_subject, tmp_path, "subject.json: the top level must be a JSON object")


# ---------------------------------------------------------------------------- manifests that are not UTF-8 JSON


def _manifest_text(root: Path) -> str:
    return (root / MANIFEST).read_text()


MANIFEST_BYTES = [
    ("utf16-bom", lambda r: _manifest_text(r).encode("utf-16"), "not UTF-8 text"),
    ("latin1", lambda r: _manifest_text(r).replace('"tiny"', '"t\u00efny"').encode("latin-1"), "not UTF-8 text"),
    ("utf8-bom", lambda r: b"\xef\xbb\xbf" + _manifest_text(r).encode(), "not valid JSON"),
    ("nul-bytes", lambda r: _manifest_text(r).encode().replace(b'"tiny"', b'"ti\x00ny"'), "not valid JSON"),
    ("empty", lambda r: b"", "not valid JSON"),
    ("whitespace", lambda r: b" \n\t ", "not valid JSON"),
    ("trailing-garbage", lambda r: _manifest_text(r).encode() + b"\n}{", "not valid JSON"),
    ("binary", lambda r: bytes(range(256)) * 4, "not UTF-8 text"),
    ("javascript", lambda r: b"{format: 'emotalk3d-subject', // comment\n}", "not valid JSON"),
    ("deep-arrays", lambda r: b"[" * 100_000 + b"]" * 100_000, "cannot be read"),
    ("deep-objects", lambda r: b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "cannot be read"),
    ("5000-digit-number", lambda r: _manifest_text(r).replace('"num_vertices": 49', '"num_vertices": 1' + "0" * 5000)
     .encode(), "cannot be read"),
]


@pytest.mark.parametrize("make,expected", [c[1:] for c in MANIFEST_BYTES], ids=[c[0] for c in MANIFEST_BYTES])
def test_manifest_that_is_not_utf8_json(tiny_subject, tmp_path, make, expected):
    """UTF-16, Latin-1, a BOM, NUL bytes, empty, binary, JavaScript-ish, nested 100,000
    deep (recursion) or a 5,000-digit integer (int conversion limit): named, no traceback."""
    (tiny_subject / MANIFEST).write_bytes(make(tiny_subject))
    refused(tiny_subject, tmp_path, f"subject.json: {expected}")


def test_oversized_manifest_is_not_read(tiny_subject, tmp_path):
    """A manifest over 16 MiB (sparse here) is refused from its size alone."""
    with open(tiny_subject / MANIFEST, "r+b") as f:
        f.truncate(MAX_JSON_BYTES + 1)
    refused(tiny_subject, tmp_path, f"subject.json: too large ({MAX_JSON_BYTES + 1} bytes")


def test_manifest_naming_a_file_with_an_overlong_name(tiny_subject, tmp_path):
    """A 5,000-character file name used to escape as 'could not be checked: OSError ...
    File name too long'; now the key is named and the name shortened in the message."""
    set_key(tiny_subject, "s2g.file", "a" * 5000)
    defects = refused(tiny_subject, tmp_path, "s2g.file", "is too long")
    assert all(len(d) < 300 for d in defects)


def test_manifest_that_is_a_folder(tiny_subject, tmp_path):
    """A folder named subject.json is not read as a manifest."""
    (tiny_subject / MANIFEST).unlink()
    (tiny_subject / MANIFEST).mkdir()
    refused(tiny_subject, tmp_path, "subject.json: missing")


# ---------------------------------------------------------------------------- zip bombs and broken zips


def _patch_sizes(archive: Path, records: list[int], size: int) -> None:
    data = bytearray(archive.read_bytes())
    for at in records:
        data[at + 24: at + 28] = struct.pack("<I", size)
    archive.write_bytes(bytes(data))


def test_entries_whose_sizes_add_up_past_the_limit(tiny_subject, tmp_path):
    """Three entries of 0.75 GiB each (declared; 1 byte stored each): refused before
    anything is written, although no single entry is over the limit."""
    archive = zip_folder(tiny_subject, tmp_path / "bomb.zip", extra=[(f"pad{i}.bin", b"x") for i in range(3)])
    _patch_sizes(archive, central_records(archive.read_bytes())[-3:], 0x30000000)
    refused(archive, tmp_path, "bomb.zip: the zip unpacks to", "at most 2147483648 (2 GiB)")
    assert not (tmp_path / "cache").exists()


def test_an_entry_that_inflates_a_thousandfold_is_refused(tiny_subject, tmp_path):
    """A deflated 16 MiB of zeros (about 16 KB packed, honest sizes, far under 2 GiB): refused by
    its compression ratio before anything is written; deflated tensors of real numbers pass."""
    archive = zip_folder(tiny_subject, tmp_path / "zeros.zip", extra=[("padding.bin", bytes(16 << 20))])
    refused(archive, tmp_path, "zeros.zip: zip entry 'padding.bin': unpacks to 16777216 bytes", "100 times")
    assert not (tmp_path / "cache").exists()
    rng = __import__("numpy").random.default_rng(0)
    noisy = zip_folder(tiny_subject, tmp_path / "noisy.zip",
                       extra=[("notes.bin", rng.normal(size=1 << 19).astype("float32").tobytes())])
    assert validate_subject(noisy, cache_dir=tmp_path / "cache2") == []


def test_zip64_entry_declaring_exabytes(tiny_subject, tmp_path):
    """A ZIP64 extra field declaring 2**62 bytes for one entry: refused before extracting."""
    archive = zip_folder(tiny_subject, tmp_path / "bomb64.zip", extra=[("huge.bin", b"x")])
    data = bytearray(archive.read_bytes())
    at = central_records(bytes(data))[-1]
    name_len, extra_len, comment_len = struct.unpack("<HHH", data[at + 28: at + 34])
    assert extra_len == 0 and comment_len == 0
    zip64 = struct.pack("<HHQ", 0x0001, 8, 2**62)  # uncompressed size only
    data[at + 24: at + 28] = struct.pack("<I", 0xFFFFFFFF)
    data[at + 30: at + 32] = struct.pack("<H", len(zip64))
    end = at + 46 + name_len
    data[end:end] = zip64
    eocd = data.rfind(b"PK\x05\x06")
    cd_size = struct.unpack("<I", data[eocd + 12: eocd + 16])[0]
    data[eocd + 12: eocd + 16] = struct.pack("<I", cd_size + len(zip64))
    archive.write_bytes(bytes(data))
    with zipfile.ZipFile(archive) as zf:
        assert zf.getinfo("huge.bin").file_size == 2**62
    refused(archive, tmp_path, "bomb64.zip: the zip unpacks to 4611686018427", "2 GiB")
    assert not (tmp_path / "cache").exists()


def test_entry_larger_than_it_declares_is_cut_off(tiny_subject, tmp_path):
    """An entry declaring 10 bytes that inflates to 10 MB: extraction stops at the
    declared size, the zip is refused as damaged and the partial extraction removed."""
    archive = zip_folder(tiny_subject, tmp_path / "liar.zip", extra=[("pad.bin", bytes(10_000_000))])
    _patch_sizes(archive, central_records(archive.read_bytes())[-1:], 10)
    refused(archive, tmp_path, "liar.zip: damaged or unsupported zip")
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_unsupported_compression_and_encryption(tiny_subject, tmp_path):
    """Compression method 99 (AES) and the encryption flag: named, nothing extracted."""
    aes = zip_folder(tiny_subject, tmp_path / "aes.zip")
    data = bytearray(aes.read_bytes())
    for at in central_records(bytes(data)):
        data[at + 10: at + 12] = struct.pack("<H", 99)
    aes.write_bytes(bytes(data))
    refused(aes, tmp_path, "aes.zip: damaged or unsupported zip", "compression method")
    locked = zip_folder(tiny_subject, tmp_path / "locked.zip")
    data = bytearray(locked.read_bytes())
    data[central_records(bytes(data))[0] + 8] |= 0x1
    locked.write_bytes(bytes(data))
    refused(locked, tmp_path, "locked.zip: zip entry", "encrypted")
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_zip_of_a_zip_is_not_unpacked_twice(tiny_subject, tmp_path):
    """A bundle zip inside another zip: the outer one has no manifest; the inner zip is
    left as a file in the cache, never opened."""
    inner = zip_folder(tiny_subject, tmp_path / "inner.zip")
    outer = tmp_path / "outer.zip"
    with zipfile.ZipFile(outer, "w") as zf:
        zf.write(inner, "inner.zip")
    refused(outer, tmp_path, "outer.zip: no subject.json")
    assert not list((tmp_path / "cache").rglob(MANIFEST))


@pytest.mark.parametrize("window", [1, 4097, 10**12])
def test_emotion_window_outside_its_range_is_refused(tmp_path, window):
    """A huge attention window would make memory grow with the square of a long clip."""
    import json as _json

    from emotalk3d_addon.backend.errors import BundleError
    from emotalk3d_addon.backend.subject import MANIFEST, validate_subject
    from tests.backend.fixtures_subject import build_tiny_subject

    root = build_tiny_subject(tmp_path / "lib")
    manifest = _json.loads((root / MANIFEST).read_text())
    manifest["emotion_extractor"]["config"]["window"] = window
    (root / MANIFEST).write_text(_json.dumps(manifest))
    defects = validate_subject(root)
    assert any("emotion_extractor.config.window" in d and str(window) in d for d in defects), defects
