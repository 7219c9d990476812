import pytest
import torch

from emotalk3d_addon.backend.speech.emotion import EmotionConfig, EmotionExtractor, band_mask, moving_average


def make(window=32):
    torch.manual_seed(0)
    return EmotionExtractor(EmotionConfig(feature_dim=10, d_model=16, heads=2, ff_dim=32, window=window)).eval()


def test_outputs_are_distributions_and_intensities():
    net = make()
    w, i = net.predict_track(torch.randn(20, 10))
    assert w.shape == (20, 8) and i.shape == (20,)
    torch.testing.assert_close(w.sum(1), torch.ones(20))
    assert torch.all((i >= 0) & (i <= 1))


def test_short_clip_is_one_window_and_long_clips_are_windowed_exactly():
    net = make(window=32)
    feats = torch.randn(32, 10)
    with torch.no_grad():
        w, i = net._windowed(feats)
        logits, inten = net(feats[None])
    torch.testing.assert_close(w, logits[0].softmax(-1))
    # the track is the window's output smoothed over config.smooth frames, renormalised
    smooth = moving_average(torch.cat([w, i[:, None]], 1), net.config.smooth)
    tw, ti = net.predict_track(feats)
    torch.testing.assert_close(tw, smooth[:, :8] / smooth[:, :8].sum(1, keepdim=True))
    torch.testing.assert_close(ti, smooth[:, 8])
    long = torch.randn(1000, 10)
    w2, i2 = net.predict_track(long)
    assert w2.shape == (1000, 8)
    torch.testing.assert_close(w2.sum(1), torch.ones(1000))
    # Each window's core has the whole receptive field either side: the windows give what
    # one pass over the clip gives, wherever their grid falls.
    with torch.no_grad():
        whole, inten = net(long[None])
        raw, raw_i = net._windowed(long)
    assert 1000 > net.config.window + 2 * net.receptive_field            # several windows
    torch.testing.assert_close(raw, whole[0].softmax(-1), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(raw_i, inten[0], atol=1e-5, rtol=1e-4)


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


def test_band_mask_and_moving_average():
    m = band_mask(6, 2, torch.device("cpu"))
    assert not m[3, 1] and not m[3, 5] and m[3, 0] and m[0, 3]
    x = torch.arange(10, dtype=torch.float32)[:, None]
    avg = moving_average(x, 3)
    torch.testing.assert_close(avg[1:-1, 0], x[1:-1, 0])            # linear ramps are kept inside
    torch.testing.assert_close(avg[0, 0], torch.tensor(0.5))         # edges average what exists
    torch.testing.assert_close(avg[-1, 0], torch.tensor(8.5))


@pytest.mark.parametrize("length", [90, 300])
def test_same_audio_gets_the_same_emotion_wherever_it_sits(length):
    """Three copies of one clip in a row: away from the joins, each copy's track equals the
    clip's own track (no absolute position anywhere), and the track is not constant."""
    torch.manual_seed(1)
    net = EmotionExtractor(EmotionConfig(feature_dim=10, d_model=16, heads=2, ff_dim=32, window=128,
                                         context=12, smooth=5)).eval()
    clip = torch.randn(length, 10).cumsum(0) * 0.1          # smooth, varying "speech"
    alone_w, alone_i = net.predict_track(clip)
    w, i = net.predict_track(torch.cat([clip, clip, clip]))
    margin = 40        # attention reach + convolution + smoothing, generously
    inner = slice(margin, length - margin)
    assert alone_w[inner].std(0).max() > 1e-3                 # the emotion does change over the clip
    for k in range(3):
        part = w[k * length:(k + 1) * length]
        assert (part[inner] - alone_w[inner]).abs().max() < 0.02, k
        assert (i[k * length:(k + 1) * length][inner] - alone_i[inner]).abs().max() < 0.02
