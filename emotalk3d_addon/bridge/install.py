"""'Install backend': a virtual environment with the backend's pinned packages.

Built with the Python Blender runs on (``sys.executable`` in Blender is its bundled
interpreter) inside the extension's user folder, so it survives extension updates and is
removed with the extension's user data. What it downloads (the PyTorch build for this
machine, the pip commands) is ``install_plan``'s. This is the only use of the network (the
manifest's ``network`` permission); it is refused when Blender's "Allow Online Access" is off.

The new environment is built beside the current one (``<env>.new``) and takes its place
only once every required step succeeded, so a failed or cancelled install leaves the previous
backend working. Creating the environment falls back from ``venv`` to ``virtualenv`` to
``venv --without-pip`` plus ``ensurepip``, for Pythons whose ``venv`` cannot bootstrap pip.
Progress (the step, and pip's latest line: which package it collects or downloads) is in
``STATUS`` for the preferences panel; ``cancel`` stops the running step. On Windows no step
opens a console window, and a folder too deep for the 260-character path limit is refused
before anything is downloaded (``long_path_problem``).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, Union

from .install_plan import InstallPlan, no_window, plan_for_this_machine
from .worker_client import venv_python

# Windows' path limit without long paths, and how far below the environment folder the
# deepest file of the backend's packages lies (torch's headers and CUDA kernel sources).
MAX_PATH = 260
DEEPEST_FILE_CHARS = 150

STATUS: dict[str, object] = {"running": False, "message": "", "ok": None, "log": "", "step": 0, "steps": 0}
_cancel = threading.Event()


@dataclass(frozen=True)
class Step:
    """One install step: its alternatives are tried in order, each a list of commands that must
    all succeed; ``failure`` says what it means when none did; an optional step's failure is
    logged and the install goes on."""

    alternatives: tuple[tuple[tuple[str, ...], ...], ...]
    failure: str = ""
    optional: bool = False


Command = Union[Sequence[str], Step]


def staging_dir(env_dir: Path) -> Path:
    """Where the next environment is built before it replaces ``env_dir``."""
    env_dir = Path(env_dir)
    return env_dir.with_name(env_dir.name + ".new")


def create_env_step(base_python: str, build: Path) -> Step:
    """Create the environment in ``build``: ``venv``; else ``virtualenv`` (when the base Python
    has it); else ``venv`` without pip, then pip from ``ensurepip``."""
    py = str(venv_python(build))
    return Step((((base_python, "-m", "venv", "--clear", str(build)),),
                 ((base_python, "-m", "virtualenv", "--clear", str(build)),),
                 ((base_python, "-m", "venv", "--clear", "--without-pip", str(build)),
                  (py, "-m", "ensurepip", "--upgrade", "--default-pip"))),
                failure=f"{base_python} could not create a virtual environment (venv, virtualenv and venv "
                        "without pip + ensurepip all failed); make one yourself and set it as the Backend Python")


def install_commands(base_python: str, env_dir: Path, plan: InstallPlan | None = None) -> list[Command]:
    """The steps, in order: create the environment (in ``staging_dir(env_dir)``), upgrade pip,
    then the plan's pip commands (``plan_for_this_machine()`` by default; its optional ones may
    fail without failing the install)."""
    plan = plan or plan_for_this_machine()
    build = staging_dir(env_dir)
    py = str(venv_python(build))
    steps: list[Command] = [create_env_step(base_python, build),
                            [py, "-m", "pip", "install", "--disable-pip-version-check", "--upgrade", "pip"]]
    steps += [[py, *command] for command in plan.commands]
    steps += [Step((((py, *command),),), optional=True) for command in plan.optional_commands]
    return steps


def windows_long_paths_enabled() -> bool:
    """HKLM\\SYSTEM\\CurrentControlSet\\Control\\FileSystem\\LongPathsEnabled is 1 (False when unreadable)."""
    try:
        import winreg

        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"SYSTEM\CurrentControlSet\Control\FileSystem") as key:
            value, _ = winreg.QueryValueEx(key, "LongPathsEnabled")
        return int(value) == 1
    except (ImportError, OSError, TypeError, ValueError):
        return False


def long_path_problem(env_dir: Path, platform: str | None = None,
                      long_paths_enabled: Callable[[], bool] = windows_long_paths_enabled) -> str | None:
    """Why the environment cannot be built in ``env_dir`` on Windows (its deepest file would pass
    the 260-character limit and long paths are off), else None."""
    if (platform or sys.platform) != "win32":
        return None
    build = str(staging_dir(env_dir))
    deepest = len(build) + DEEPEST_FILE_CHARS
    if deepest < MAX_PATH or long_paths_enabled():
        return None
    return (f"The backend's folder is too deep for Windows' {MAX_PATH}-character path limit: PyTorch's files "
            f"would reach about {deepest} characters under {build}. Turn on long paths (the group policy "
            f"'Enable Win32 long paths', or LongPathsEnabled = 1 under HKLM\\SYSTEM\\CurrentControlSet\\"
            f"Control\\FileSystem), or make an environment in a shorter folder and set it as the Backend Python")


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


def _run_command(cmd: Sequence[str], n: int, steps: int, log) -> int | None:
    """Run one command, its output into ``log``; its exit code, or None when cancelled."""
    log.write("$ " + " ".join(cmd) + "\n")
    log.flush()
    try:
        proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                **no_window())
    except OSError as exc:                  # no such interpreter: this command failed
        log.write(f"could not start: {exc}\n")
        return 127

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


def _run_step(step: Step, n: int, steps: int, log) -> int | None:
    """The first alternative whose commands all succeed: 0; else the last exit code; None when
    cancelled."""
    code = 0
    for i, commands in enumerate(step.alternatives):
        if i:
            log.write("(trying the next way)\n")
        for cmd in commands:
            code = _run_command(cmd, n, steps, log)
            if code != 0:
                break
        if code is None or code == 0:
            return code
    return code


def _as_step(command: Command) -> Step:
    return command if isinstance(command, Step) else Step(((tuple(command),),))


def run_install(commands: Sequence[Command], log_path: Path, env_dir: Path,
                before_replace=lambda: None) -> bool:
    """Run the steps (commands or ``Step``s) one after the other, logging to ``log_path``, then put
    the new environment in place of ``env_dir`` (``before_replace`` first: stop the worker that
    runs from the old one); updates STATUS. False (previous backend kept) on a failed required
    step, an error or a cancel."""
    env_dir = Path(env_dir)
    build = staging_dir(env_dir)
    started = time.monotonic()
    steps = [_as_step(c) for c in commands]
    STATUS.update(running=True, ok=None, message="Installing the backend...", log=str(log_path), step=0,
                  steps=len(steps))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    skipped: list[int] = []
    try:
        shutil.rmtree(build, ignore_errors=True)
        with open(log_path, "w", encoding="utf-8") as log:
            for n, step in enumerate(steps, 1):
                STATUS.update(step=n, message=f"Installing the backend: step {n} of {len(steps)}")
                code = _run_step(step, n, len(steps), log)
                if code is None:
                    return _abandon(build, "Backend install cancelled; the previous backend is unchanged")
                if code != 0 and step.optional:
                    log.write(f"(optional step {n} failed with exit {code}; the install goes on)\n")
                    skipped.append(n)
                elif code != 0:
                    why = f": {step.failure}" if step.failure else ""
                    return _abandon(build, f"Backend install failed at step {n} (exit {code}){why}; the previous "
                                           f"backend is unchanged; log: {log_path}")
        if _cancel.is_set():
            return _abandon(build, "Backend install cancelled; the previous backend is unchanged")
        before_replace()
        _replace(env_dir, build)
        extra = f"; optional step {', '.join(map(str, skipped))} failed, see {log_path}" if skipped else ""
        STATUS.update(ok=True, message=f"Backend installed in {time.monotonic() - started:.0f} s "
                                       f"({_size_mb(env_dir):.0f} MB): {env_dir}{extra}")
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


def start_install(commands: Sequence[Command], log_path: Path, env_dir: Path,
                  before_replace=lambda: None) -> threading.Thread:
    _cancel.clear()
    STATUS.update(running=True, ok=None, message="Installing the backend...")
    thread = threading.Thread(target=run_install, args=(commands, log_path, env_dir, before_replace),
                              name="emotalk3d-install", daemon=True)
    thread.start()
    return thread
