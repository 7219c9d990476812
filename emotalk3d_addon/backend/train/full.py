"""``emotalk3d train``: a complete subject from a multi-view dataset.

1. S2GNet + emotion extractor (+ the bundled speech encoder), motion basis — ``s2g.py``;
2. canonical Gaussians with head completion — ``appearance.train_canonical``;
3. G2ANet — ``appearance.train_g2a``;
then one subject bundle. ``resume`` continues S2G from its last checkpoint and skips a
finished canonical stage. Under torchrun the S2G stage is data-parallel; the appearance
stages run on rank 0 while the other ranks wait. Every stage trains on ``device`` (under
torchrun on CUDA, each rank on ``cuda:{LOCAL_RANK}``); what is written is on the CPU.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch

from ..appearance.g2anet import G2ANet
from ..appearance.observed import DEFAULT_BAND_M, DEFAULT_VIEWS, limit_to_observed
from ..appearance.storage import APPEARANCE_FILE, CANONICAL_PLY, appearance_section, default_view, \
    load_appearance, write_appearance
from ..datasets.layout import load_dataset
from ..datasets.multiview import load_cameras
from ..errors import DatasetError
from ..subject import load_subject
from .appearance import AppearanceTrainConfig, emotion_vector, g2a_config, train_canonical, train_g2a
from .distributed import setup, teardown
from .progress import Progress
from .s2g import S2GTrainConfig, _train


@dataclass
class FullTrainConfig:
    s2g: S2GTrainConfig = field(default_factory=S2GTrainConfig)
    appearance: AppearanceTrainConfig = field(default_factory=AppearanceTrainConfig)


def _canonical_checkpoint(out: Path) -> Path:
    return out.with_name(out.name + ".checkpoints") / "canonical"


def train_subject(data: str | Path, out: str | Path, cfg: FullTrainConfig, resume: bool = False,
                  log: Callable[[str], None] = print, name: str | None = None, progress: bool = True,
                  device: torch.device | str = "cpu") -> Path:
    """Train every stage on ``device`` and write the subject bundle ``out``; returns its path."""
    out = Path(out)
    ddp = setup(device)
    try:
        say = log if ddp.is_main else (lambda _: None)
        load_cameras(data)    # fail early, before hours of S2G training, if the cameras are missing
        started = time.perf_counter()
        say("[1/3] speech -> geometry (S2GNet, emotion extractor, motion basis)")
        _train(data, out, cfg.s2g, resume, say, name, ddp)
        if ddp.is_main:
            _train_appearance(data, out, cfg.appearance, resume, say, progress, ddp.device)
            say(f"subject written to {out} in {time.perf_counter() - started:.0f} s")
        ddp.barrier()
    finally:
        teardown()
    return out


def _train_appearance(data, out: Path, cfg: AppearanceTrainConfig, resume: bool,
                      log: Callable[[str], None], progress: bool, device: torch.device | str = "cpu") -> None:
    dataset = load_dataset(data)
    cameras = load_cameras(data)
    subject = load_subject(out)
    view = default_view([c.as_dict() for c in cameras])
    ckpt = _canonical_checkpoint(out)
    head = None
    if resume and (ckpt / "section.json").is_file():
        section = json.loads((ckpt / "section.json").read_text())
        defects, head = load_appearance(section, ckpt / CANONICAL_PLY, ckpt / APPEARANCE_FILE, subject.geometry)
        if defects:
            raise DatasetError(f"cannot resume from {ckpt}: " + "; ".join(defects))
        log(f"[2/3] canonical Gaussians: resumed from {ckpt} ({head.canonical.num} Gaussians)")
        wanted = replace(g2a_config(cfg), sh_degree=head.canonical.sh_degree)   # the checkpoint fixes the SH degree
        if head.net.config != wanted:
            # stage 1 never trains the net: the checkpoint's is the identity, rebuilt to this run's settings
            head.net = G2ANet(wanted)
    if head is None:
        log(f"[2/3] canonical Gaussians (3DGS, {cfg.num_otf} head-completion points)")
        head = train_canonical(dataset, cameras, cfg, log,
                               Progress("canonical", cfg.canonical_steps, enabled=progress), device)
        ckpt.mkdir(parents=True, exist_ok=True)
        write_appearance(head, ckpt)
        (ckpt / "section.json").write_text(json.dumps(appearance_section(head, view)))
    log(f"[3/3] G2ANet ({cfg.g2a_steps} steps)")
    train_g2a(dataset, cameras, head, cfg, log, Progress("G2ANet", cfg.g2a_steps, enabled=progress), device)
    subject.appearance = head
    subject.manifest["appearance"] = {"view": view}
    subject.manifest.setdefault("training", {})["appearance"] = asdict(cfg)
    subject.save(out)


def canonical_into_bundle(data: str | Path, subject_path: str | Path, cfg: AppearanceTrainConfig,
                          log: Callable[[str], None] = print, progress: bool = True,
                          device: torch.device | str = "cpu") -> Path:
    """``train-canonical``: canonical Gaussians (+ an untrained G2ANet) into an existing bundle."""
    dataset, cameras = load_dataset(data), load_cameras(data)
    subject = load_subject(subject_path)
    head = train_canonical(dataset, cameras, cfg, log, Progress("canonical", cfg.canonical_steps, enabled=progress),
                           device)
    subject.appearance = head
    subject.manifest["appearance"] = {"view": default_view([c.as_dict() for c in cameras])}
    subject.manifest.setdefault("training", {})["canonical"] = asdict(cfg)
    return subject.save(subject_path)


def g2a_into_bundle(data: str | Path, subject_path: str | Path, cfg: AppearanceTrainConfig,
                    log: Callable[[str], None] = print, progress: bool = True,
                    device: torch.device | str = "cpu") -> Path:
    """``train-g2a``: train the G2ANet of a bundle that has canonical Gaussians."""
    subject = load_subject(subject_path)
    if subject.appearance is None:
        raise DatasetError(f"{subject_path} has no canonical Gaussians yet: run `emotalk3d train-canonical` first")
    cfg.sh_degree = subject.appearance.canonical.sh_degree
    train_g2a(load_dataset(data), load_cameras(data), subject.appearance, cfg, log,
              Progress("G2ANet", cfg.g2a_steps, enabled=progress), device)
    subject.manifest.setdefault("training", {})["g2a"] = asdict(cfg)
    return subject.save(subject_path)


def observed_into_bundle(data: str | Path, subject_path: str | Path, views: int = DEFAULT_VIEWS,
                         band_m: float = DEFAULT_BAND_M, log: Callable[[str], None] = print) -> Path:
    """``limit-observed``: keep a trained bundle's head-completion Gaussians to what its
    dataset's cameras saw (training does this after each stage; this is for a bundle
    trained before it did)."""
    subject = load_subject(subject_path)
    if subject.appearance is None:
        raise DatasetError(f"{subject_path} has no Gaussians to limit: train its appearance first")
    report = limit_to_observed(subject.appearance, [c.camera for c in load_cameras(data)],
                               torch.from_numpy(subject.geometry.template), emotion_vector("neutral", 0.0),
                               views, band_m)
    log(f"observed region: removed {report.removed} head-completion Gaussians outside it, faded {report.capped} "
        f"at its edge, {report.kept} kept")
    subject.manifest.setdefault("training", {})["observed"] = {"views": views, "band_m": band_m}
    return subject.save(subject_path)
