"""Where the backend keeps caches: ``$EMOTALK3D_CACHE_DIR`` or ``~/.cache/emotalk3d``."""
from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """The cache root (extracted zip bundles, speech features); nothing else is written there."""
    env = os.environ.get("EMOTALK3D_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "emotalk3d"
