"""Multi-view part of a dataset: calibrated cameras and per-frame RGBA images."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import DatasetError, InputError
from ..protocol.messages import CameraSpec
from ..raster.camera import Camera
from ..render.views import raster_camera
from .layout import Sequence


@dataclass(frozen=True)
class NamedCamera:
    name: str
    camera: Camera

    def as_dict(self) -> dict:
        c = self.camera
        return {"name": self.name, "width": c.width, "height": c.height, "K": c.K.tolist(),
                "world_to_camera": c.world_to_camera.tolist()}


def load_cameras(root: str | Path) -> list[NamedCamera]:
    """cameras.json -> cameras (OpenCV axes, world = subject space)."""
    path = Path(root) / "cameras.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        cameras = [NamedCamera(str(c["name"]), raster_camera(CameraSpec.from_dict(c))) for c in data["cameras"]]
    except FileNotFoundError:
        raise DatasetError(f"dataset file missing: {path} (the appearance stages need cameras)") from None
    except (OSError, ValueError, KeyError, TypeError, InputError) as exc:
        raise DatasetError(f"{path} is not a valid camera file: {exc}") from None
    if not cameras:
        raise DatasetError(f"{path} lists no cameras")
    return cameras


def image_path(sequence: Sequence, camera: str, frame: int) -> Path:
    return sequence.folder / "images" / camera / f"{frame:06d}.png"


def read_rgba(path: Path) -> torch.Tensor:
    """(H, W, 4) float32 in [0, 1]: premultiplied RGB (black background) and alpha."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read image {path}: {exc}") from None
    rgba[..., :3] *= rgba[..., 3:4]
    return torch.from_numpy(np.ascontiguousarray(rgba))


@dataclass(frozen=True)
class View:
    """One training image: a sequence frame seen by one camera."""

    sequence: Sequence
    frame: int
    camera: NamedCamera

    @property
    def path(self) -> Path:
        return image_path(self.sequence, self.camera.name, self.frame)


def views(sequences: list[Sequence], cameras: list[NamedCamera], frames: str = "all") -> list[View]:
    """Every (sequence, frame, camera) with an image; ``frames="first"`` keeps frame 0 only."""
    out = []
    for seq in sequences:
        for frame in seq.image_frames:
            if frames == "first" and frame != seq.image_frames[0]:
                continue
            out += [View(seq, frame, cam) for cam in cameras if image_path(seq, cam.name, frame).is_file()]
    return out
