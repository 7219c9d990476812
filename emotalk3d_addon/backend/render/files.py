"""Files of rendered frames: rgba_NNNN.png, depth_NNNN.npy, matte_NNNN.png."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError


def parse_frames(spec: str | None, num_frames: int) -> range:
    """``A-B`` (inclusive, 0-based) or ``A`` -> a range within [0, num_frames)."""
    if spec is None:
        return range(num_frames)
    try:
        a, _, b = spec.partition("-")
        first, last = int(a), int(b) if b else int(a)
    except ValueError:
        raise InputError(f"--frames must be A-B or A (0-based frame numbers), got {spec!r}") from None
    if not 0 <= first <= last < num_frames:
        raise InputError(f"--frames {spec} is outside the track's frames 0-{num_frames - 1}")
    return range(first, last + 1)


def to_png(image: np.ndarray, path: Path) -> None:
    """(H, W) or (H, W, C) float in [0, 1] -> 8-bit PNG."""
    from PIL import Image

    data = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    Image.fromarray(data).save(path)


def write_layers(layers: dict[str, np.ndarray], out: Path, frame: int) -> None:
    """Write one frame's compositor layers (``layers.frame_layers``, rows top-down) under ``out``:
    straight-alpha RGBA, depth in metres (BACKGROUND_DEPTH where empty) and the face matte."""
    to_png(layers["combined"], out / f"rgba_{frame:04d}.png")
    np.save(out / f"depth_{frame:04d}.npy", layers["depth"].astype(np.float32))
    to_png(layers["face_matte"], out / f"matte_{frame:04d}.png")
