"""``make test-installer`` (opt-in, not part of ``make test``: it downloads the backend's
packages, 0.5 GB from PyTorch's CPU index or 5.4 GB of CUDA wheels from PyPI without it).

Preferences > Install Backend for real, against the package index: the built extension zip
is installed into a temporary Blender user folder (``BLENDER_USER_RESOURCES``), its Install
Backend operator builds the backend environment in the extension's user folder, and one
generation on the demo subject then runs in a worker started from that new environment.
Prints the install's time and size, and fails when any step does.

    python tests/installer/run_installer.py        # with the bpy environment's Python
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, os, sys, time
import bpy
zip_path, audio = sys.argv[1:3]
out = {}
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.context.preferences.system.use_online_access = True
bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
module = "bl_ext.user_default.emotalk3d"
install = sys.modules[module + ".bridge.install"]
settings_mod = sys.modules[module + ".bridge.settings"]
worker_client = sys.modules[module + ".bridge.worker_client"]
env_dir = settings_mod.user_env_dir()
out["env_dir"] = str(env_dir)
started = time.monotonic()
ret = bpy.ops.emotalk3d.install_backend('EXEC_DEFAULT')
assert ret in ({'FINISHED'}, {'RUNNING_MODAL'})
last = ""
while install.STATUS.get("running"):
    message = str(install.STATUS.get("message"))
    if message != last:
        print(f"[{time.monotonic() - started:6.0f} s] {message}", flush=True)
        last = message
    time.sleep(0.5)
out["install_s"] = round(time.monotonic() - started, 1)
out["ok"] = install.STATUS.get("ok")
out["message"] = install.STATUS.get("message")
if not out["ok"]:
    log = install.STATUS.get("log")
    out["log_tail"] = open(log, encoding="utf-8").read()[-3000:] if log and os.path.exists(log) else ""
    print("RESULT " + json.dumps(out))
    raise SystemExit(1)
out["size_mb"] = round(sum(p.stat().st_size for p in env_dir.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6)
prefs = bpy.context.preferences.addons[module].preferences
out["python"] = prefs_python = settings_mod.Settings.from_prefs(prefs).python_path()
s = bpy.context.scene.emotalk3d
s.subject = "demo"
s.audio_file, s.audio_start = audio, 1
bpy.context.scene.render.fps = 25
t = time.monotonic()
out["generate"] = sorted(bpy.ops.emotalk3d.generate())
out["generate_s"] = round(time.monotonic() - t, 1)
act = s.last_action
out["frames"] = act.emotalk3d.num_frames if act else 0
client = worker_client.current_client()
out["worker_python"] = client.python if client else None
out["worker_torch"] = (client.info or {}).get("torch") if client else None
worker_client.shutdown_client()
print("RESULT " + json.dumps(out))
"""


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="emotalk3d-installer-"))
    build = subprocess.run([sys.executable, "-m", "emotalk3d_addon", "build", "--out", str(work / "dist")], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    if build.returncode != 0:
        print(build.stdout + build.stderr)
        return 1
    zip_path = build.stdout.strip().splitlines()[-1]
    audio = ROOT / "emotalk3d_addon" / "subjects" / "demo" / "demo_clip.wav"
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(work / "user"))
    env.pop("EMOTALK3D_PYTHON", None)
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, zip_path, str(audio)], env=env, cwd=work,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    result = None
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
        else:
            print(line.rstrip(), flush=True)
    code = proc.wait()
    print(json.dumps(result, indent=1))
    ok = (code == 0 and result is not None and result.get("ok") and result.get("generate") == ["FINISHED"]
          and result.get("frames", 0) > 0 and str(result.get("worker_python", "")).startswith(result["env_dir"]))
    print(f"installer test {'passed' if ok else 'FAILED'} in {time.monotonic() - started:.0f} s "
          f"(install {result and result.get('install_s')} s, environment {result and result.get('size_mb')} MB)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
