"""The observed region: keep head-completion Gaussians to what the training cameras saw.

The OTF (head-completion) Gaussians are sampled in a box that reaches below the training
images' lower edge (the shoulders) and fill the inside of the body. Gaussians below the
images, or hidden behind the surface in every view, are never compared with a pixel: they
keep their random start or drift, and render as grey fog, dark specks and long streaks
along the lower edge of the shoulders as soon as a camera looks from further away, from
above or from below.

Two measures, per OTF Gaussian:
- its **inset**: for one camera, how far inside the image its centre projects, in metres at
  its depth (distance to the nearest image edge in pixels x depth / focal length; minus
  infinity behind the camera), taken at the ``views``-th best camera: positive means that
  at least ``views`` cameras have the centre in their image;
- its **seen weight**: how many pixels' worth it draws in all the training images together
  (occlusion included), from one neutral frame through every training camera.

``limit_to_observed`` removes OTF Gaussians that are outside or never seen, and limits the
opacity and size of those within a band of the edge, so the body ends in a soft edge along
the region the cameras covered. Face and rigid-part Gaussians are left as they are (they
sit on the tracked mesh, the eyes and the teeth). Limits cap rather than scale, so a second
call changes little: training calls it after each stage, and ``emotalk3d limit-observed``
applies it to a bundle trained before.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..raster.camera import Camera

DEFAULT_VIEWS = 1
"""Cameras that must have a Gaussian's centre in their image for it to count as observed.
One: the shoulder nearest a side camera is often in that camera's image alone (on the demo,
three removed parts of it that the side views show); what lies behind the body in every view
is caught by the seen weight instead."""

DEFAULT_BAND_M = 0.03
"""Width of the soft edge, metres of inset (3 cm: about 40 pixels of a 512-pixel training
image that spans 40 cm)."""

DEFAULT_MIN_SEEN_PX = 1.0
"""A Gaussian that draws less than one pixel's worth in all the training images together
was never really compared with one."""


@dataclass(frozen=True)
class ObservedReport:
    """What ``limit_to_observed`` changed: OTF Gaussians removed and opacities capped."""

    removed: int      # OTF Gaussians removed (unobserved)
    capped: int       # kept ones whose opacity or size was limited at the edge
    kept: int


def insets(means: torch.Tensor, cameras: list[Camera]) -> torch.Tensor:
    """(C, N) float32 metres: how far inside each camera's image each centre projects
    (distance to the nearest image edge at the point's depth); -inf behind a camera.
    means: (N, 3) world/subject-space metres."""
    if not cameras:
        return torch.full((0, means.shape[0]), float("-inf"))
    pts = means.detach().to("cpu", torch.float64)
    rows = []
    for cam in cameras:
        w2c = cam.world_to_camera.detach().to("cpu", torch.float64)
        K = cam.K.detach().to("cpu", torch.float64)
        p = pts @ w2c[:3, :3].T + w2c[:3, 3]
        z = p[:, 2]
        safe_z = torch.where(z > 0, z, torch.ones_like(z))
        u = K[0, 0] * p[:, 0] / safe_z + K[0, 2]
        v = K[1, 1] * p[:, 1] / safe_z + K[1, 2]
        edge_px = torch.minimum(torch.minimum(u, cam.width - u), torch.minimum(v, cam.height - v))
        # pixels -> metres at the point's depth (the smaller focal length: the stricter)
        metres = edge_px * z / torch.minimum(K[0, 0], K[1, 1])
        rows.append(torch.where(z > cam.near, metres, torch.full_like(metres, float("-inf"))))
    return torch.stack(rows).float()


def observed_inset(means: torch.Tensor, cameras: list[Camera], views: int = DEFAULT_VIEWS) -> torch.Tensor:
    """(N,) float32 metres: the ``views``-th largest inset over the cameras (-inf when there
    are fewer cameras than ``views``); > 0 means at least ``views`` cameras see the centre."""
    if views < 1:
        raise ValueError(f"views must be >= 1, got {views}")
    table = insets(means, cameras)
    if table.shape[0] < views:
        return torch.full((means.shape[0],), float("-inf"))
    return torch.topk(table, views, dim=0).values[-1]


def edge_opacity_cap(inset_m: torch.Tensor, band_m: float = DEFAULT_BAND_M) -> torch.Tensor:
    """(N,) largest opacity allowed for each inset: 0 at or outside the edge, rising linearly
    to 1 at ``band_m`` metres inside it."""
    if not band_m > 0:
        raise ValueError(f"band_m must be positive, got {band_m}")
    return (inset_m / band_m).clamp(0.0, 1.0)


def seen_weight(head, vertices: torch.Tensor, emotion: torch.Tensor, cameras: list[Camera]) -> torch.Tensor:
    """(Nf + No + Nr,) float64: how much of the training images each canonical Gaussian draws,
    in pixels (its blending weight alpha * T summed over every pixel of every camera, both of its
    copies), for the frame ``vertices`` (V, 3) metres with ``emotion`` (8,). Occlusion counts: a
    Gaussian hidden behind the surface in every view gets 0. It is the gradient of the summed
    extra channel with respect to a channel of ones, on whichever rasteriser draws the frame."""
    from ..raster import rasterize

    with torch.no_grad():
        frame = head.frame(vertices.to(head.canonical.device), emotion.to(head.canonical.device), drop_hidden=False)
    total = torch.zeros(head.canonical.num, dtype=torch.float64)
    for cam in cameras:
        ones = torch.ones(frame.means.shape[0], 1, device=frame.means.device, requires_grad=True)
        out = rasterize(frame.means, frame.quats, frame.scales, frame.opacities, frame.sh,
                        cam.to(frame.means.device), sh_degree=frame.sh_degree, extra=ones, mode=head.raster_mode)
        (grad,) = torch.autograd.grad(out.extra.sum(), ones)
        total.index_add_(0, frame.source.cpu(), grad[:, 0].detach().to("cpu", torch.float64))
    return total


@torch.no_grad()
def limit_to_observed(head, cameras: list[Camera], vertices: torch.Tensor, emotion: torch.Tensor,
                      views: int = DEFAULT_VIEWS, band_m: float = DEFAULT_BAND_M,
                      min_seen_px: float = DEFAULT_MIN_SEEN_PX) -> ObservedReport:
    """Keep ``head``'s OTF Gaussians to the observed region, in place (``head`` an
    ``AnimatedHead``; ``vertices`` (V, 3) and ``emotion`` (8,) a neutral frame to measure what
    each Gaussian draws in the training images). Three steps on the OTF Gaussians:

    - near the edge: opacity capped at inset / ``band_m``, and every axis's standard deviation
      at (inset + ``band_m``) / 3, so that neither a Gaussian nor a long thin one reaching
      from inside draws more than a band beyond what the cameras saw;
    - removed: a centre fewer than ``views`` cameras have in their image, or a Gaussian that
      draws less than ``min_seen_px`` pixels in all the training images together (hidden
      inside the body or behind it in every view: never compared with a pixel).

    With fewer cameras than ``views``, all of them must see a Gaussian; with none, nothing
    changes."""
    nf, no = head.binding.num, head.otf.num
    if not cameras or no == 0:
        return ObservedReport(removed=0, capped=0, kept=no)
    views = min(views, len(cameras))
    canonical = head.canonical
    rows = torch.arange(nf, nf + no, device=canonical.device)
    inset = observed_inset(canonical.means[nf:nf + no], cameras, views).to(canonical.device)
    cap = edge_opacity_cap(inset, band_m)
    opacity = torch.sigmoid(canonical.opacity_logits[nf:nf + no])
    capped = (cap > 0) & (opacity > cap)
    if bool(capped.any()):
        # logit of the cap, a hair below it so that sigmoid(logit) <= cap holds in float32
        limit = torch.logit((cap * (1 - 1e-6)).clamp(1e-7, 1 - 1e-6))
        logits = canonical.opacity_logits.detach().clone()
        logits[rows[capped]] = limit[capped].to(logits.dtype)
        canonical.opacity_logits.data.copy_(logits)
    longest = torch.log(((inset.clamp_min(0) + band_m) / 3).clamp_min(1e-6)).unsqueeze(1)
    log_scales = canonical.log_scales.detach().clone()
    shrunk = (log_scales[nf:nf + no] > longest).any(dim=1)
    log_scales[nf:nf + no] = torch.minimum(log_scales[nf:nf + no], longest.to(log_scales.dtype))
    canonical.log_scales.data.copy_(log_scales)
    with torch.enable_grad():
        seen = seen_weight(head, vertices, emotion, cameras)[nf:nf + no].to(canonical.device)
    keep = (cap > 0) & (seen >= min_seen_px)
    removed = int((~keep).sum())
    if removed:
        head.keep_otf(keep)
    return ObservedReport(removed=removed, capped=int((capped | shrunk)[keep].sum()), kept=int(keep.sum()))
