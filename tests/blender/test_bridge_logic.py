"""Pure logic of the Blender side (no scene needed): frame rates, library scanning, install pins."""
from __future__ import annotations

import json
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from emotalk3d_addon.bridge import install, subjects, timing
from emotalk3d_addon.bridge.worker_client import venv_python

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("fps, base, want", [
    (24, 1.001, Fraction(24000, 1001)), (30, 1.001, Fraction(30000, 1001)), (60, 1.001, Fraction(60000, 1001)),
    (24, float(np.float32(1.001)), Fraction(24000, 1001)),       # Blender stores fps_base as float32
    (25, 1.0, Fraction(25)), (30, 1.0, Fraction(30)), (120, 1.0, Fraction(120))])
def test_effective_fps(fps, base, want):
    assert timing.effective_fps(fps, base) == want


@pytest.mark.parametrize("typed, want", [("23.976", Fraction(24000, 1001)), ("29.97", Fraction(30000, 1001)),
                                         ("25", Fraction(25)), (59.94, Fraction(60000, 1001))])
def test_typed_rates_and_scene_settings(typed, want):
    rate = timing.parse_rate(typed)
    assert rate == want
    fps, base = timing.scene_rate_settings(rate)
    assert timing.effective_fps(fps, base) == want


def test_frame_alignment():
    assert timing.performance_frames(101, 3) == [101.0, 102.0, 103.0]
    assert timing.to_performance_frame(130, 101) == 29.0


def test_library_scan_lists_bundles_and_always_the_bundled_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("EMOTALK3D_SUBJECT_PATH", raising=False)
    lib = tmp_path / "lib"
    (lib / "anna").mkdir(parents=True)
    (lib / "anna" / "subject.json").write_text(json.dumps({"name": "Anna", "emotions": ["neutral", "happy"],
                                                           "geometry": {"num_vertices": 5023},
                                                           "basis": {"num_components": 32}}))
    (lib / "notes").mkdir()                        # no manifest: not a subject
    import zipfile

    with zipfile.ZipFile(lib / "ben.zip", "w") as zf:
        zf.writestr("ben/subject.json", json.dumps({"name": "Ben"}))
    dirs = subjects.library_dirs([str(lib)])
    assert dirs == [lib, subjects.BUNDLED_DIR]
    entries = subjects.scan(dirs)
    assert [(e.name, e.ref) for e in entries if e.library == lib] == [("Anna", "anna"), ("Ben", "ben")]
    anna = entries[0]
    assert anna.emotions == ["neutral", "happy"] and anna.num_vertices == 5023 and anna.num_components == 32
    assert subjects.resolve("anna", dirs) == lib / "anna" and subjects.resolve("ben", dirs) == lib / "ben.zip"
    assert subjects.resolve("nobody", dirs) is None and subjects.resolve(str(lib / "anna"), []) == lib / "anna"


def test_install_pins_match_the_project_requirements(tmp_path):
    req = {m.group(1).lower(): m.group(2) for m in
           re.finditer(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", (ROOT / "requirements.txt").read_text(), re.M)}
    for pin in install.PINNED:
        name, version = pin.split("==")
        assert req[name.lower()] == version, pin
    assert {"torch", "transformers", "numpy", "safetensors", "soundfile"} <= {p.split("==")[0] for p in install.PINNED}
    cmds = install.install_commands("/blender/python3.11", tmp_path / "env")
    assert cmds[0][:3] == ["/blender/python3.11", "-m", "venv"]
    assert cmds[-1][0] == str(venv_python(tmp_path / "env")) and cmds[-1][-len(install.PINNED):] == list(install.PINNED)
