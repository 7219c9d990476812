"""Training of the speech-to-geometry half: S2GNet + emotion extractor (+ bundled encoder).

Clips come from the subject's multi-view dataset (one emotion per sequence) and, when
given, from a speech corpus (many voices and engines, emotions changing per utterance,
augmented audio; ``datasets/speech_corpus``). With a frozen encoder (Whisper by default,
or a pretrained HuBERT) the features of every audio copy are computed once, through the
feature cache.

Loss (millimetres, so magnitudes are O(1)):
    vertex   = mean |pred - target|^2                   per vertex and frame
    velocity = mean |(pred_t - pred_t-1) - (target_t - target_t-1)|^2
    emotion  = soft cross-entropy(emotion logits, per-frame label weights)
               + (intensity - per-frame label intensity)^2
    lip      = mean (|pred lip gap| - |target lip gap|)^2        upper to lower lip landmark, mm
    closure  = mean over p/b/m frames of max(0, pred gap - target gap)^2   (the lips must shut);
               with ``closure_window`` w > 0, each gap is first the minimum over the frame's
               +-w neighbours (the rig shuts the lips a little before a short p/b/m, often
               in the frame before the phone's own, and the score counts a closure within
               a frame of the phone)
    total    = vertex + velocity_weight * velocity + emotion_weight * emotion
               + lip_weight * lip + closure_weight * closure

The motion basis (the subject's shape keys) is fitted before training. With ``lip_on_mix``
the lip and closure terms measure the lips of the basis mix of S2GNet's vertices (their
least-squares projection onto the shape keys), which is the performance an artist sees,
instead of S2GNet's raw vertices; held-out voices are always scored on that mix.

Each step's crops have a random length in [min_crop_frames, crop_frames], so the emotion
extractor never learns a fixed window. Batches are drawn from a generator seeded by
(seed, step), so a resumed run draws the same batches as an uninterrupted one.
Checkpoints are safetensors, written from the CPU, so a run resumes on any device.

The models, the optimiser state and every batch live on the training ``device`` (CUDA,
or the CPU); the clips stay in host memory and each step's crops are copied over.

Against the gap between the synthetic training voices and real speech: input features can
be dropped out (``feature_dropout``), and the bundle can take an exponential moving average
of the weights (``ema_decay``) instead of the last step's, which varies from step to step.
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
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..io.audio import Waveform, load_audio
from ..datasets.layout import SpeechDataset, load_dataset
from ..errors import DatasetError
from ..emotions import condition, one_hot
from ..geometry.basis import BasisError, MotionBasis, fit_motion_basis
from ..geometry.s2gnet import S2GConfig, S2GNet
from ..speech.emotion import EmotionConfig, EmotionExtractor
from ..speech.cache import FeatureCache
from ..speech.encoder import EncoderSpec, SpeechEncoder, encoder_spec_from_name, load_encoder, new_bundled_encoder
from ..speech.framerate import features_to_frames
from ..speech.phones import is_bilabial
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
    lip_weight: float = 0.0             # weight of the lip-gap error (upper to lower lip landmark, mm²)
    closure_weight: float = 0.0         # weight of the lips left open on p/b/m frames (one-sided, mm²)
    lip_on_mix: bool = False            # the lip and closure terms measure the shape keys' mix (see above)
    closure_window: int = 0             # frames either side of a p/b/m frame where the lips may shut (see above)
    feature_dropout: float = 0.0        # dropout on the speech features in training
    ema_decay: float = 0.0              # > 0: the bundle keeps this moving average of the weights
    hidden: int = 256
    layers: int = 2
    encoder: str | None = None          # "whisper:<model>" or a HuBERT hub id / folder (frozen)
    bundled_encoder: str = "small"      # else: a small HuBERT of this size trained with the subject
    basis_components: int = 48
    checkpoint_every: int = 200
    seed: int = 0
    corpus: str | None = None           # a speech corpus folder to train on beside the dataset
    min_crop_frames: int | None = None  # shortest crop (default: crop_frames, i.e. fixed length)
    corpus_basis_frames: int = 4000     # corpus frames added to the motion-basis fit
    exclude_engines: tuple[str, ...] = ()   # corpus engines left out of training (an ablation)
    exclude_languages: tuple[str, ...] = ()  # corpus languages left out of training (an ablation)
    validate_every: int = 500           # steps between scores on held-out corpus voices (0: never)
    validation_recordings: int = 16


@dataclass
class _Clip:
    name: str
    fps: Fraction
    num_frames: int
    condition: torch.Tensor             # (F, 9) S2GNet condition
    label: torch.Tensor                 # (F, 8) emotion weights (the extractor's target)
    intensity: torch.Tensor             # (F,) label intensity
    target: Callable[[int, int], torch.Tensor]   # frames [a, b) -> (b - a, V, 3) float32 metres
    samples: list[torch.Tensor]         # per audio copy (N,) float32 16 kHz (bundled encoder only)
    features: list[torch.Tensor]        # per audio copy (F, D) float16 (frozen encoder only)
    emotion_labelled: bool = True       # False: its emotion labels do not fit its prosody (a tempo copy)
    bilabial: torch.Tensor | None = None   # (F,) bool: frames of a p/b/m phone (None: phones unknown)


def bilabial_frames(phones, frames: int, fps: Fraction | float) -> torch.Tensor:
    """(F,) bool: frames whose time (i / fps, seconds) lies in a p/b/m phone [start, end);
    a phone shorter than a frame marks the frame nearest its middle. ``phones``: (start s,
    end s, IPA) rows."""
    fps = float(fps)
    mask = np.zeros(frames, bool)
    for start, stop, ipa in phones:
        if not is_bilabial(ipa):
            continue
        a, b = int(np.ceil(start * fps - 1e-9)), int(np.ceil(stop * fps - 1e-9))
        if b <= a:
            a = int(round(0.5 * (start + stop) * fps))
            b = a + 1
        mask[max(a, 0):max(min(b, frames), 0)] = True
    return torch.from_numpy(mask)


def _labels(weights: np.ndarray, intensity: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    cond = condition(weights, intensity)
    return torch.from_numpy(cond), torch.from_numpy(np.asarray(weights, np.float32)), \
        torch.from_numpy(np.asarray(intensity, np.float32))


def _audio(source: Path | Waveform, frozen: SpeechEncoder | None, cache: FeatureCache | None, frames: int,
           fps: Fraction) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(samples, None) for a trained encoder, else (None, (frames, D) float16 features)."""
    wave = source if isinstance(source, Waveform) else load_audio(source)
    if frozen is None:
        return torch.tensor(wave.samples), None
    key = wave.content_hash()
    feats = cache.get(key, frozen.encoder_id) if cache is not None else None
    if feats is None:
        feats = frozen.encode(wave)
        if cache is not None:
            cache.put(key, frozen.encoder_id, feats)
    return None, features_to_frames(feats, frames, fps, centre_offset_s=frozen.centre_offset_s).half()


def _dataset_clips(dataset: SpeechDataset, frozen: SpeechEncoder | None) -> list[_Clip]:
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
        cond, label, level = _labels(np.tile(one_hot(seq.emotion), (frames, 1)), np.full(frames, intensity, np.float32))
        target = torch.from_numpy(meshes[:frames] - template[None])
        samples, feats = _audio(wave, frozen, None, frames, fps)
        phones = seq.phones()
        clips.append(_Clip(seq.name, fps, frames, cond, label, level, lambda a, b, t=target: t[a:b],
                           [samples] if samples is not None else [], [feats] if feats is not None else [],
                           bilabial=bilabial_frames(phones, frames, fps) if phones else None))
    if not clips:
        raise DatasetError(f"{dataset.root} has no sequences in the 'train' split")
    return clips


def _corpus_train(corpus, cfg: S2GTrainConfig) -> list:
    return [r for r in corpus.split("train")
            if r.engine not in cfg.exclude_engines and r.language not in cfg.exclude_languages]


def _corpus_clips(corpus, cfg: S2GTrainConfig, frozen: SpeechEncoder | None,
                  log: Callable[[str], None]) -> list[_Clip]:
    cache = FeatureCache(max_bytes=0, directory=corpus.root / "features")
    clips, started = [], time.perf_counter()
    train = _corpus_train(corpus, cfg)
    if not train:
        left_out = ", ".join(cfg.exclude_engines + cfg.exclude_languages)
        raise DatasetError(f"{corpus.root}: no training recordings left once {left_out} are excluded")
    fps = parse_fps(corpus.fps)
    for i, rec in enumerate(train, 1):
        emo = rec.emotion()
        cond, label, level = _labels(emo[:, :8], emo[:, 8])
        motion = rec.motion()
        samples, feats = [], []
        for path in rec.audio_files:
            s, f = _audio(path, frozen, cache, rec.frames, fps)
            (samples if s is not None else feats).append(s if s is not None else f)
        clips.append(_Clip(rec.name, fps, rec.frames, cond, label, level,
                           lambda a, b, m=motion: torch.from_numpy(np.asarray(m[a:b], np.float32)), samples, feats,
                           emotion_labelled="tempo" not in rec.meta,
                           bilabial=bilabial_frames(rec.phones, rec.frames, fps)))
        if i % max(1, len(train) // 10) == 0 or i == len(train):
            log(f"corpus features: {i}/{len(train)} recordings ({time.perf_counter() - started:.0f} s)")
    return clips


@dataclass
class _Held:
    """A held-out corpus recording for validation (its clean copy)."""

    clip: _Clip
    phones: list
    samples: np.ndarray


def _validation_set(corpus, cfg: S2GTrainConfig, frozen: SpeechEncoder | None) -> list[_Held]:
    if corpus is None or frozen is None or cfg.validate_every <= 0:
        return []
    cache = FeatureCache(max_bytes=0, directory=corpus.root / "features")
    fps = parse_fps(corpus.fps)
    held = []
    for rec in corpus.split("test")[:cfg.validation_recordings]:
        emo = rec.emotion()
        cond, label, level = _labels(emo[:, :8], emo[:, 8])
        _, feats = _audio(rec.audio_files[0], frozen, cache, rec.frames, fps)
        motion = rec.motion()
        clip = _Clip(rec.name, fps, rec.frames, cond, label, level,
                     lambda a, b, m=motion: torch.from_numpy(np.asarray(m[a:b], np.float32)), [], [feats])
        held.append(_Held(clip, list(rec.phones), load_audio(rec.audio_files[0]).samples))
    return held


@torch.no_grad()
def validate(s2g: S2GNet, extractor: EmotionExtractor, held: list[_Held], template: np.ndarray,
             lips: tuple[int, int], basis: MotionBasis | None = None) -> dict[str, float]:
    """Held-out scores: lip sync (``lipsync.py``), vertex error (mm²), emotion accuracy; with
    ``basis``, of the basis mix of S2GNet's vertices (the performance the shape keys show)."""
    from ..tools.lipsync import lip_aperture, pooled, score

    device = next(s2g.parameters()).device
    was = s2g.training, extractor.training
    s2g.eval()
    extractor.eval()
    scores, errors, right, counted = [], [], 0, 0
    for h in held:
        c = h.clip
        feats = c.features[0].float().to(device)
        pred = s2g.predict(feats, c.condition.to(device)).numpy()      # predict returns CPU tensors
        if basis is not None:
            pred = basis.expand(basis.project(pred))
        target = c.target(0, c.num_frames).numpy()
        errors.append(float((((pred - target) * MM) ** 2).sum(-1).mean()))
        aperture = lip_aperture(pred + template[None], template, *lips)
        scores.append(score(aperture, h.phones, h.samples, 16000, float(c.fps)))
        weights = extractor.predict_track(feats)[0].cpu()
        sure = c.intensity > 0.3
        right += int((weights.argmax(1)[sure] == c.label.argmax(1)[sure]).sum())
        counted += int(sure.sum())
    s2g.train(was[0])
    extractor.train(was[1])
    p = pooled(scores)
    return {"val_correlation": p.correlation, "val_loudness_correlation": p.loudness_correlation,
            "val_partial": p.partial, "val_closure_share": p.closure_share,
            "val_vertex": float(np.mean(errors)), "val_emotion_accuracy": right / max(counted, 1)}


def _clip_features(clip: _Clip, copy: int, encoder: torch.nn.Module | None) -> torch.Tensor:
    """(F, D) features of one audio copy of the clip: kept ones on the CPU, a trained
    encoder's where the encoder is."""
    if clip.features:
        return clip.features[copy % len(clip.features)].float()
    samples = clip.samples[copy % len(clip.samples)]
    hidden = encoder(samples.to(next(encoder.parameters()).device)[None]).last_hidden_state[0]
    return features_to_frames(hidden, clip.num_frames, clip.fps, centre_offset_s=SpeechEncoder.centre_offset_s)


def window_minimum(gap: torch.Tensor, half: int) -> torch.Tensor:
    """(B, L): each frame's minimum over frames [t - half, t + half] of ``gap`` (B, L), the
    crop's ends clipped; ``half`` 0 returns ``gap``."""
    if half <= 0:
        return gap
    return -torch.nn.functional.max_pool1d(-gap.unsqueeze(1), 2 * half + 1, stride=1, padding=half).squeeze(1)


def losses(s2g: torch.nn.Module, extractor: torch.nn.Module, features: torch.Tensor, cond: torch.Tensor,
           target: torch.Tensor, label: torch.Tensor, intensity: torch.Tensor,
           cfg: S2GTrainConfig, labelled: torch.Tensor | None = None,
           lips: tuple[int, int, torch.Tensor, torch.Tensor | None] | None = None,
           closure: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Loss terms for a batch: features (B,L,D), cond (B,L,9), target (B,L,V,3) metres,
    label (B,L,8) emotion weights, intensity (B,L); ``labelled`` (B,) bool: the clips whose
    emotion labels the extractor learns from (all when None); ``lips`` (upper, lower landmark
    vertex, template upper - lower (3,) mm, and None or the (V*3, 6) map from displacements to
    the two lip vertices of their basis mix, ``mix_lip_map``): adds the lip gap's error (of the
    mix when the map is given), weighted by ``cfg.lip_weight`` (the vertex term alone averages
    the lips away among all vertices);
    ``closure`` (B,L) bool, the p/b/m frames, with ``lips``: adds how far the predicted lips
    stay more open than the target's there (one-sided, mm²; both gaps the minimum over
    ``cfg.closure_window`` frames either side), weighted by ``cfg.closure_weight``."""
    pred = s2g(features, cond) * MM
    goal = target * MM
    vertex = (pred - goal).square().sum(-1).mean()
    velocity = ((pred[:, 1:] - pred[:, :-1]) - (goal[:, 1:] - goal[:, :-1])).square().sum(-1).mean()
    logits, level = extractor(features)
    per_clip = -(label * logits.log_softmax(-1)).sum(-1).mean(1) + (level - intensity).square().mean(1)   # (B,)
    weight = torch.ones_like(per_clip) if labelled is None else labelled.to(per_clip.dtype)
    emotion = (per_clip * weight).sum() / weight.sum().clamp_min(1.0)
    total = vertex + cfg.velocity_weight * velocity + cfg.emotion_weight * emotion
    terms = {"vertex": vertex, "velocity": velocity, "emotion": emotion}
    if lips is not None:
        upper, lower, rest, mix = lips
        gap = lambda d: (rest + d[:, :, upper] - d[:, :, lower]).norm(dim=-1)      # (B, L) mm
        if mix is None:
            predicted = gap(pred)
        else:
            shown = pred.flatten(2) @ mix                                           # (B, L, 6) mm
            predicted = (rest + shown[..., :3] - shown[..., 3:]).norm(dim=-1)
        wanted = gap(goal)
        terms["lip"] = (predicted - wanted).square().mean()
        total = total + cfg.lip_weight * terms["lip"]
        if closure is not None:
            shut = closure.to(predicted.dtype)
            least_p, least_w = window_minimum(predicted, cfg.closure_window), window_minimum(wanted, cfg.closure_window)
            left_open = (least_p - least_w).clamp_min(0.0).square()
            terms["closure"] = (left_open * shut).sum() / shut.sum().clamp_min(1.0)
            total = total + cfg.closure_weight * terms["closure"]
    return {"total": total} | terms


def train_s2g(data: str | Path, out: str | Path, cfg: S2GTrainConfig, resume: bool = False,
              log: Callable[[str], None] = print, name: str | None = None,
              device: torch.device | str = "cpu") -> list[dict]:
    """Train on the dataset at ``data`` and write a subject bundle to ``out``; returns the loss history.

    ``device``: where to train (``device.resolve_device`` resolves a name). Under ``torchrun
    --nproc_per_node N`` the batch is split across N processes (DDP), on CUDA one GPU each.
    """
    ddp = setup(device)
    try:
        return _train(data, out, cfg, resume, log if ddp.is_main else (lambda _: None), name, ddp)
    finally:
        teardown()


def _train(data, out, cfg: S2GTrainConfig, resume: bool, log: Callable[[str], None],
           name: str | None, ddp) -> list[dict]:
    dataset = load_dataset(data)
    out = Path(out)
    device = ddp.device
    ckpt_path = out.with_name(out.name + ".checkpoints") / "s2g.safetensors"
    torch.manual_seed(cfg.seed)
    # a frozen encoder computes the features once, on the training device (they are kept on the CPU)
    frozen = load_encoder(encoder_spec_from_name(cfg.encoder), device) if cfg.encoder else None
    encoder = None if frozen else new_bundled_encoder(cfg.bundled_encoder, cfg.seed).to(device)
    feature_dim = frozen.feature_dim if frozen else int(encoder.config.hidden_size)
    clips = _dataset_clips(dataset, frozen)
    corpus = None
    if cfg.corpus:
        from ..datasets.speech_corpus.layout import load_corpus

        corpus = load_corpus(cfg.corpus)
        if corpus.topology.template.shape != dataset.topology.template.shape or \
                np.abs(corpus.topology.template - dataset.topology.template).max() > 1e-6:
            raise DatasetError(f"the corpus {cfg.corpus} was made for another face topology than {data}")
        used = _corpus_clips(corpus, cfg, frozen, log)       # without the engines and languages left out
        clips += used
        log(f"training on {len(clips)} clips: {sum(c.num_frames / float(c.fps) for c in used) / 3600:.2f} h of "
            f"corpus speech ({len(used)} recordings) + {len(dataset.split('train'))} dataset sequences")
    num_vertices = dataset.topology.template.shape[0]
    s2g = S2GNet(S2GConfig(feature_dim, num_vertices, cfg.hidden, cfg.layers)).to(device)
    extractor = EmotionExtractor(EmotionConfig(feature_dim)).to(device)
    modules = {"s2g": s2g, "emotion": extractor} | ({"encoder": encoder} if encoder is not None else {})
    wrapped = {k: ddp.wrap(m) for k, m in modules.items()}
    params = [p for m in modules.values() for p in m.parameters()]
    # The extractor's gradient is clipped on its own: S2GNet's loss terms (the closure term,
    # the lip term) then leave the emotion extractor's training untouched.
    clip_groups = [list(extractor.parameters()),
                   [p for k, m in modules.items() if k != "emotion" for p in m.parameters()]]
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    averaged = {k: AveragedModel(modules[k], device=device, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay))
                for k in ("s2g", "emotion")} if cfg.ema_decay > 0 else {}
    saved = modules | {f"{k}_ema": m for k, m in averaged.items()}
    step, history = 0, []
    if resume and ckpt_path.is_file():
        step, history = load_checkpoint(ckpt_path, saved, optimizer)
        log(f"resumed from {ckpt_path} at step {step}")
    held = _validation_set(corpus, cfg, frozen) if ddp.is_main else []
    marks = dataset.topology.landmarks
    lips = (marks.get("upper_lip"), marks.get("lower_lip"))
    if None in lips:
        held = []
    basis, basis_err = _motion_basis(dataset, corpus, cfg)
    lip_term = None
    if (cfg.lip_weight > 0 or cfg.closure_weight > 0) and None not in lips:
        rest = dataset.topology.template[lips[0]] - dataset.topology.template[lips[1]]
        mix = mix_lip_map(basis, *lips).to(device) if cfg.lip_on_mix else None
        lip_term = (lips[0], lips[1], torch.from_numpy(np.asarray(rest, np.float32) * MM).to(device), mix)
    longest = min(cfg.crop_frames, min(c.num_frames for c in clips))
    shortest = min(longest, cfg.min_crop_frames or longest)
    weights = np.array([c.num_frames for c in clips], np.float64)
    weights /= weights.sum()                  # every frame equally likely, whichever its source
    for m in modules.values():
        m.train()
    started = time.perf_counter()
    while step < cfg.steps:
        rng = np.random.default_rng([cfg.seed, step])
        torch.manual_seed(cfg.seed * 1_000_003 + step)
        crop = int(rng.integers(shortest, longest + 1))
        picks = rng.choice(len(clips), cfg.batch, p=weights)
        starts = [int(rng.integers(0, clips[i].num_frames - crop + 1)) for i in picks]
        copies = [int(rng.integers(0, 1 << 16)) for _ in picks]
        picks, starts, copies = ddp.shard(list(picks)), ddp.shard(starts), ddp.shard(copies)
        feats, conds, targets, labels, levels, labelled, shut = [], [], [], [], [], [], []
        for i, start, copy in zip(picks, starts, copies):
            clip, stop = clips[i], start + crop
            feats.append(_clip_features(clip, copy, wrapped.get("encoder"))[start:stop])
            conds.append(clip.condition[start:stop])
            targets.append(clip.target(start, stop))
            labels.append(clip.label[start:stop])
            levels.append(clip.intensity[start:stop])
            labelled.append(clip.emotion_labelled)
            shut.append(clip.bilabial[start:stop] if clip.bilabial is not None else torch.zeros(crop, dtype=torch.bool))
        batch = lambda rows: torch.stack(rows).to(device, non_blocking=True)      # noqa: E731
        features = batch(feats)
        if cfg.feature_dropout > 0:
            features = torch.nn.functional.dropout(features, cfg.feature_dropout)
        terms = losses(wrapped["s2g"], wrapped["emotion"], features, batch(conds), batch(targets),
                       batch(labels), batch(levels), cfg, torch.tensor(labelled, device=device), lip_term,
                       batch(shut) if cfg.closure_weight > 0 else None)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        for group in clip_groups:
            torch.nn.utils.clip_grad_norm_(group, 1.0)
        optimizer.step()
        for k, m in averaged.items():
            m.update_parameters(modules[k])
        step += 1
        history.append({"step": step} | {k: float(ddp.mean(v)) for k, v in terms.items()})
        if step % max(1, cfg.steps // 20) == 0 or step == cfg.steps:
            h = history[-1]
            log(f"step {step}/{cfg.steps}  loss {h['total']:.4f}  vertex {h['vertex']:.4f} mm²  "
                f"velocity {h['velocity']:.4f}  emotion {h['emotion']:.3f}  "
                f"({time.perf_counter() - started:.0f} s)")
        if held and (step % cfg.validate_every == 0 or step == cfg.steps):
            v = validate(*_kept(modules, averaged), held, dataset.topology.template, lips, basis)
            history[-1].update(v)
            log(f"held-out voices at step {step}: aperture~phones r={v['val_correlation']:.3f} "
                f"(loudness {v['val_loudness_correlation']:.3f}), partial {v['val_partial']:.3f}, closures "
                f"{100 * np.nan_to_num(v['val_closure_share']):.0f} %, vertex {v['val_vertex']:.3f} mm², "
                f"emotion accuracy {100 * v['val_emotion_accuracy']:.0f} %")
        if ddp.is_main and (step % cfg.checkpoint_every == 0 or step == cfg.steps):
            save_checkpoint(ckpt_path, saved, optimizer, step, history)
    if ddp.is_main:
        _write_subject(dataset, corpus, out, cfg, *_kept(modules, averaged), encoder, name, basis, basis_err, log)
    ddp.barrier()
    return history


def _kept(modules: dict, averaged: dict) -> tuple[S2GNet, EmotionExtractor]:
    """The S2GNet and emotion extractor the bundle keeps: the moving averages when kept."""
    pick = lambda k: averaged[k].module if k in averaged else modules[k]
    return pick("s2g"), pick("emotion")


def _motion_basis(dataset: SpeechDataset, corpus, cfg: S2GTrainConfig) -> tuple[MotionBasis, BasisError]:
    """The subject's motion basis (its shape keys), fitted to the training motion: the
    dataset's training sequences and ``cfg.corpus_basis_frames`` evenly spread corpus
    frames; and its reconstruction error on that motion."""
    topo = dataset.topology
    parts = [np.asarray(s.meshes(), np.float32) - topo.template[None] for s in dataset.split("train")]
    if corpus is not None and cfg.corpus_basis_frames > 0:
        recs = _corpus_train(corpus, cfg)
        every = max(1, sum(r.frames for r in recs) // cfg.corpus_basis_frames)
        parts += [np.asarray(r.motion()[::every], np.float32) for r in recs]
    motion = np.concatenate(parts)
    basis = fit_motion_basis(motion, max_components=cfg.basis_components)
    return basis, basis.reconstruction_error(motion)


def mix_lip_map(basis: MotionBasis, upper: int, lower: int) -> torch.Tensor:
    """(V*3, 6) float32: flattened displacements -> the upper and lower lip vertices (x, y, z
    each, same units) of their least-squares basis mix, ``expand(project(d))`` at those two."""
    b = basis.components.reshape(basis.num_components, -1).astype(np.float64)     # (K, V*3)
    cols = [3 * upper + i for i in range(3)] + [3 * lower + i for i in range(3)]
    coefficients = np.linalg.solve(b @ b.T, b)                                    # (K, V*3): d -> c
    return torch.from_numpy((coefficients.T @ b[:, cols]).astype(np.float32))


def _write_subject(dataset: SpeechDataset, corpus, out: Path, cfg: S2GTrainConfig, s2g: S2GNet,
                   extractor: EmotionExtractor, encoder: torch.nn.Module | None,
                   name: str | None, basis: MotionBasis, error: BasisError, log: Callable[[str], None]) -> None:
    topo = dataset.topology
    log(f"motion basis: {basis.num_components} shape keys, reconstruction error "
        f"rms {error.rms_mm:.3f} mm, max {error.max_mm:.3f} mm")
    geometry = Geometry(topo.template, topo.triangles, topo.uvs, topo.face_mask, dict(topo.landmarks))
    with tempfile.TemporaryDirectory() as tmp:
        if encoder is not None:
            spec = EncoderSpec("bundled", "encoder")
            encoder.to("cpu").save_pretrained(tmp, safe_serialization=True)     # its last use: saved from the CPU
        else:
            spec = encoder_spec_from_name(cfg.encoder)
        source = dataset.name + (f" + {corpus.name} ({corpus.hours('train'):.2f} h)" if corpus is not None else "")
        manifest = make_manifest(name or dataset.name, dataset.fps, spec, geometry, basis, s2g.config,
                                 extractor.config, (error.rms_mm, error.max_mm),
                                 description=f"trained by emotalk3d train-s2g on {source}",
                                 training={"s2g": asdict(cfg)})
        subject = Subject(None, manifest, geometry, basis, s2g.config,
                          {k: v.detach().cpu().contiguous() for k, v in s2g.state_dict().items()},
                          extractor.config,
                          {k: v.detach().cpu().contiguous() for k, v in extractor.state_dict().items()},
                          spec)
        subject.save(out, encoder_dir=tmp if encoder is not None else None)
    log(f"wrote subject {out}")
