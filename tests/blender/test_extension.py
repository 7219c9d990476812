"""The built extension zip: Blender's own build, install, enable, use, disable, uninstall.

Runs in a subprocess with BLENDER_USER_RESOURCES in a temporary folder, so the install
touches nothing outside it; that process is Blender, and torch must never load there.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

INSTALL_SCRIPT = r"""
import json, os, sys, time
import bpy, addon_utils
zip_path, subject, audio = sys.argv[1:4]
out = {}
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
module = "bl_ext.user_default.emotalk3d"
out["enabled"] = module in bpy.context.preferences.addons
out["ops"] = hasattr(bpy.ops.emotalk3d, "generate") and "generate" in dir(bpy.ops.emotalk3d)
installed = sys.modules[module]
out["installed_dir"] = os.path.dirname(installed.__file__)
prefs = bpy.context.preferences.addons[module].preferences
prefs.python = sys.executable
prefs.libraries.add().path = os.path.dirname(subject)
# the subject appears in the picker by its bare name from the library folder
s = bpy.context.scene.emotalk3d
items = [i.name for i in s.bl_rna.properties["subject_choice"].enum_items]
s.subject_choice = "S0"
out["subject_ref"] = s.subject
s.audio_file, s.audio_start = audio, 1
bpy.context.scene.render.fps = 25
out["generate"] = sorted(bpy.ops.emotalk3d.generate())
act = s.last_action
out["action"] = act.name if act else None
out["frames"] = act.emotalk3d.num_frames if act else 0
client = sys.modules[module + ".bridge.worker_client"].current_client()
out["worker_package_dir"] = str(client.package_dir)
pid = client.pid
out["torch_in_blender"] = "torch" in sys.modules
out["backend_models_in_blender"] = [m for m in sys.modules if m.endswith((".performance.runtime", ".performance.service", ".s2gnet", ".speech.encoder"))]
bpy.ops.preferences.addon_disable(module=module)
out["disabled"] = module not in bpy.context.preferences.addons and not hasattr(bpy.types.Scene, "emotalk3d")
try:
    os.kill(pid, 0)
    time.sleep(1)
    os.kill(pid, 0)
    out["worker_gone"] = False
except ProcessLookupError:
    out["worker_gone"] = True
repo_index = [r.module for r in bpy.context.preferences.extensions.repos].index("user_default")
bpy.ops.extensions.package_uninstall(repo_index=repo_index, pkg_id="emotalk3d")
out["uninstalled"] = not os.path.exists(out["installed_dir"])
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "emotalk3d_addon", "build", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return Path(proc.stdout.strip().splitlines()[-1])


def test_manifest_is_valid_for_blender(built_zip):
    manifest = tomllib.loads((ROOT / "emotalk3d_addon" / "blender_manifest.toml").read_text())
    assert manifest["id"] == "emotalk3d" and manifest["schema_version"] == "1.0.0"
    assert manifest["blender_version_min"] == "4.2.0" and manifest["type"] == "add-on"
    assert set(manifest["permissions"]) == {"files", "network"}
    assert all(len(r) <= 64 and not r.endswith(".") for r in manifest["permissions"].values())
    import bpy

    script = Path(bpy.utils.system_resource('SCRIPTS')) / "addons_core/bl_pkg/cli/blender_ext.py"
    proc = subprocess.run([sys.executable, str(script), "validate", str(ROOT / "emotalk3d_addon")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_zip_holds_the_extension_and_nothing_else(built_zip):
    names = zipfile.ZipFile(built_zip).namelist()
    assert {"blender_manifest.toml", "__init__.py", "backend/tools/worker.py", "backend/performance/runtime.py",
            "bridge/worker_client.py", "operators/generate.py", "panels/__init__.py"} <= set(names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or n.startswith(("tests/", ".venv"))]


def test_install_enable_use_disable_uninstall(built_zip, trained_subject, speech, tmp_path):
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "blender-user"))
    proc = subprocess.run([sys.executable, "-c", INSTALL_SCRIPT, str(built_zip), str(trained_subject), str(speech)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and line, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(line[0][7:])
    installed = Path(out["installed_dir"])
    assert out["enabled"] and out["ops"]
    assert installed.is_relative_to(tmp_path / "blender-user")          # installed where we said
    assert out["subject_ref"] == trained_subject.name                  # picked from the library folder
    assert out["generate"] == ["FINISHED"] and out["action"] == speech.stem and out["frames"] == 40
    assert Path(out["worker_package_dir"]) == installed                 # the worker ran the installed backend
    assert out["torch_in_blender"] is False and out["backend_models_in_blender"] == []
    assert out["disabled"] and out["worker_gone"] and out["uninstalled"]
