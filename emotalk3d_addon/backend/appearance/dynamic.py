"""One animated frame of Gaussians: mesh motion, G2ANet and static/dynamic fusion (SPEC 2.4-2.6).

The canonical set G_o holds the Nf face Gaussians first (in ``FaceBinding`` order), then
the No OTF (head-completion) Gaussians, then the Nr rigid-part Gaussians (eyeballs, teeth;
``rigid.py``; Nr may be 0). Every canonical Gaussian i has a static weight
W_i = ``fusion_weight(d_i)``: 0 for face Gaussians (d = 0), from the distance to the
nearest face point for OTF ones. A frame is the union of two sets:

**Dynamic set** (listed first), opacity alpha_o * (1 - W):
- every face Gaussian: mu_t = mu_o + (mesh-driven face-vertex motion), so it sits on the
  upsampled mesh when mu_o does (its initialisation) and keeps a trained offset otherwise;
- every OTF Gaussian with W < 1 (within d0 + d_th = 15 mm of the face):
  mu_t = mu_o + delta_f[nearest] * exp(-alpha d) (``otf_motion``; delta_f is the nearest
  face point's raw motion, so at d -> 0 it moves with the surface it borders).
All of them take colour H_t and rotation R_t from G2ANet, with scale S_o and opacity
alpha_o. G2ANet inputs per point: p = the UV of its own (face) or its nearest face
point (OTF); dmu = ``motion_offsets`` over the face Gaussians (motion minus the mean face
motion) for a face Gaussian, and the same decay applied to its nearest face point's dmu
for an OTF Gaussian (``otf_motion(dmu_face, ...)``), so the appearance is invariant to a
global translation of the mesh while positions follow the raw motion.

**Rigid set** (listed after the dynamic set, part of it: ``dynamic`` True, W = 0): every
rigid-part Gaussian moved by its part's rigid fit to the frame's mesh, canonical opacity,
scale and colour (G2ANet does not touch them).

**Static set**, opacity alpha_o * W: every canonical Gaussian with W > 0, i.e. the OTF
Gaussians beyond d0 = 5 mm, at their canonical position, rotation and colour.

Gaussians whose fused opacity is exactly 0 (static face copies, dynamic copies with
W = 1) are left out unless ``drop_hidden=False``. So the face is fully dynamic, hair,
neck and shoulders beyond 15 mm fully canonical, and within the 5-15 mm seam both
copies of a point are drawn with opacities summing to alpha_o.

**Matte.** Every Gaussian carries the face weight 1 - W of the canonical point it comes
from (both of its copies carry the same value). Splatted like a colour it gives the
SPEC's "face/dynamic matte (1 - W splatted)": premultiplied by alpha like the colour
pass (matte <= alpha), 1 x alpha on the face, 0 on hair/shoulders, a ramp over the seam,
and it does not depend on which of the two seam copies happens to be in front, so a
compositor can grade or hold out the face with ``matte`` (or ``matte / alpha``).
"""
from __future__ import annotations

import copy

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .binding import FaceBinding
from .completion import CompletionConfig, OTFBinding, bind_otf, fusion_weight, otf_motion, sample_completion
from .g2anet import G2AConfig, G2ANet, motion_offsets
from .gaussians import GaussianSet
from ..raster.camera import Camera
from ..raster.projection import check_mode
from .rigid import RigidBinding, RigidPart, sample_surface
from .smoothing import filter_std, sampling_intervals, smooth


RIGID_PER_CM2 = 60.0     # rigid-part Gaussians seeded per square centimetre of part surface


@dataclass(eq=False)
class FrameGaussians:
    """Gaussians ready to rasterise for one frame, N of them.

    means (N, 3) metres; quats (N, 4) unit wxyz; scales (N, 3) linear standard
    deviations, metres; opacities (N,) in [0, 1] (fusion applied); sh (N, K, 3) INRIA SH;
    matte (N,) face weight 1 - W in [0, 1]; source (N,) int64 index of the canonical
    Gaussian each one comes from; dynamic (N,) bool, True for the dynamic copy.

    Render with ``raster.rasterize(f.means, f.quats, f.scales, f.opacities, f.sh, camera,
    sh_degree=f.sh_degree, extra=f.matte[:, None])``; its extra pass is the face matte.
    """

    means: torch.Tensor
    quats: torch.Tensor
    scales: torch.Tensor
    opacities: torch.Tensor
    sh: torch.Tensor
    matte: torch.Tensor
    source: torch.Tensor
    dynamic: torch.Tensor

    @property
    def num(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        return math.isqrt(int(self.sh.shape[1])) - 1


def static_weights(binding: FaceBinding, otf: OTFBinding, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32, num_rigid: int = 0) -> torch.Tensor:
    """(Nf + No + Nr,) static weight W of every canonical Gaussian: 0 for the face, W_p(d)
    for OTF, 0 for the rigid parts."""
    return torch.cat([torch.zeros(binding.num, device=device, dtype=dtype),
                      fusion_weight(otf.distance.to(device=device, dtype=dtype)),
                      torch.zeros(num_rigid, device=device, dtype=dtype)])


def compose_frame(canonical: GaussianSet, binding: FaceBinding, otf: OTFBinding, net: G2ANet,
                  vertices: torch.Tensor, emotion: torch.Tensor, *, drop_hidden: bool = True,
                  rigid: RigidBinding | None = None, smoothing: torch.Tensor | None = None) -> FrameGaussians:
    """The fused Gaussians of one frame (see the module docstring); differentiable.

    canonical: Nf face, No OTF, then Nr rigid Gaussians; vertices (V, 3) mesh at time t,
    metres (the template's topology, before upsampling); emotion (E,) the G2ANet condition.
    ``smoothing`` (Nf + No + Nr,) metres: the 3D smoothing filter's standard deviation of
    every canonical Gaussian (``smoothing.py``), applied to both copies of it; None: none.
    """
    rigid = rigid if rigid is not None else RigidBinding.empty()
    nf, no, nr = binding.num, otf.num, rigid.num
    if canonical.num != nf + no + nr:
        raise ValueError(f"canonical set has {canonical.num} Gaussians, expected {nf} face + {no} OTF "
                         f"+ {nr} rigid")
    if smoothing is not None and tuple(smoothing.shape) != (canonical.num,):
        raise ValueError(f"smoothing must be ({canonical.num},), got {tuple(smoothing.shape)}")
    if canonical.sh_degree != net.config.sh_degree:
        raise ValueError(f"canonical SH degree {canonical.sh_degree} != G2ANet's {net.config.sh_degree}")
    vertices, emotion = torch.as_tensor(vertices), torch.as_tensor(emotion)
    if vertices.ndim != 2:
        raise ValueError(f"vertices must have shape (V, 3) for one frame, got {tuple(vertices.shape)}")
    dev, dt = canonical.device, canonical.dtype
    vertices = vertices.to(device=dev, dtype=dt)
    face = canonical.index(slice(0, nf))
    rest = canonical.index(slice(nf, nf + no))
    nearest = otf.nearest.to(dev)
    w_otf = fusion_weight(otf.distance.to(device=dev, dtype=dt))
    if drop_hidden:
        dyn = torch.nonzero(w_otf < 1.0).squeeze(1)
        stat = torch.nonzero(w_otf > 0.0).squeeze(1)
    else:
        dyn = stat = torch.arange(no, device=dev)

    # Dynamic set: face Gaussians on the mesh, OTF Gaussians near the face with decayed motion.
    motion_face = binding.displacement(vertices)  # (Nf, 3) mesh motion from the template, metres
    mu_face = face.means + motion_face
    dmu_face = motion_offsets(mu_face, face.means)
    dist_dyn = otf.distance.to(device=dev, dtype=dt)[dyn]
    motion_otf = otf_motion(motion_face, nearest[dyn], dist_dyn)
    uv = binding.uv_tensor(dev, dt)
    w_dyn = torch.cat([torch.zeros(nf, device=dev, dtype=dt), w_otf[dyn]])
    sh_t, quat_t = net(
        torch.cat([face.sh, rest.sh[dyn]]),
        torch.cat([face.quats, rest.quats[dyn]]),
        emotion.to(device=dev, dtype=dt),
        torch.cat([uv, uv[nearest[dyn]]]),
        torch.cat([dmu_face, otf_motion(dmu_face, nearest[dyn], dist_dyn)]),
    )
    dyn_src = torch.cat([torch.arange(nf, device=dev), nf + dyn])
    dyn_log_s = torch.cat([face.log_scales, rest.log_scales[dyn]])
    dyn_logit = torch.cat([face.opacity_logits, rest.opacity_logits[dyn]])

    # Rigid set: each part moved by its rigid fit to the mesh; canonical appearance.
    parts = canonical.index(slice(nf + no, None))
    mu_rigid, quat_rigid = rigid.move(parts.means, parts.quats, vertices)
    rigid_src = torch.arange(nf + no, nf + no + nr, device=dev)

    # Static set: canonical Gaussians, opacity x W.
    if drop_hidden:
        st_src = nf + stat
        w_st = w_otf[stat]
    else:
        st_src = torch.arange(nf + no + nr, device=dev)
        w_st = torch.cat([torch.zeros(nf, device=dev, dtype=dt), w_otf, torch.zeros(nr, device=dev, dtype=dt)])
    st = canonical.index(st_src)

    quats = torch.cat([quat_t, quat_rigid, st.quats])
    w = torch.cat([w_dyn, torch.zeros(nr, device=dev, dtype=dt), w_st])
    source = torch.cat([dyn_src, rigid_src, st_src])
    scales = torch.exp(torch.cat([dyn_log_s, parts.log_scales, st.log_scales]))
    opacities = torch.cat([torch.sigmoid(dyn_logit) * (1.0 - w_dyn), torch.sigmoid(parts.opacity_logits),
                           torch.sigmoid(st.opacity_logits) * w_st])
    if smoothing is not None:
        scales, opacities = smooth(scales, opacities, smoothing.to(device=dev, dtype=dt)[source])
    return FrameGaussians(
        means=torch.cat([mu_face, rest.means[dyn] + motion_otf, mu_rigid, st.means]),
        quats=torch.nn.functional.normalize(quats, dim=-1),
        scales=scales,
        opacities=opacities,
        sh=torch.cat([sh_t, parts.sh, st.sh]),
        matte=1.0 - w,
        source=source,
        dynamic=torch.cat([torch.ones(dyn_src.shape[0] + nr, dtype=torch.bool, device=dev),
                           torch.zeros(st_src.shape[0], dtype=torch.bool, device=dev)]),
    )


@dataclass(eq=False)
class AnimatedHead:
    """A subject's animatable appearance: canonical Gaussians (face, OTF, rigid parts),
    bindings, G2ANet and, optionally, the 3D smoothing filter ``smoothing`` (Nf + No + Nr,)
    metres, one standard deviation per canonical Gaussian (``smoothing.py``; None: none).
    ``raster_mode`` is the rasteriser mode it is trained and drawn with (``raster.projection``:
    classic, or antialiased with the 2D mip filter)."""

    canonical: GaussianSet
    binding: FaceBinding
    otf: OTFBinding
    net: G2ANet
    rigid: RigidBinding = field(default_factory=RigidBinding.empty)
    smoothing: torch.Tensor | None = None
    raster_mode: str = "classic"

    def frame(self, vertices: torch.Tensor, emotion: torch.Tensor, *, drop_hidden: bool = True) -> FrameGaussians:
        """``compose_frame`` for a mesh frame (V, 3) metres and an emotion vector (E,)."""
        return compose_frame(self.canonical, self.binding, self.otf, self.net, vertices, emotion,
                             drop_hidden=drop_hidden, rigid=self.rigid, smoothing=self.smoothing)

    def to(self, device: torch.device | str) -> "AnimatedHead":
        """A copy on ``device`` in eval mode; this head (a subject's) is left as it was."""
        head = AnimatedHead(self.canonical, self.binding, self.otf, copy.deepcopy(self.net).eval(), self.rigid,
                            self.smoothing, self.raster_mode)
        return head.move_to_(device)

    def move_to_(self, device: torch.device | str) -> "AnimatedHead":
        """Move this head to ``device`` in place (training): canonical Gaussians, OTF and rigid
        bindings, G2ANet, the smoothing filter. Returns the head."""
        device = torch.device(device)
        self.canonical = self.canonical.to(device)
        self.otf = self.otf.to(device)
        self.rigid = self.rigid.to(device)
        self.net.to(device)
        if self.smoothing is not None:
            self.smoothing = self.smoothing.to(device)
        return self

    def fit_smoothing(self, cameras: list[Camera], variance: float) -> None:
        """Set ``smoothing`` from the canonical means seen by the training ``cameras`` with
        the filter variance ``variance`` (training pixels squared); 0 removes the filter."""
        if variance <= 0:
            self.smoothing = None
            return
        self.smoothing = filter_std(sampling_intervals(self.canonical.means.detach(), cameras), variance)

    @property
    def otf_slice(self) -> slice:
        """Rows of the OTF Gaussians in ``canonical``."""
        return slice(self.binding.num, self.binding.num + self.otf.num)

    @property
    def rigid_slice(self) -> slice:
        """Rows of the rigid-part Gaussians in ``canonical``."""
        start = self.binding.num + self.otf.num
        return slice(start, start + self.rigid.num)

    @property
    def weights(self) -> torch.Tensor:
        """(Nf + No + Nr,) static weight W of every canonical Gaussian."""
        return static_weights(self.binding, self.otf, self.canonical.device, self.canonical.dtype, self.rigid.num)

    def keep_otf(self, keep: torch.Tensor) -> None:
        """Keep only the OTF Gaussians where ``keep`` (No,) bool is true (in place): the
        canonical rows, their bindings and their smoothing filter; face and rigid parts stay."""
        if keep.dtype != torch.bool or tuple(keep.shape) != (self.otf.num,):
            raise ValueError(f"keep must be a ({self.otf.num},) bool mask, got {keep.dtype} {tuple(keep.shape)}")
        rows = torch.ones(self.canonical.num, dtype=torch.bool, device=self.canonical.device)
        rows[self.otf_slice] = keep.to(rows.device)
        self.canonical = self.canonical.index(rows)
        mask = keep.to(self.otf.nearest.device)
        self.otf = OTFBinding(self.otf.nearest[mask], self.otf.distance[mask])
        if self.smoothing is not None:
            self.smoothing = self.smoothing[rows.to(self.smoothing.device)]

    def rebind(self) -> None:
        """Recompute every OTF point's nearest face point from the current canonical means."""
        nf = self.binding.num
        self.otf = bind_otf(self.canonical.means[self.otf_slice].detach(), self.canonical.means[:nf].detach())

    @classmethod
    def initial(cls, template: np.ndarray, triangles: np.ndarray, uvs: np.ndarray, face_mask: np.ndarray, *,
                g2a: G2AConfig | None = None, completion: CompletionConfig | None = None,
                opacity: float = 0.1, rigid_parts: list[RigidPart] | tuple[RigidPart, ...] = (),
                rigid_per_cm2: float = RIGID_PER_CM2, raster_mode: str = "classic") -> "AnimatedHead":
        """An untrained head: face Gaussians on the upsampled template, OTF points sampled
        around it, rigid-part Gaussians on each part's surface (``rigid_per_cm2`` per square
        centimetre, seeded like the completion), to be trained and drawn in ``raster_mode``.

        Grey, isotropic, opacity ``opacity`` (as 3DGS initialises). Face scale: half the mean
        edge length of the subdivided face mesh; OTF scale: half the mean point spacing
        (box volume / count)^(1/3); rigid scale: half the spacing on the part's surface.
        template (V, 3) metres, triangles (T, 3), uvs (V, 2), face_mask (V,) bool.
        """
        g2a = g2a or G2AConfig()
        binding = FaceBinding.build(template, triangles, uvs, face_mask)
        face_pts = torch.from_numpy(binding.rest_positions.copy())
        cfg = completion or CompletionConfig()
        otf_pts = sample_completion(face_pts, cfg)
        # face scale from subdivided edges between face vertices
        sub = binding.subdivision
        up = sub.upsample(np.asarray(template, np.float64))
        tri = sub.triangles
        e = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])
        in_face = np.zeros(sub.num_vertices, bool)
        in_face[binding.vertex_index] = True
        e = e[in_face[e[:, 0]] & in_face[e[:, 1]]]
        edge = float(np.linalg.norm(up[e[:, 0]] - up[e[:, 1]], axis=1).mean()) if len(e) else 0.002
        face = GaussianSet.from_points(face_pts, sh_degree=g2a.sh_degree, scale=0.5 * edge, opacity=opacity)
        if otf_pts.shape[0]:
            lo, hi = otf_pts.min(0).values, otf_pts.max(0).values
            spacing = float(((hi - lo).clamp_min(1e-6).prod() / otf_pts.shape[0]) ** (1.0 / 3.0))
        else:
            spacing = 2 * edge
        otf_set = GaussianSet.from_points(otf_pts, sh_degree=g2a.sh_degree, scale=0.5 * spacing, opacity=opacity)
        sets, part_of = [face, otf_set], []
        generator = torch.Generator().manual_seed(int(cfg.seed) + 1)
        for k, part in enumerate(rigid_parts):
            area_cm2 = part.area() * 1e4
            count = max(1, int(round(rigid_per_cm2 * area_cm2)))
            pts = sample_surface(part, count, generator)
            spacing = math.sqrt(part.area() / count)
            sets.append(GaussianSet.from_points(pts, sh_degree=g2a.sh_degree, scale=0.5 * spacing, opacity=opacity))
            part_of.append(torch.full((pts.shape[0],), k, dtype=torch.int64))
        rigid = RigidBinding.build([p.name for p in rigid_parts],
                                   torch.cat(part_of) if part_of else torch.zeros(0, dtype=torch.int64),
                                   [p.anchor for p in rigid_parts], template)
        canonical = GaussianSet.concat(sets)
        check_mode(raster_mode)
        return cls(canonical, binding, bind_otf(otf_pts, face_pts), G2ANet(g2a), rigid, raster_mode=raster_mode)
