"""Pure logic of the Blender side (no scene needed): frame rates, library scanning, install pins."""
from __future__ import annotations

import json
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from emotalk3d_addon.bridge import install, install_plan, subjects, timing
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


@pytest.mark.parametrize("ref, shown", [
    ("C:\\Users\\ana\\subjects\\kate", "kate"), ("C:\\Users\\ana\\subjects\\kate\\", "kate"),
    ("C:/Users/ana/subjects/kate.zip", "kate.zip"), ("D:kate", "kate"),
    ("/home/ana/subjects/kate", "kate"), ("/home/ana/subjects/kate//", "kate"), ("~/subjects/kate", "kate"),
    ("\\\\studio\\heads\\kate", "kate"), ("//studio/heads/kate/", "kate"),
    ("\\\\studio\\heads\\", "\\\\studio\\heads"),          # a share's root shows whole
    ("C:\\", "C:"), ("kate", "kate"), ("", ""),
])
def test_a_subject_path_shows_its_last_part_whichever_separators_it_uses(ref, shown):
    assert subjects.label(ref) == shown


def test_a_windows_path_is_a_path_not_a_library_name(tmp_path):
    lib = tmp_path / "lib"
    (lib / "kate").mkdir(parents=True)
    assert subjects.is_path("C:\\Users\\ana\\kate") and subjects.is_path("/home/ana/kate")
    assert not subjects.is_path("kate") and subjects.resolve("kate", [lib]) == lib / "kate"
    assert subjects.resolve("C:\\Users\\ana\\kate", [lib]) is None    # not looked up as a name in the libraries
    missing = subjects.describe(str(lib / "kate"), [])
    assert missing.error == "no subject.json" and missing.name == "kate"


def test_install_pins_match_the_project_requirements(tmp_path):
    req = {m.group(1).lower(): m.group(2) for m in
           re.finditer(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", (ROOT / "requirements.txt").read_text(), re.M)}
    plan = install_plan.plan_for("linux_x86_64", False)
    pins = [a for c in plan.commands for a in c if "==" in a]
    for pin in pins:
        name, version = pin.split("==")
        assert req[name.lower()] == version.split("+")[0], pin
    assert {"torch", "torchaudio", "transformers", "numpy", "safetensors", "soundfile"} <= {p.split("==")[0] for p in pins}
    cmds = install.install_commands("/blender/python3.11", tmp_path / "env", plan)
    assert cmds[0].alternatives[0][0][:3] == ("/blender/python3.11", "-m", "venv")
    # built beside the current environment, which it replaces only at the end
    assert cmds[0].alternatives[0][0][-1] == str(install.staging_dir(tmp_path / "env"))
    assert cmds[-1][0] == str(venv_python(install.staging_dir(tmp_path / "env")))
    assert cmds[-1][1:] == list(plan.commands[-1])


def _previous_backend(tmp_path):
    env = tmp_path / "backend-env"
    env.mkdir()
    (env / "marker").write_text("previous")
    return env


def _step(code: str) -> list[str]:
    import sys

    return [sys.executable, "-c", code]


def test_an_install_replaces_the_backend_only_when_every_step_succeeded(tmp_path):
    env = _previous_backend(tmp_path)
    build = install.staging_dir(env)
    make = _step(f"import pathlib; p = pathlib.Path({str(build)!r}); p.mkdir(); (p / 'marker').write_text('new'); "
                 "print('Collecting torch==2.11.0')")
    replaced = []
    assert install.run_install([make, _step("print('Successfully installed torch-2.11.0')")], tmp_path / "log.txt",
                               env, before_replace=lambda: replaced.append(True))
    assert (env / "marker").read_text() == "new" and not build.exists() and replaced == [True]
    assert install.STATUS["ok"] is True and "Backend installed" in install.STATUS["message"]
    assert "Collecting torch" in (tmp_path / "log.txt").read_text()
    assert not env.with_name(env.name + ".old").exists()


def test_a_failed_install_leaves_the_previous_backend(tmp_path):
    env = _previous_backend(tmp_path)
    build = install.staging_dir(env)
    make = _step(f"import pathlib; pathlib.Path({str(build)!r}).mkdir()")
    assert not install.run_install([make, _step("raise SystemExit(3)")], tmp_path / "log.txt", env)
    assert (env / "marker").read_text() == "previous" and not build.exists()
    assert install.STATUS["ok"] is False and "step 2" in install.STATUS["message"]
    assert "unchanged" in install.STATUS["message"] and not install.STATUS["running"]


def test_a_cancelled_install_stops_its_step_and_leaves_the_previous_backend(tmp_path):
    import time

    env = _previous_backend(tmp_path)
    build = install.staging_dir(env)
    make = _step(f"import pathlib; pathlib.Path({str(build)!r}).mkdir()")
    thread = install.start_install([make, _step("import time; print('Downloading torch', flush=True); "
                                                "time.sleep(60)")], tmp_path / "log.txt", env)
    deadline = time.monotonic() + 30
    while "Downloading torch" not in str(install.STATUS["message"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "step 2 of 2: Downloading torch" in str(install.STATUS["message"])      # progress shows the package
    started = time.monotonic()
    install.cancel()
    thread.join(30)
    assert not thread.is_alive() and time.monotonic() - started < 10       # the sleeping step was killed
    assert (env / "marker").read_text() == "previous" and not build.exists()
    assert install.STATUS["ok"] is False and "cancelled" in install.STATUS["message"]
