"""Training of the speech-to-geometry half: S2GNet + emotion extractor (+ bundled encoder).

Loss (millimetres, so magnitudes are O(1)):
    vertex   = mean |pred - target|^2                   per vertex and frame
    velocity = mean |(pred_t - pred_t-1) - (target_t - target_t-1)|^2
    emotion  = cross-entropy(emotion logits, label) + (intensity - label)^2
    total    = vertex + velocity_weight * velocity + emotion_weight * emotion

Batches are drawn from a generator seeded by (seed, step), so a resumed run draws
the same batches as an uninterrupted one. Checkpoints are safetensors.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..audio import load_audio
from ..datasets.layout import Sequence, SpeechDataset, load_dataset
from ..errors import DatasetError
from ..emotions import EMOTIONS, condition, one_hot
from ..geometry.basis import fit_motion_basis
from ..geometry.s2gnet import S2GConfig, S2GNet
from ..speech.emotion import EmotionConfig, EmotionExtractor
from ..speech.encoder import EncoderSpec, SpeechEncoder, load_encoder, new_bundled_encoder
from ..speech.framerate import features_to_frames
from ..subject import Geometry, Subject, make_manifest
from ..timebase import parse_fps
from .checkpoint import load_checkpoint, save_checkpoint
from .distributed import setup, teardown

MM = 1000.0  # metres -> millimetres


@dataclass
class S2GTrainConfig:
    steps: int = 2000
    batch: int = 8
    crop_frames: int = 90
    lr: float = 1e-3
    velocity_weight: float = 10.0
    emotion_weight: float = 0.1
    hidden: int = 256
    layers: int = 2
    encoder: str | None = None          # hub id / folder of a pretrained (frozen) HuBERT
    bundled_encoder: str = "small"      # else: a small HuBERT of this size trained with the subject
    basis_components: int = 48
    checkpoint_every: int = 200
    seed: int = 0


@dataclass
class _Clip:
    sequence: Sequence
    samples: torch.Tensor          # (N,) float32 16 kHz
    num_frames: int
    target: torch.Tensor           # (F, V, 3) float32 displacement, metres
    condition: torch.Tensor        # (F, 9)
    label: int
    intensity: float
    features: torch.Tensor | None  # (F, D) when the encoder is frozen


def _prepare(dataset: SpeechDataset, frozen: SpeechEncoder | None) -> list[_Clip]:
    template = dataset.topology.template
    clips = []
    for seq in dataset.split("train"):
        wave = load_audio(seq.audio_path)
        meshes = np.asarray(seq.meshes(), np.float32)
        fps = parse_fps(seq.fps)
        audio_frames = -(-Fraction(wave.samples.size, wave.sample_rate) * fps // 1)
        frames = min(meshes.shape[0], int(audio_frames))
        if abs(meshes.shape[0] - audio_frames) > 2:
            raise DatasetError(f"{seq.folder}: meshes.npy has {meshes.shape[0]} frames but the audio "
                               f"lasts {audio_frames} frames at {seq.fps} fps")
        intensity = seq.intensity if seq.emotion != "neutral" else 0.0
        weights = np.tile(one_hot(seq.emotion), (frames, 1))
        cond = condition(weights, np.full(frames, intensity, np.float32))
        features = None
        if frozen is not None:
            features = features_to_frames(frozen.encode(wave), frames, fps)
        clips.append(_Clip(seq, torch.tensor(wave.samples), frames,
                           torch.from_numpy(meshes[:frames] - template[None]), torch.from_numpy(cond),
                           EMOTIONS.index(seq.emotion), float(intensity), features))
    if not clips:
        raise DatasetError(f"{dataset.root} has no sequences in the 'train' split")
    return clips


def _clip_features(clip: _Clip, encoder: torch.nn.Module | None) -> torch.Tensor:
    if clip.features is not None:
        return clip.features
    hidden = encoder(clip.samples[None]).last_hidden_state[0]
    return features_to_frames(hidden, clip.num_frames, parse_fps(clip.sequence.fps))


def losses(s2g: torch.nn.Module, extractor: torch.nn.Module, features: torch.Tensor, cond: torch.Tensor,
           target: torch.Tensor, label: torch.Tensor, intensity: torch.Tensor,
           cfg: S2GTrainConfig) -> dict[str, torch.Tensor]:
    """Loss terms for a batch: features (B,L,D), cond (B,L,9), target (B,L,V,3) metres."""
    pred = s2g(features, cond) * MM
    goal = target * MM
    vertex = (pred - goal).square().sum(-1).mean()
    velocity = ((pred[:, 1:] - pred[:, :-1]) - (goal[:, 1:] - goal[:, :-1])).square().sum(-1).mean()
    logits, level = extractor(features)
    emotion = F.cross_entropy(logits.flatten(0, 1), label[:, None].expand(-1, logits.shape[1]).flatten()) \
        + (level - intensity[:, None]).square().mean()
    total = vertex + cfg.velocity_weight * velocity + cfg.emotion_weight * emotion
    return {"total": total, "vertex": vertex, "velocity": velocity, "emotion": emotion}


def train_s2g(data: str | Path, out: str | Path, cfg: S2GTrainConfig, resume: bool = False,
              log: Callable[[str], None] = print, name: str | None = None) -> list[dict]:
    """Train on the dataset at ``data`` and write a subject bundle to ``out``; returns the loss history.

    Under ``torchrun --nproc_per_node N`` the batch is split across N processes (DDP).
    """
    ddp = setup()
    try:
        return _train(data, out, cfg, resume, log if ddp.is_main else (lambda _: None), name, ddp)
    finally:
        teardown()


def _train(data, out, cfg: S2GTrainConfig, resume: bool, log: Callable[[str], None],
           name: str | None, ddp) -> list[dict]:
    dataset = load_dataset(data)
    out = Path(out)
    ckpt_path = out.with_name(out.name + ".checkpoints") / "s2g.safetensors"
    torch.manual_seed(cfg.seed)
    frozen = load_encoder(EncoderSpec("pretrained", cfg.encoder)) if cfg.encoder else None
    encoder = None if frozen else new_bundled_encoder(cfg.bundled_encoder, cfg.seed)
    feature_dim = frozen.feature_dim if frozen else int(encoder.config.hidden_size)
    clips = _prepare(dataset, frozen)
    num_vertices = dataset.topology.template.shape[0]
    s2g = S2GNet(S2GConfig(feature_dim, num_vertices, cfg.hidden, cfg.layers))
    extractor = EmotionExtractor(EmotionConfig(feature_dim))
    modules = {"s2g": s2g, "emotion": extractor} | ({"encoder": encoder} if encoder is not None else {})
    wrapped = {k: ddp.wrap(m) for k, m in modules.items()}
    params = [p for m in modules.values() for p in m.parameters()]
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    step, history = 0, []
    if resume and ckpt_path.is_file():
        step, history = load_checkpoint(ckpt_path, modules, optimizer)
        log(f"resumed from {ckpt_path} at step {step}")
    crop = min(cfg.crop_frames, min(c.num_frames for c in clips))
    for m in modules.values():
        m.train()
    started = time.perf_counter()
    while step < cfg.steps:
        rng = np.random.default_rng([cfg.seed, step])
        torch.manual_seed(cfg.seed * 1_000_003 + step)
        picks = rng.integers(0, len(clips), cfg.batch)
        starts = [int(rng.integers(0, clips[i].num_frames - crop + 1)) for i in picks]
        picks, starts = ddp.shard(list(picks)), ddp.shard(starts)
        feats, conds, targets = [], [], []
        for i, start in zip(picks, starts):
            clip = clips[i]
            feats.append(_clip_features(clip, wrapped.get("encoder"))[start:start + crop])
            conds.append(clip.condition[start:start + crop])
            targets.append(clip.target[start:start + crop])
        terms = losses(wrapped["s2g"], wrapped["emotion"], torch.stack(feats), torch.stack(conds), torch.stack(targets),
                       torch.tensor([clips[i].label for i in picks]),
                       torch.tensor([clips[i].intensity for i in picks]), cfg)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        step += 1
        history.append({"step": step} | {k: float(ddp.mean(v)) for k, v in terms.items()})
        if step % max(1, cfg.steps // 20) == 0 or step == cfg.steps:
            h = history[-1]
            log(f"step {step}/{cfg.steps}  loss {h['total']:.4f}  vertex {h['vertex']:.4f} mm²  "
                f"velocity {h['velocity']:.4f}  emotion {h['emotion']:.3f}  "
                f"({time.perf_counter() - started:.0f} s)")
        if ddp.is_main and (step % cfg.checkpoint_every == 0 or step == cfg.steps):
            save_checkpoint(ckpt_path, modules, optimizer, step, history)
    if ddp.is_main:
        _write_subject(dataset, out, cfg, s2g, extractor, encoder, name, log)
    ddp.barrier()
    return history


def _write_subject(dataset: SpeechDataset, out: Path, cfg: S2GTrainConfig, s2g: S2GNet,
                   extractor: EmotionExtractor, encoder: torch.nn.Module | None,
                   name: str | None, log: Callable[[str], None]) -> None:
    topo = dataset.topology
    motion = np.concatenate([np.asarray(s.meshes(), np.float32) - topo.template[None]
                             for s in dataset.split("train")])
    basis = fit_motion_basis(motion, max_components=cfg.basis_components)
    error = basis.reconstruction_error(motion)
    log(f"motion basis: {basis.num_components} shape keys, reconstruction error "
        f"rms {error.rms_mm:.3f} mm, max {error.max_mm:.3f} mm")
    geometry = Geometry(topo.template, topo.triangles, topo.uvs, topo.face_mask, dict(topo.landmarks))
    with tempfile.TemporaryDirectory() as tmp:
        if encoder is not None:
            spec = EncoderSpec("bundled", "encoder")
            encoder.save_pretrained(tmp, safe_serialization=True)
        else:
            spec = EncoderSpec("pretrained", cfg.encoder)
        manifest = make_manifest(name or dataset.name, dataset.fps, spec, geometry, basis, s2g.config,
                                 extractor.config, (error.rms_mm, error.max_mm),
                                 description=f"trained by emotalk3d train-s2g on {dataset.name}",
                                 training={"s2g": asdict(cfg)})
        subject = Subject(None, manifest, geometry, basis, s2g.config,
                          {k: v.detach().cpu().contiguous() for k, v in s2g.state_dict().items()},
                          extractor.config,
                          {k: v.detach().cpu().contiguous() for k, v in extractor.state_dict().items()},
                          spec)
        subject.save(out, encoder_dir=tmp if encoder is not None else None)
    log(f"wrote subject {out}")
