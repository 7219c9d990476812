"""Render passes that cross between Blender and the worker without a copy: one shared,
memory-mapped file per frame size, mapped once by each side.

The file (in the worker client's RAM-backed folder, ``/dev/shm`` on Linux) holds the three
passes back to back, float32, C order, rows as the request asks:

    combined (H, W, 4) straight RGBA | depth (H, W) camera z, metres | face_matte (H, W)

Blender creates and sizes it; the worker only maps an existing file of exactly that size
(``attach``) and writes the layer kernel's output into it; Blender hands views of its own
mapping to ``foreach_set``. numpy only (the Blender side imports this).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

LAYOUT = (("combined", 4), ("depth", 1), ("face_matte", 1))
CHANNELS = sum(c for _, c in LAYOUT)
NAME = re.compile(r"passes-\d+x\d+-[0-9a-f]+\.f32")


def nbytes(width: int, height: int) -> int:
    """Bytes of the passes of one ``width`` x ``height`` frame."""
    return int(width) * int(height) * CHANNELS * 4


def views(mapping: np.ndarray, width: int, height: int) -> dict[str, np.ndarray]:
    """The passes as views of ``mapping`` (a flat float32 array of ``nbytes / 4`` values)."""
    out, start = {}, 0
    for name, channels in LAYOUT:
        size = width * height * channels
        block = mapping[start:start + size]
        out[name] = block.reshape((height, width, channels) if channels > 1 else (height, width))
        start += size
    return out


def create(folder: Path, width: int, height: int) -> tuple[Path, np.ndarray]:
    """A new buffer file for ``width`` x ``height`` in ``folder``, mapped read-write:
    (its path, the flat float32 mapping)."""
    path = Path(folder) / f"passes-{width}x{height}-{os.urandom(6).hex()}.f32"
    with open(path, "wb") as f:
        f.truncate(nbytes(width, height))
    return path, np.memmap(path, np.float32, "r+", shape=(nbytes(width, height) // 4,))


def attach(path: str | Path, width: int, height: int) -> np.ndarray:
    """The worker's read-write mapping of an existing buffer file; ValueError when ``path``
    is not a passes buffer of exactly this size (the worker never creates or grows one)."""
    path = Path(path)
    if not NAME.fullmatch(path.name):
        raise ValueError(f"{path.name!r} is not a passes buffer")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ValueError(f"passes buffer {path} cannot be opened: {exc}") from None
    if size != nbytes(width, height):
        raise ValueError(f"passes buffer {path.name} holds {size} bytes, a {width}x{height} frame needs "
                         f"{nbytes(width, height)}")
    return np.memmap(path, np.float32, "r+", shape=(size // 4,))
