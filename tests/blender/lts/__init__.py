"""Scenario scripts run inside Blender 4.5 LTS and 4.2 LTS (bpy from PyPI in their own venvs),
and the one way the tests start them."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
LTS_VENVS = {"4.5": ".venv-bpy45", "4.2": ".venv-bpy42"}


def run_scenario(version: str, script: str, work: Path, marker: str, *args: str, timeout: float = 900,
                 **env: str) -> dict:
    """Run ``lts/<script>`` with Blender ``version``'s Python (``ROOT WORK *args`` as its
    arguments, ``work`` as its folder) and return the JSON of its last ``<marker> {...}`` line."""
    venv = LTS_VENVS[version]
    python = ROOT / venv / "bin" / "python"
    if not python.exists():
        pytest.fail(f"{python} is missing: run `make {venv[1:]}` (make test does)")
    environ = dict(os.environ, OMP_NUM_THREADS="1", BLENDER_USER_RESOURCES=str(work / "user"), **env)
    run = subprocess.run([str(python), str(Path(__file__).with_name(script)), str(ROOT), str(work), *args],
                         cwd=work, env=environ, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in run.stdout.splitlines() if line.startswith(marker + " ")]
    assert run.returncode == 0 and lines, (run.stdout[-3000:], run.stderr[-3000:])
    return json.loads(lines[-1][len(marker) + 1:])
