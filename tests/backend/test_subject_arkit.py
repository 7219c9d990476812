"""The optional ARKit section of a subject bundle: it round-trips through save and load, and
a bundle whose section lies (wrong names, a faked absent shape, absent flags that disagree,
the wrong vertex count) is refused with the defect named."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from emotalk3d_addon.backend.arkit.basis import ARKIT_FILE, ArkitBasis
from emotalk3d_addon.backend.arkit.names import ARKIT_NAMES
from emotalk3d_addon.backend.subject import load_subject, resolve_subject, validate_subject


@pytest.fixture(scope="module")
def arkit_bundle(tmp_path_factory):
    subject = load_subject(resolve_subject("demo"))
    rng = np.random.default_rng(0)
    present = np.zeros(52, bool)
    present[[ARKIT_NAMES.index(n) for n in ("jawOpen", "mouthClose", "browInnerUp")]] = True
    shapes = np.zeros((52, subject.geometry.num_vertices, 3), np.float32)
    shapes[present] = rng.normal(size=(3, subject.geometry.num_vertices, 3)) * 1e-3
    path = tmp_path_factory.mktemp("arkit") / "subject"
    dataclasses.replace(subject, arkit=ArkitBasis(shapes, present)).save(path)
    return path, shapes, present


def test_the_section_round_trips(arkit_bundle):
    path, shapes, present = arkit_bundle
    loaded = load_subject(path)
    np.testing.assert_array_equal(loaded.arkit.shapes, shapes)
    np.testing.assert_array_equal(loaded.arkit.present, present)
    manifest = json.loads((path / "subject.json").read_text())
    assert manifest["arkit"]["names"] == list(ARKIT_NAMES) and len(manifest["arkit"]["absent"]) == 49


def _broken(arkit_bundle, tmp_path, edit_manifest=None, edit_tensors=None):
    import shutil

    src = arkit_bundle[0]
    dst = tmp_path / "broken"
    shutil.copytree(src, dst)
    if edit_manifest:
        m = json.loads((dst / "subject.json").read_text())
        edit_manifest(m["arkit"])
        (dst / "subject.json").write_text(json.dumps(m))
    if edit_tensors:
        t = load_file(str(dst / ARKIT_FILE))
        edit_tensors(t)
        save_file(t, str(dst / ARKIT_FILE))
    return validate_subject(dst)


def test_a_section_that_lies_is_refused_by_name(arkit_bundle, tmp_path):
    def swap(a):
        a["names"][0], a["names"][1] = a["names"][1], a["names"][0]

    defects = _broken(arkit_bundle, tmp_path / "1", edit_manifest=swap)
    assert any("Apple's order" in d for d in defects), defects

    def fake(t):
        t["shapes"][ARKIT_NAMES.index("tongueOut"), 0, 0] = 0.01

    defects = _broken(arkit_bundle, tmp_path / "2", edit_tensors=fake)
    assert any("tongueOut" in d and "all zero" in d for d in defects), defects
    defects = _broken(arkit_bundle, tmp_path / "3", edit_manifest=lambda a: a["absent"].remove("tongueOut"))
    assert any("arkit.absent does not match" in d and "tongueOut" in d for d in defects), defects

    def short(t):
        t["shapes"] = np.ascontiguousarray(t["shapes"][:, :-1])

    defects = _broken(arkit_bundle, tmp_path / "4", edit_tensors=short)
    assert any("arkit.safetensors" in d and "shapes" in d for d in defects), defects
