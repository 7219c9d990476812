import torch

from emotalk3d_addon.backend.speech.emotion import EmotionConfig, EmotionExtractor


def make(window=32):
    torch.manual_seed(0)
    return EmotionExtractor(EmotionConfig(feature_dim=10, d_model=16, heads=2, ff_dim=32, window=window)).eval()


def test_outputs_are_distributions_and_intensities():
    net = make()
    w, i = net.predict_track(torch.randn(20, 10))
    assert w.shape == (20, 8) and i.shape == (20,)
    torch.testing.assert_close(w.sum(1), torch.ones(20))
    assert torch.all((i >= 0) & (i <= 1))


def test_short_clip_is_one_window_and_long_clips_are_crossfaded():
    net = make(window=32)
    feats = torch.randn(32, 10)
    w, i = net.predict_track(feats)
    with torch.no_grad():
        logits, inten = net(feats[None])
    torch.testing.assert_close(w, logits[0].softmax(-1))
    long = torch.randn(1000, 10)
    w2, i2 = net.predict_track(long)
    assert w2.shape == (1000, 8)
    torch.testing.assert_close(w2.sum(1), torch.ones(1000))
    # Where one window alone covers a frame (the very start), the result is that window's.
    with torch.no_grad():
        first, _ = net(long[None, :32])
    torch.testing.assert_close(w2[0], first[0, 0].softmax(-1))


def test_learns_a_label_from_features():
    torch.manual_seed(0)
    net = EmotionExtractor(EmotionConfig(feature_dim=4, d_model=16, heads=2, ff_dim=32, dropout=0.0))
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    feats = torch.randn(8, 12, 4)
    labels = (feats[:, :, 0].mean(1) > 0).long() * 5    # happy when feature 0 is high, else neutral
    for _ in range(150):
        logits, _ = net(feats)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.repeat_interleave(12))
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    pred = torch.stack([net.predict_track(f)[0].mean(0).argmax() for f in feats])
    assert torch.equal(pred, labels)
