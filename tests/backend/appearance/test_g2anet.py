"""G2ANet: motion offsets, identity at initialisation, shapes, gradients."""
from __future__ import annotations

import time

import pytest
import torch

from emotalk3d_addon.backend.appearance.binding import FaceBinding
from emotalk3d_addon.backend.appearance.g2anet import (G2AConfig, G2ANet, encode_uv, motion_offsets,
                                                       quat_multiply)

from .meshes import face_grid


def inputs(n: int, degree: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2
    return (torch.randn(n, k, 3, generator=g), torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1),
            torch.softmax(torch.randn(8, generator=g), 0), torch.rand(n, 2, generator=g),
            torch.randn(n, 3, generator=g) * 2e-3)


def test_motion_offsets_zero_mean_and_formula():
    g = torch.Generator().manual_seed(0)
    mu_o = torch.randn(100, 3, generator=g, dtype=torch.float64)
    mu_t = mu_o + 1e-3 * torch.randn(100, 3, generator=g, dtype=torch.float64) + torch.tensor([0.02, 0.0, -0.01],
                                                                                               dtype=torch.float64)
    d = motion_offsets(mu_t, mu_o)
    assert torch.allclose(d.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-15)
    raw = mu_t - mu_o
    assert torch.allclose(d, raw - raw.mean(0), atol=0)
    # batched over frames: per-frame mean removed
    db = motion_offsets(torch.stack([mu_t, mu_o]), mu_o)
    assert torch.allclose(db[0], d) and (db[1] == 0).all()


def test_motion_offsets_invariant_to_mesh_translation():
    template, tri, uvs, mask = face_grid(9)
    b = FaceBinding.build(template, tri, uvs, mask)
    g = torch.Generator().manual_seed(1)
    rest = torch.from_numpy(template).double()
    frame = rest + 2e-3 * torch.randn(rest.shape, generator=g, dtype=torch.float64)
    mu_o = b.positions(rest)
    d1 = motion_offsets(b.positions(frame), mu_o)
    d2 = motion_offsets(b.positions(frame + torch.tensor([0.05, -0.03, 0.02], dtype=torch.float64)), mu_o)
    assert torch.allclose(d1, d2, atol=1e-12)
    assert d1.abs().max() > 1e-4


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_untrained_returns_canonical_exactly(degree):
    net = G2ANet(G2AConfig(sh_degree=degree))
    sh, q, e, uv, dmu = inputs(500, degree)
    q = q * 1.7  # not normalised: R_t keeps R_o as given
    sh_t, q_t = net(sh, q, e, uv, dmu)
    assert torch.equal(sh_t, sh)
    assert torch.equal(q_t, q)


def test_trained_net_changes_output_and_keeps_norm():
    torch.manual_seed(0)
    net = G2ANet(G2AConfig(sh_degree=2, hidden=32))
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)
    sh, q, e, uv, dmu = inputs(64, 2)
    sh_t, q_t = net(sh, q, e, uv, dmu)
    assert not torch.allclose(sh_t, sh) and not torch.allclose(q_t, q)
    assert torch.allclose(q_t.norm(dim=-1), torch.ones(64), atol=1e-5)
    # the emotion matters, per point the output depends on that point only
    sh_e, _ = net(sh, q, torch.roll(e, 1), uv, dmu)
    assert not torch.allclose(sh_e, sh_t)
    sh_half, _ = net(sh[:10], q[:10], e, uv[:10], dmu[:10])
    assert torch.allclose(sh_half, sh_t[:10], atol=1e-5)
    # batched frames: (B, N, ...) with e (B, E) and shared UVs
    shb, qb = net(sh.expand(3, -1, -1, -1), q.expand(3, -1, -1), e.expand(3, -1), uv, dmu.expand(3, -1, -1))
    assert shb.shape == (3, 64, 9, 3) and qb.shape == (3, 64, 4)
    assert torch.allclose(shb[1], sh_t, atol=1e-5)


def test_gradients_reach_every_parameter():
    net = G2ANet(G2AConfig(sh_degree=1, hidden=16))
    sh, q, e, uv, dmu = inputs(32, 1)
    sh.requires_grad_(True)
    sh_t, q_t = net(sh, q, e, uv, dmu)
    # zero-initialised last layers: gradients reach them first
    (sh_t.square().sum() + (q_t * torch.tensor([0.0, 1.0, 2.0, 3.0])).sum()).backward()
    assert net.feature.body[-1].weight.grad.abs().sum() > 0
    assert net.rotation.out[-1].weight.grad.abs().sum() > 0
    assert sh.grad is not None


def test_uv_encoding_and_config():
    uv = torch.tensor([[0.25, 0.5]])
    enc = encode_uv(uv, 2)
    assert enc.shape == (1, 2 + 8)
    assert torch.allclose(enc[0, :2], uv[0])
    assert torch.allclose(enc[0, 2], torch.sin(torch.tensor(torch.pi * 0.25)))
    assert torch.equal(encode_uv(uv, 0), uv)
    cfg = G2AConfig(sh_degree=1, hidden=64, uv_frequencies=0)
    assert G2AConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        G2AConfig(sh_degree=4)
    with pytest.raises(ValueError, match="emotion"):
        G2ANet(G2AConfig(sh_degree=0))(*inputs(4, 0)[:2], torch.zeros(5), *inputs(4, 0)[3:])


def _fit_stripes(uv_frequencies: int, period: float = 0.03, steps: int = 150) -> float:
    """Mean squared error left after fitting FeatureNet to colour stripes of ``period`` (UV units)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    n = 800
    uv = torch.rand(n, 2, generator=g)
    stripes = torch.where(torch.sin(2 * torch.pi * uv[:, :1] / period) > 0, 0.5, -0.5)
    target = stripes.expand(n, 3)[:, None, :]           # (N, 1, 3): SH degree 0, variance 0.25
    net = G2ANet(G2AConfig(sh_degree=0, hidden=32, uv_frequencies=uv_frequencies))
    sh, dmu = torch.zeros(n, 1, 3), torch.zeros(n, 3)
    quat, emotion = torch.tensor([1.0, 0, 0, 0]).expand(n, 4), torch.zeros(8)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(steps):
        h_t, _ = net(sh, quat, emotion, uv, dmu)
        loss = ((h_t - target) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return float(loss.detach())


def test_uv_octaves_set_how_fine_a_colour_change_can_be_placed():
    """Stripes 0.03 UV apart (about 5 mm on the demo face, whose UVs span ~150-190 mm):
    with 8 octaves (finest period 2/2^7 UV) FeatureNet fits them; with 4 (finest 0.25 UV,
    ~40 mm) it cannot and stays near the stripes' variance 0.25."""
    coarse, fine = _fit_stripes(4), _fit_stripes(8)
    assert coarse > 0.05
    assert fine < 0.1 * coarse, (fine, coarse)


def test_quat_multiply_identity_and_composition():
    q = torch.nn.functional.normalize(torch.randn(10, 4), dim=-1)
    ident = torch.tensor([1.0, 0, 0, 0]).expand(10, 4)
    assert torch.equal(quat_multiply(ident, q), q)
    # 90 degrees about z twice = 180 degrees about z
    rz = torch.tensor([2 ** -0.5, 0, 0, 2 ** -0.5])
    assert torch.allclose(quat_multiply(rz, rz), torch.tensor([0.0, 0, 0, 1]), atol=1e-6)


def test_speed_25k_points():
    """One frame of 25k face points at SH degree 3 (reported, loosely bounded for a slow CI core)."""
    net = G2ANet(G2AConfig(sh_degree=3))
    sh, q, e, uv, dmu = inputs(25_000, 3)
    with torch.inference_mode():
        net(sh, q, e, uv, dmu)
        t = time.perf_counter()
        for _ in range(3):
            net(sh, q, e, uv, dmu)
        dt = (time.perf_counter() - t) / 3
    assert dt < 1.0, f"{dt * 1e3:.1f} ms per frame"
