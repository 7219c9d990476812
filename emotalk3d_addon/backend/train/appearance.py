"""Training of the appearance half: canonical Gaussians (3DGS), then G2ANet.

Stage 1, canonical (SPEC 2.4): the speech-free first frame of the neutral sequences, all
cameras. Face Gaussians sit on the 4x upsampled tracked mesh (their positions stay bound
to it); head-completion (OTF) Gaussians are free; the dataset's rigid parts (eyeballs,
teeth: ``appearance/rigid.py``) get Gaussians seeded on their surfaces, free in their part. Loss: (1 - w) L1 + w D-SSIM (w = 0.2)
on premultiplied RGB + alpha. Every Gaussian is drawn through the 3D smoothing filter
(``appearance/smoothing.py``), refitted to the training cameras as the Gaussians move and
after every densification, so none learns to be finer than the images. The OTF set is
densified (clone small / split large Gaussians whose position gradient is high) and pruned
(opacity < 0.005), as in 3DGS.

Stage 2, G2ANet (SPEC 2.5): multi-view frames of every training sequence with their
tracked meshes and emotion labels; the same photometric loss. G2ANet learns, and so do the
rigid parts' Gaussians, which the speech-free frame hides in part (teeth behind closed
lips: only open-mouth frames show them). With ``g2a_finetune_canonical`` (the default) every
canonical Gaussian is fine-tuned too, face positions excepted (they stay bound to the mesh):
one neutral frame cannot tell the face's own Gaussians from static completion Gaussians
behind it that paint the skin through them, and those static copies are what ghosts
(neutral brows left behind when the brows rise); frames of every emotion can tell them apart.

Both stages train on a ``device``: the head (Gaussians, bindings, G2ANet, smoothing filter),
its optimiser state and each step's mesh, emotion, image and camera live there, and
``render_head`` rasterises there (on CUDA with the GPU rasteriser). The head a stage returns
or leaves behind is on the CPU again, ready to be written.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch

from ..appearance.completion import CompletionConfig, bind_otf
from ..appearance.dynamic import AnimatedHead
from ..appearance.g2anet import G2AConfig
from ..appearance.gaussians import GaussianSet
from ..appearance.observed import DEFAULT_BAND_M, DEFAULT_VIEWS, limit_to_observed
from ..appearance.smoothing import FILTER_VARIANCE
from ..datasets.layout import SpeechDataset
from ..datasets.multiview import NamedCamera, View, read_rgba, views
from ..emotions import one_hot
from ..errors import DatasetError
from ..render.frame import emotion_input, render_head
from ..tools.face_regions import region_map
from .image_losses import photometric_loss


@dataclass
class AppearanceTrainConfig:
    canonical_steps: int = 3000
    g2a_steps: int = 3000
    num_otf: int = 85_500
    sh_degree: int = 3
    g2a_hidden: int = 128
    g2a_uv_frequencies: int = 4       # octaves of G2ANet's UV encoding (finest period 2/2^(F-1) UV); 8 gained nothing on the demo
    ssim_weight: float = 0.2
    lr_means: float = 1.6e-4          # x scene extent (metres), as 3DGS
    lr_sh: float = 2.5e-3             # all SH coefficients (3DGS uses 1/20 of it for the rest)
    lr_opacity: float = 0.05
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_g2a: float = 5e-4
    densify_every: int = 100
    densify_until: float = 0.6        # fraction of the canonical steps
    grad_threshold: float = 2e-4      # mean position-gradient norm that makes a Gaussian a candidate
    densify_fraction: float = 0.05    # at most this share of the OTF set grows per round (hottest first)
    percent_dense: float = 0.01       # clone below this size (fraction of the extent), else split
    prune_opacity: float = 0.005
    max_gaussians: int = 400_000
    sh_warmup: int = 500              # steps per added SH degree (3DGS: 1000)
    rigid_parts: bool = True          # Gaussians on the dataset's rigid parts (eyeballs, teeth), if it has any
    g2a_finetune_canonical: bool = True   # stage 2 also fine-tunes the canonical Gaussians (else: rigid ones only)
    surface_opacity_min: float = 0.0  # face and rigid-part Gaussians (skin, eyes, teeth) keep at least this opacity; 0: free
    face_static_weight: float = 0.0   # weight of the static share (alpha - matte) seen where the face mesh is in front
    smoothing_variance: float = FILTER_VARIANCE   # the 3D smoothing filter (training pixels²); 0: none
    smoothing_every: int = 100        # steps between refits of the filter to the moving Gaussians
    raster_mode: str = "antialiased"  # with the 3D filter, Mip-Splatting's 2D mip filter; or "classic" (3DGS)
    observed_views: int = DEFAULT_VIEWS       # OTF Gaussians whose centre fewer cameras see are removed after each stage (0: none)
    observed_band_m: float = DEFAULT_BAND_M   # ... and their opacity fades out over this inset (metres) at the edge
    seed: int = 0


def g2a_config(cfg: AppearanceTrainConfig) -> G2AConfig:
    """The G2ANet hyper-parameters a training run builds its net with."""
    return G2AConfig(sh_degree=cfg.sh_degree, hidden=cfg.g2a_hidden, uv_frequencies=cfg.g2a_uv_frequencies)


def emotion_vector(emotion: str, intensity: float) -> torch.Tensor:
    """(8,) G2ANet emotion input of one emotion at ``intensity`` (``render.frame.emotion_input``)."""
    return emotion_input(one_hot(emotion), intensity)


class _ViewBank:
    """Training views: the meshes and emotions of their frames (loaded once), images on demand."""

    def __init__(self, dataset: SpeechDataset, selected: list[View]):
        if not selected:
            raise DatasetError(f"{dataset.root}: no multi-view images found for training")
        self.views = selected
        self.triangles = np.ascontiguousarray(dataset.topology.triangles, np.int64)
        self.face_labels = np.asarray(dataset.topology.face_mask).astype(np.int8)
        meshes: dict[str, np.ndarray] = {}
        self.vertices, self.emotions = [], []
        for v in selected:
            if v.sequence.name not in meshes:
                meshes[v.sequence.name] = np.asarray(v.sequence.meshes(), np.float32)
            self.vertices.append(torch.from_numpy(meshes[v.sequence.name][v.frame].copy()))
            self.emotions.append(emotion_vector(v.sequence.emotion,
                                                v.sequence.intensity if v.sequence.emotion != "neutral" else 0.0))

    def __len__(self) -> int:
        return len(self.views)

    def image(self, i: int) -> torch.Tensor:
        """(H, W, 4) premultiplied RGBA of view i, read when needed (thousands of views)."""
        return read_rgba(self.views[i].path)


def _loss(head: AnimatedHead, bank: _ViewBank, i: int, cfg: AppearanceTrainConfig,
          sh_degree: int | None = None) -> torch.Tensor:
    camera = bank.views[i].camera.camera
    device = head.canonical.device          # the bank stays on the CPU; each step's view goes over
    out = render_head(head, bank.vertices[i].to(device), bank.emotions[i].to(device), camera, sh_degree=sh_degree)
    render = torch.cat([out.rgb, out.alpha[..., None]], dim=-1)
    loss = photometric_loss(render, bank.image(i).to(device), cfg.ssim_weight)
    if cfg.face_static_weight > 0:
        cover = torch.from_numpy(region_map(bank.vertices[i].numpy(), bank.triangles, bank.face_labels, camera) > 0)
        cover = cover.to(device)
        if cover.any():
            static = out.alpha - out.extra[..., 0]          # what static copies paint (alpha * W splatted)
            loss = loss + cfg.face_static_weight * static[cover].mean()
    return loss


def hold_surface_opacity(head: AnimatedHead, floor: float) -> None:
    """Raise every face and rigid-part Gaussian's opacity to at least ``floor`` in [0, 1) (in place).

    Skin, eyeballs and teeth are opaque surfaces; a see-through face layer lets completion
    Gaussians behind it paint the skin, and those do not move with the face.
    """
    if floor <= 0.0:
        return
    if not floor < 1.0:
        raise ValueError(f"surface_opacity_min must be in [0, 1), got {floor}")
    logit = math.log(floor / (1.0 - floor))
    with torch.no_grad():
        for rows in (slice(0, head.binding.num), head.rigid_slice):
            head.canonical.opacity_logits[rows] = head.canonical.opacity_logits[rows].clamp_min(logit)


def _canonical_optimizer(head: AnimatedHead, cfg: AppearanceTrainConfig, extent: float) -> torch.optim.Adam:
    c = head.canonical
    c.requires_grad_(True)
    return torch.optim.Adam([
        {"params": [c.means], "lr": cfg.lr_means * extent},
        {"params": [c.quats], "lr": cfg.lr_quats},
        {"params": [c.log_scales], "lr": cfg.lr_scales},
        {"params": [c.opacity_logits], "lr": cfg.lr_opacity},
        {"params": [c.sh], "lr": cfg.lr_sh},
    ], eps=1e-15)


def _densify_and_prune(head: AnimatedHead, grad_sum: torch.Tensor, grad_count: torch.Tensor,
                       cfg: AppearanceTrainConfig, extent: float, generator: torch.Generator) -> tuple[int, int]:
    """Clone/split OTF Gaussians with a high mean position gradient, prune transparent ones."""
    nf = head.binding.num
    c = head.canonical.detach()
    face, otf, rig = c.index(slice(0, nf)), c.index(head.otf_slice), c.index(head.rigid_slice)
    mean_grad = grad_sum / grad_count.clamp_min(1)
    hot = mean_grad > cfg.grad_threshold
    budget = int(cfg.densify_fraction * otf.num)
    if int(hot.sum()) > budget:
        hot &= mean_grad >= torch.topk(mean_grad, max(budget, 1)).values[-1]
    big = otf.log_scales.exp().max(dim=1).values > cfg.percent_dense * extent
    room = max(0, cfg.max_gaussians - c.num)
    clone = torch.nonzero(hot & ~big).squeeze(1)[:room]
    split = torch.nonzero(hot & big).squeeze(1)[: max(0, room - clone.numel())]
    parts = [otf.index(~torch.isin(torch.arange(otf.num, device=split.device), split)), otf.index(clone)]
    if split.numel():
        pieces = otf.index(torch.cat([split, split]))
        std = pieces.log_scales.exp()
        rot = _rotation_matrices(pieces.quats)
        # drawn on the CPU generator whatever the device, so every device splits alike
        noise = torch.randn(std.shape, generator=generator).to(std.device)
        offset = torch.einsum("nij,nj->ni", rot, noise * std)
        parts.append(GaussianSet(pieces.means + offset, pieces.quats, pieces.log_scales - math.log(1.6),
                                 pieces.opacity_logits, pieces.sh))
    grown = GaussianSet.concat(parts)
    keep = torch.sigmoid(grown.opacity_logits) >= cfg.prune_opacity
    grown = grown.index(keep)
    keep_rigid = torch.sigmoid(rig.opacity_logits) >= cfg.prune_opacity
    head.rigid = head.rigid.index(keep_rigid)
    head.canonical = GaussianSet.concat([face, grown, rig.index(keep_rigid)]).clone()
    head.otf = bind_otf(head.canonical.means[nf:nf + grown.num], head.canonical.means[:nf])
    return int(clone.numel() + split.numel()), int((~keep).sum() + (~keep_rigid).sum())


def _rotation_matrices(quats: torch.Tensor) -> torch.Tensor:
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], dim=-1).reshape(-1, 3, 3)


def _canonical_views(dataset: SpeechDataset, cameras: list[NamedCamera]) -> list[View]:
    train = dataset.split("train")
    neutral = [s for s in train if s.emotion == "neutral"] or train
    return views(neutral, cameras, frames="first")


def train_canonical(dataset: SpeechDataset, cameras: list[NamedCamera], cfg: AppearanceTrainConfig,
                    log: Callable[[str], None] = print, progress: Callable[[int, float], None] | None = None,
                    device: torch.device | str = "cpu") -> AnimatedHead:
    """Stage 1: the canonical Gaussians of a speech-free neutral frame (multi-view 3DGS),
    trained on ``device``; the head is returned on the CPU."""
    topo = dataset.topology
    torch.manual_seed(cfg.seed)
    bank = _ViewBank(dataset, _canonical_views(dataset, cameras))
    head = AnimatedHead.initial(topo.template, topo.triangles, topo.uvs, topo.face_mask,
                                g2a=g2a_config(cfg),
                                completion=CompletionConfig(num_points=cfg.num_otf, seed=cfg.seed),
                                rigid_parts=dataset.rigid_parts if cfg.rigid_parts else (),
                                raster_mode=cfg.raster_mode)
    if head.rigid.num:
        log(f"rigid parts: {', '.join(head.rigid.names)} ({head.rigid.num} Gaussians)")
    head.move_to_(device)
    head.net.requires_grad_(False)
    hold_surface_opacity(head, cfg.surface_opacity_min)
    train_cameras = [c.camera for c in cameras]
    head.fit_smoothing(train_cameras, cfg.smoothing_variance)
    means = head.canonical.means.detach()
    extent = float((means.max(0).values - means.min(0).values).norm())
    optimizer = _canonical_optimizer(head, cfg, extent)
    nf = head.binding.num
    dev = head.canonical.device
    grad_sum = torch.zeros(head.otf.num, device=dev)
    grad_count = torch.zeros(head.otf.num, device=dev)
    generator = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    started = time.perf_counter()
    for step in range(1, cfg.canonical_steps + 1):
        i = int(rng.integers(len(bank)))
        degree = min(cfg.sh_degree, step // cfg.sh_warmup)
        loss = _loss(head, bank, i, cfg, degree)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        c = head.canonical
        c.means.grad[:nf] = 0.0                      # face positions stay bound to the mesh
        grad_sum += c.means.grad[head.otf_slice].norm(dim=1)
        grad_count += 1
        optimizer.step()
        with torch.no_grad():
            c.quats.copy_(torch.nn.functional.normalize(c.quats, dim=-1))
        hold_surface_opacity(head, cfg.surface_opacity_min)
        if progress:
            progress(step, loss.item())
        if step % cfg.densify_every == 0 and step <= cfg.densify_until * cfg.canonical_steps:
            grown, pruned = _densify_and_prune(head, grad_sum, grad_count, cfg, extent, generator)
            optimizer = _canonical_optimizer(head, cfg, extent)
            grad_sum = torch.zeros(head.otf.num, device=dev)
            grad_count = torch.zeros(head.otf.num, device=dev)
            log(f"canonical step {step}: loss {loss.item():.4f}, +{grown} / -{pruned} Gaussians "
                f"-> {head.canonical.num} ({time.perf_counter() - started:.0f} s)")
            head.fit_smoothing(train_cameras, cfg.smoothing_variance)
        elif step % cfg.smoothing_every == 0:
            head.fit_smoothing(train_cameras, cfg.smoothing_variance)
    head.canonical = head.canonical.detach()
    _limit_to_observed(head, train_cameras, topo.template, cfg, log)
    head.fit_smoothing(train_cameras, cfg.smoothing_variance)
    head.net.requires_grad_(True)
    return head.move_to_("cpu")


def train_g2a(dataset: SpeechDataset, cameras: list[NamedCamera], head: AnimatedHead, cfg: AppearanceTrainConfig,
              log: Callable[[str], None] = print, progress: Callable[[int, float], None] | None = None,
              device: torch.device | str = "cpu") -> list[float]:
    """Stage 2: G2ANet from multi-view frames with their meshes, trained on ``device`` (``head``
    is trained in place and left on the CPU); returns the loss per step."""
    torch.manual_seed(cfg.seed)
    bank = _ViewBank(dataset, views(dataset.split("train"), cameras))
    head.move_to_(device)
    head.canonical = head.canonical.detach()
    groups = [{"params": list(head.net.parameters()), "lr": cfg.lr_g2a}]
    fixed = None     # per canonical tensor, the rows that must not move (None: no canonical training)
    if head.rigid.num or cfg.g2a_finetune_canonical:
        # rows kept get no gradient, so Adam (no weight decay) never moves them
        means = head.canonical.means
        extent = float((means.max(0).values - means.min(0).values).norm())
        groups += _canonical_optimizer(head, cfg, extent).param_groups
        rows = torch.ones(head.canonical.num, dtype=torch.bool, device=head.canonical.device)
        if cfg.g2a_finetune_canonical:
            rows[:] = False
        rows[head.rigid_slice] = False
        face_bound = rows.clone()
        face_bound[: head.binding.num] = True          # face positions stay bound to the mesh
        fixed = [face_bound if t is head.canonical.means else rows for t in head.canonical.tensors()]
    optimizer = torch.optim.Adam(groups, eps=1e-15)
    if fixed is not None:
        hold_surface_opacity(head, cfg.surface_opacity_min)
    train_cameras = [c.camera for c in cameras]
    head.fit_smoothing(train_cameras, cfg.smoothing_variance)
    rng = np.random.default_rng(cfg.seed + 1)
    history = []
    head.net.train()
    for step in range(1, cfg.g2a_steps + 1):
        loss = _loss(head, bank, int(rng.integers(len(bank))), cfg)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if fixed is not None:
            for t, rows in zip(head.canonical.tensors(), fixed):
                t.grad[rows] = 0.0
        optimizer.step()
        if fixed is not None:
            with torch.no_grad():
                q, learn = head.canonical.quats, ~fixed[1]
                q[learn] = torch.nn.functional.normalize(q[learn], dim=-1)
            hold_surface_opacity(head, cfg.surface_opacity_min)
            if step % cfg.smoothing_every == 0:
                head.fit_smoothing(train_cameras, cfg.smoothing_variance)
        history.append(loss.item())
        if progress:
            progress(step, loss.item())
        if progress is None and step % max(1, cfg.g2a_steps // 10) == 0:
            log(f"G2ANet step {step}/{cfg.g2a_steps}: loss {np.mean(history[-50:]):.4f}")
    head.net.eval()
    head.canonical = head.canonical.detach()
    _limit_to_observed(head, train_cameras, dataset.topology.template, cfg, log)
    head.fit_smoothing(train_cameras, cfg.smoothing_variance)
    head.move_to_("cpu")
    return history


def _limit_to_observed(head: AnimatedHead, cameras: list, template: np.ndarray, cfg: AppearanceTrainConfig,
                       log: Callable[[str], None]) -> None:
    """The OTF Gaussians kept to what the training cameras saw (``appearance.observed``),
    measured on the neutral template; ``cfg.observed_views`` 0 keeps them all."""
    if cfg.observed_views <= 0:
        return
    net_was_training = head.net.training
    head.net.eval()
    report = limit_to_observed(head, cameras, torch.as_tensor(np.asarray(template, np.float32)),
                               emotion_vector("neutral", 0.0), cfg.observed_views, cfg.observed_band_m)
    head.net.train(net_was_training)
    if report.removed or report.capped:
        log(f"observed region: removed {report.removed} head-completion Gaussians outside it, "
            f"faded {report.capped} at its edge")


def config_dict(cfg: AppearanceTrainConfig) -> dict:
    return asdict(cfg)
