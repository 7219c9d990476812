"""One fused frame: mesh-driven face, decayed OTF motion, static/dynamic opacity fusion, matte, gradients."""
from __future__ import annotations


import pytest
import torch

from emotalk3d_addon.backend.appearance.binding import FaceBinding
from emotalk3d_addon.backend.appearance.completion import CompletionConfig, bind_otf, fusion_weight
from emotalk3d_addon.backend.appearance.dynamic import AnimatedHead, FrameGaussians, compose_frame, static_weights
from emotalk3d_addon.backend.appearance.g2anet import G2AConfig, G2ANet
from emotalk3d_addon.backend.appearance.gaussians import GaussianSet

from .meshes import face_grid

MM = 1e-3


def make_head(seed: int = 0, degree: int = 1) -> AnimatedHead:
    """Face Gaussians on the template + OTF points at 1..40 mm in front of face vertices and far away."""
    template, tri, uvs, mask = face_grid(9)
    binding = FaceBinding.build(template, tri, uvs, mask)
    g = torch.Generator().manual_seed(seed)
    face_pts = torch.from_numpy(binding.rest_positions.copy())
    # OTF points straight in front (-Y) of random face points, at distances covering the seam
    base = face_pts[torch.randint(0, binding.num, (300,), generator=g)]
    d = torch.rand(300, generator=g) * 0.040 + 0.001
    near = base - torch.stack([torch.zeros(300), d, torch.zeros(300)], 1)
    far = torch.rand(100, 3, generator=g) * 0.2 + torch.tensor([-0.1, 0.05, 0.15])  # behind/above: W = 1
    otf_pts = torch.cat([near, far])
    k = (degree + 1) ** 2
    n = binding.num + otf_pts.shape[0]
    canonical = GaussianSet(
        means=torch.cat([face_pts, otf_pts]),
        quats=torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1) * 1.3,
        log_scales=torch.randn(n, 3, generator=g) - 6,
        opacity_logits=torch.randn(n, generator=g),
        sh=torch.randn(n, k, 3, generator=g),
    )
    return AnimatedHead(canonical, binding, bind_otf(otf_pts, face_pts), G2ANet(G2AConfig(sh_degree=degree, hidden=32)))


def moved_mesh(head: AnimatedHead, seed: int = 1, amount: float = 3e-3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    rest = face_grid(9)[0]
    return torch.from_numpy(rest) + amount * torch.randn(rest.shape, generator=g)


def per_source(frame: FrameGaussians, values: torch.Tensor, n: int, dynamic: bool | None = None) -> torch.Tensor:
    keep = torch.ones_like(frame.dynamic) if dynamic is None else frame.dynamic == dynamic
    return torch.zeros(n, dtype=values.dtype).index_add(0, frame.source[keep], values[keep])


@pytest.fixture(scope="module")
def head() -> AnimatedHead:
    return make_head()


def test_seam_is_populated(head):
    w = head.otf.weight
    assert (w == 0).sum() > 10 and (w == 1).sum() > 100 and ((w > 0) & (w < 1)).sum() > 50
    assert torch.equal(head.weights[: head.binding.num], torch.zeros(head.binding.num))


@pytest.mark.parametrize("drop_hidden", [True, False])
def test_opacity_fusion(head, drop_hidden):
    n, nf = head.canonical.num, head.binding.num
    frame = head.frame(moved_mesh(head), torch.eye(8)[5], drop_hidden=drop_hidden)
    alpha = head.canonical.opacities
    w = head.weights
    dyn = per_source(frame, frame.opacities, n, dynamic=True)
    st = per_source(frame, frame.opacities, n, dynamic=False)
    # every canonical point: static alpha*W + dynamic alpha*(1-W) = alpha
    assert torch.allclose(dyn + st, alpha, atol=1e-6)
    assert torch.allclose(st, alpha * w, atol=1e-6) and torch.allclose(dyn, alpha * (1 - w), atol=1e-6)
    # face: all dynamic; far: all static
    face = torch.arange(n) < nf
    far = w == 1
    assert torch.allclose(dyn[face], alpha[face]) and (st[face] == 0).all()
    assert torch.allclose(st[far], alpha[far]) and (dyn[far] == 0).all()
    # sharp seam: the dynamic share goes 1 -> 0 exactly over d0 .. d0 + d_th
    d = torch.cat([torch.zeros(nf), head.otf.distance])
    share = dyn / alpha
    assert torch.allclose(share[d < 5 * MM], torch.ones(int((d < 5 * MM).sum())), atol=1e-6)
    assert (share[d > 15 * MM + 1e-6] < 1e-6).all()
    seam = (d > 5 * MM) & (d < 15 * MM)
    assert torch.allclose(share[seam], 1 - (d[seam] / MM - 5) / 10, atol=1e-4)
    if drop_hidden:  # nothing invisible is drawn; each point appears at most twice
        assert (frame.opacities > 0).all()
        assert frame.num == int(n + ((w > 0) & (w < 1)).sum())
    else:
        assert frame.num == 2 * n - nf + nf  # dynamic: face + all OTF; static: all


def test_frame_contents_untrained(head):
    n, nf = head.canonical.num, head.binding.num
    verts = moved_mesh(head)
    frame = head.frame(verts, torch.eye(8)[2])
    c = head.canonical
    src, dyn = frame.source, frame.dynamic
    assert frame.sh_degree == 1 and frame.matte.shape == (frame.num,)
    # untrained G2ANet: every copy has the canonical colour, rotation (normalised) and scale
    assert torch.equal(frame.sh, c.sh[src])
    assert torch.allclose(frame.quats, c.unit_quats[src])
    assert torch.allclose(frame.quats.norm(dim=1), torch.ones(frame.num))
    assert torch.allclose(frame.scales, c.scales[src])
    # face Gaussians sit on the upsampled moved mesh
    face_rows = dyn & (src < nf)
    assert torch.allclose(frame.means[face_rows], head.binding.positions(verts)[src[face_rows]], atol=1e-7)
    # dynamic OTF copies: canonical + nearest face motion * exp(-0.1 d_mm)
    motion = head.binding.positions(verts) - torch.from_numpy(head.binding.rest_positions.copy())
    rows = dyn & (src >= nf)
    j = src[rows] - nf
    decay = torch.exp(-0.1 * head.otf.distance[j] / MM)
    assert torch.allclose(frame.means[rows], c.means[src[rows]] + motion[head.otf.nearest[j]] * decay[:, None],
                          atol=1e-7)
    # static copies stay canonical
    assert torch.equal(frame.means[~dyn], c.means[src[~dyn]])
    # matte = 1 - W for both copies of a point
    assert torch.allclose(frame.matte, 1 - head.weights[src])
    assert (frame.matte[face_rows] == 1).all()


def test_translation_of_mesh_keeps_appearance():
    head = make_head(seed=3)
    torch.manual_seed(0)
    for p in head.net.parameters():
        torch.nn.init.normal_(p, std=0.2)
    verts = moved_mesh(head)
    shift = torch.tensor([0.01, 0.02, -0.03])
    e = torch.softmax(torch.randn(8), 0)
    a = head.frame(verts, e)
    b = head.frame(verts + shift, e)
    assert torch.allclose(a.sh, b.sh, atol=1e-4) and torch.allclose(a.quats, b.quats, atol=1e-4)  # float32 cancellation
    face_rows = a.dynamic & (a.source < head.binding.num)
    assert torch.allclose(b.means[face_rows], a.means[face_rows] + shift, atol=1e-6)
    assert not torch.allclose(a.sh, head.canonical.sh[a.source])  # the net does act


def test_gradients_flow_to_net_canonical_and_mesh():
    head = make_head(seed=4)
    torch.manual_seed(1)
    for layer in (head.net.feature.body[-1], head.net.rotation.out[-1]):
        torch.nn.init.normal_(layer.weight, std=0.1)
    head.canonical.requires_grad_(True)
    verts = moved_mesh(head).requires_grad_(True)
    frame = head.frame(verts, torch.eye(8)[1])
    g = torch.Generator().manual_seed(0)
    loss = sum((t * torch.randn(t.shape, generator=g)).sum()
               for t in (frame.means, frame.quats, frame.scales, frame.opacities, frame.sh, frame.matte))
    loss.backward()
    for name, p in head.net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    for t, name in zip(head.canonical.tensors(), ("means", "quats", "log_scales", "opacity_logits", "sh")):
        assert t.grad is not None and t.grad.abs().sum() > 0, name
        assert torch.isfinite(t.grad).all(), name
    assert verts.grad is not None and verts.grad.abs().sum() > 0


def test_initial_head_and_errors():
    template, tri, uvs, mask = face_grid(9)
    head = AnimatedHead.initial(template, tri, uvs, mask, g2a=G2AConfig(sh_degree=0, hidden=16),
                                completion=CompletionConfig(num_points=3000, seed=1))
    nf = head.binding.num
    assert head.canonical.num == nf + 3000 and head.otf.num == 3000
    assert torch.allclose(head.canonical.means[:nf], torch.from_numpy(head.binding.rest_positions.copy()))
    assert (head.otf.distance >= 5 * MM - 1e-7).all()
    rest = torch.from_numpy(template)
    frame = head.frame(rest, torch.eye(8)[0])
    # at rest with an untrained net, every point's copies reproduce the canonical Gaussian
    assert torch.allclose(frame.means, head.canonical.means[frame.source], atol=1e-7)
    assert torch.allclose(per_source(frame, frame.opacities, head.canonical.num), head.canonical.opacities, atol=1e-6)
    head.rebind()
    assert head.otf.num == 3000
    with pytest.raises(ValueError, match="expected"):
        compose_frame(head.canonical.index(slice(0, 10)), head.binding, head.otf, head.net, rest, torch.zeros(8))
    with pytest.raises(ValueError, match="SH degree"):
        compose_frame(head.canonical, head.binding, head.otf, G2ANet(G2AConfig(sh_degree=1)), rest, torch.zeros(8))
    w = static_weights(head.binding, head.otf)
    assert torch.equal(w[nf:], fusion_weight(head.otf.distance))
