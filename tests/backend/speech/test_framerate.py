from fractions import Fraction

import pytest
import torch

from emotalk3d_addon.backend.speech.framerate import features_to_frames


@pytest.mark.parametrize("offset", [0.0125, 0.0])   # HuBERT, Whisper
def test_frames_sample_the_feature_timeline_linearly(offset):
    t = torch.arange(100, dtype=torch.float32)
    feats = torch.stack([t * 0.02 + offset, -t], 1)   # column 0: each feature's centre time
    frames = features_to_frames(feats, 40, Fraction(25), centre_offset_s=offset)
    expected_time = torch.arange(40) / 25.0
    inside = expected_time >= offset
    torch.testing.assert_close(frames[inside, 0], expected_time[inside].float(), atol=1e-5, rtol=0)
    assert torch.all(frames[~inside, 0] == feats[0, 0])  # before the first centre: hold


@pytest.mark.parametrize("fps", [Fraction(24000, 1001), Fraction(30), Fraction(60)])
def test_holds_last_feature_past_the_end_and_keeps_shape(fps):
    feats = torch.randn(50, 8)
    out = features_to_frames(feats, 200, fps, centre_offset_s=0.0125)
    assert out.shape == (200, 8)
    late = torch.arange(200) / float(fps) > 0.02 * 49 + 0.0125
    assert torch.allclose(out[late], feats[-1].expand(int(late.sum()), 8))


def test_is_differentiable():
    feats = torch.randn(10, 4, requires_grad=True)
    features_to_frames(feats, 7, Fraction(30), centre_offset_s=0.0125).sum().backward()
    assert torch.allclose(feats.grad.sum(0), torch.full((4,), 7.0))
