"""Shared fixtures for the backend tests (generic; add more below)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .fixtures_subject import build_tiny_subject


@pytest.fixture(scope="session")
def tiny_subject_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid tiny subject bundle folder, built once per session: do not modify it."""
    return build_tiny_subject(tmp_path_factory.mktemp("tiny_subject"))


@pytest.fixture
def tiny_subject(tiny_subject_master: Path, tmp_path: Path) -> Path:
    """A fresh copy of the tiny subject bundle folder (``tmp_path/tiny``), free to modify."""
    return Path(shutil.copytree(tiny_subject_master, tmp_path / "tiny"))
