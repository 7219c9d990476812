"""What ``evaluate`` reports beyond whole-image means: PSNR and SSIM per emotion, setting and
face region (regions from the tracked mesh, ``face_regions``), and a contact sheet of every
emotion at its strongest intensity from three views beside the ground truth."""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..emotions import EMOTIONS
from ..train.image_losses import ssim_map
from .face_regions import IMAGE_REGIONS

MIN_PIXELS = 16          # a region smaller than this in an image is not scored there


class RegionScores:
    """Per (emotion, setting, region): the PSNR (dB, from the region's mean squared error) and
    the mean SSIM of its pixels, each averaged over the images that show the region."""

    def __init__(self) -> None:
        self._values: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: {"psnr": [], "ssim": []})
        self.images: Counter = Counter()

    def add(self, emotion: str, setting: str, render: torch.Tensor, target: torch.Tensor,
            masks: dict[str, np.ndarray]) -> None:
        """render, target (H, W, 3) in [0, 1]; masks (H, W) bool per region."""
        err = (render - target).square().mean(-1).cpu().numpy()
        smap = ssim_map(render, target)[0].mean(0).cpu().numpy()
        for region, mask in masks.items():
            if int(mask.sum()) < MIN_PIXELS:
                continue
            mse = float(err[mask].mean())
            cell = self._values[(emotion, setting, region)]
            cell["psnr"].append(float("inf") if mse == 0 else -10.0 * math.log10(mse))
            cell["ssim"].append(float(smap[mask].mean()))
        if setting == "tracked_mesh":
            self.images[emotion] += 1

    def report(self) -> dict:
        """{emotion: {setting: {region: {"psnr": dB, "ssim": x}}}} in EMOTIONS and IMAGE_REGIONS order."""
        out: dict = {}
        for emotion in EMOTIONS:
            for (e, setting, region), cell in sorted(self._values.items(), key=lambda kv: IMAGE_REGIONS.index(kv[0][2])):
                if e != emotion:
                    continue
                out.setdefault(emotion, {}).setdefault(setting, {})[region] = {
                    "psnr": float(np.mean(cell["psnr"])), "ssim": float(np.mean(cell["ssim"]))}
        return out


def table(per_emotion: dict, setting: str = "tracked_mesh") -> str:
    """A text table of one setting's PSNR per emotion and region (for the log)."""
    head = f"{'emotion':10s}" + "".join(f"{r:>14s}" for r in IMAGE_REGIONS)
    rows = [head]
    for emotion, settings in per_emotion.items():
        cells = settings.get(setting, {})
        rows.append(f"{emotion:10s}" + "".join(f"{cells[r]['psnr']:14.2f}" if r in cells else f"{'-':>14s}"
                                               for r in IMAGE_REGIONS))
    return "\n".join(rows)


def sheet_views(cameras: list) -> list:
    """Three cameras for the sheet: the leftmost, the most frontal and the rightmost (by the
    camera centre's x in subject space, the subject's left being +X)."""
    def centre(cam):
        w2c = cam.camera.world_to_camera.double()
        return (-(w2c[:3, :3].T @ w2c[:3, 3])).numpy()

    ranked = sorted(cameras, key=lambda c: centre(c)[0])
    front = min(cameras, key=lambda c: abs(centre(c)[0]))
    picked = [ranked[0], front, ranked[-1]]
    return list(dict.fromkeys(picked))


def write_sheet(path: str | Path, sequences: list, cameras: list,
                render: Callable[[object, int, object], np.ndarray], read: Callable[[Path], np.ndarray]) -> Path:
    """A PNG grid: one row per emotion (its strongest-intensity sequence, the first listed
    winning ties; its middle image frame), for each of three views the ground truth then the
    render; the row is labelled with the sequence's name. ``render(sequence, frame,
    camera)`` and ``read(image path)`` give (H, W, 3) in [0, 1]."""
    from PIL import Image, ImageDraw

    from ..datasets.multiview import image_path

    cams = sheet_views(cameras)
    rows = []
    for emotion in EMOTIONS:
        candidates = [s for s in sequences if s.emotion == emotion and s.image_frames]
        if not candidates:
            rows.append((f"{emotion}: none", None))
            continue
        seq = max(candidates, key=lambda s: s.intensity)
        frame = seq.image_frames[len(seq.image_frames) // 2]
        tiles = []
        for cam in cams:
            shot = image_path(seq, cam.name, frame)
            tiles += [read(shot) if shot.is_file() else None, render(seq, frame, cam)]
        rows.append((seq.name, tiles))
    h, w = cams[0].camera.height, cams[0].camera.width
    label_w = 180
    sheet = Image.new("RGB", (label_w + w * 2 * len(cams), h * len(rows) + 20), (40, 40, 40))
    draw = ImageDraw.Draw(sheet)
    for c, cam in enumerate(cams):
        draw.text((label_w + c * 2 * w + 4, 4), f"{cam.name}: truth | render", fill=(230, 230, 230))
    for r, (label, tiles) in enumerate(rows):
        y = 20 + r * h
        draw.text((6, y + h // 2 - 6), label, fill=(230, 230, 230))
        for t, tile in enumerate(tiles or []):
            if tile is not None:
                image = Image.fromarray((np.clip(tile, 0, 1) * 255 + 0.5).astype(np.uint8))
                sheet.paste(image, (label_w + t * w, y))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
