import torch

from emotalk3d_addon.backend.geometry.s2gnet import S2GConfig, S2GNet


def test_zero_initialised_head_predicts_the_template():
    net = S2GNet(S2GConfig(feature_dim=12, num_vertices=30, hidden=16))
    out = net(torch.randn(2, 9, 12), torch.rand(2, 9, 9))
    assert out.shape == (2, 9, 30, 3) and torch.count_nonzero(out) == 0


def test_condition_is_per_frame_and_causal_gru():
    torch.manual_seed(0)
    net = S2GNet(S2GConfig(feature_dim=6, num_vertices=5, hidden=8))
    torch.nn.init.normal_(net.head.weight)
    feats = torch.randn(1, 10, 6)
    c1 = torch.zeros(1, 10, 9)
    c1[..., 0] = 1
    c2 = c1.clone()
    c2[0, 7:, 0], c2[0, 7:, 5] = 0, 1       # a key change at frame 7
    a, b = net(feats, c1), net(feats, c2)
    assert torch.equal(a[:, :7], b[:, :7])   # the past is untouched by a later key
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_predict_matches_forward_in_chunks():
    torch.manual_seed(1)
    net = S2GNet(S2GConfig(feature_dim=4, num_vertices=7, hidden=8)).eval()
    torch.nn.init.normal_(net.head.weight)
    feats, cond = torch.randn(50, 4), torch.rand(50, 9)
    with torch.no_grad():
        full = net(feats[None], cond[None])[0]
    torch.testing.assert_close(net.predict(feats, cond, head_chunk=7, chunk=1000), full)


def test_config_round_trip():
    cfg = S2GConfig(feature_dim=768, num_vertices=5023, bidirectional=True)
    assert S2GConfig.from_dict(cfg.to_dict()) == cfg


def test_a_meta_layout_has_the_real_shapes_and_the_cpu_initialisation_is_unchanged():
    """Bundle checks lay S2GNet out on the meta device (shapes only, no random fill)."""
    for config in (S2GConfig(12, 30, hidden=16), S2GConfig(12, 30, hidden=16, layers=3, bidirectional=True)):
        with torch.device("meta"):
            meta = S2GNet(config)
        torch.manual_seed(0)
        real = S2GNet(config)
        assert {k: v.shape for k, v in meta.state_dict().items()} == {k: v.shape for k, v in real.state_dict().items()}
        assert all(v.is_meta for v in meta.state_dict().values())
        # the initialisation training starts from: identity modulation, zero shift and head
        assert torch.all(real.condition.bias == 1) and 0.01 < real.condition.weight.std() < 0.03
        assert torch.count_nonzero(real.condition_shift.weight) == 0 and torch.count_nonzero(real.head.weight) == 0
        torch.manual_seed(0)
        again = S2GNet(config)
        assert all(torch.equal(a, b) for a, b in zip(real.state_dict().values(), again.state_dict().values()))
