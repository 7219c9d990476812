import numpy as np
import pytest
import torch

from emotalk3d_addon.backend.io.audio import Waveform
from emotalk3d_addon.backend.errors import InputError
from emotalk3d_addon.backend.speech.encoder import (EncoderSpec, WindowPlan, load_encoder, num_features)
from tests.backend.fixtures_data import speech_like, write_tiny_hubert


@pytest.fixture(scope="module")
def hubert_dir(tmp_path_factory):
    return write_tiny_hubert(tmp_path_factory.mktemp("hubert"))


def wave(seconds: float, seed: int = 0) -> Waveform:
    samples, _ = speech_like(seconds, 16000, seed)
    return Waveform(samples)


def test_single_window_equals_whole_clip_forward(hubert_dir):
    enc = load_encoder(EncoderSpec("pretrained", str(hubert_dir)))
    w = wave(3.0)
    feats = enc.encode(w)
    with torch.no_grad():
        whole = enc.model(torch.tensor(w.samples)[None]).last_hidden_state[0]
    assert feats.shape == (num_features(w.samples.size), 16) == whole.shape
    assert torch.equal(feats, whole)


@pytest.mark.parametrize("seconds", [2.0, 3.37, 5.01])
def test_windowed_encoding_covers_every_frame_once_and_tracks_whole_clip(hubert_dir, seconds):
    plan = WindowPlan(core=16000, context=8000)
    enc = load_encoder(EncoderSpec("pretrained", str(hubert_dir)), plan=plan)
    w = wave(seconds, seed=3)
    feats = enc.encode(w)
    assert feats.shape[0] == num_features(w.samples.size)
    with torch.no_grad():
        whole = enc.model(torch.tensor(w.samples)[None]).last_hidden_state[0]
    cos = torch.nn.functional.cosine_similarity(feats, whole, dim=1)
    assert cos.mean() > 0.95, float(cos.mean())


def test_window_plan_tiles_the_clip():
    plan = WindowPlan(core=3200, context=640)
    n = 3200 * 5 + 1234
    wins = plan.windows(n)
    cores = [(a, b) for _, _, a, b in wins]
    assert cores[0][0] == 0 and cores[-1][1] == n
    assert all(b == c for (_, b), (c, _) in zip(cores, cores[1:]))
    assert all(i0 == max(0, c0 - 640) and i1 == min(n, c1 + 640) for i0, i1, c0, c1 in wins)
    assert plan.windows(3200 + 1280) == [(0, 4480, 0, 4480)]


def test_encoder_id_follows_the_weights(tmp_path, hubert_dir):
    other = write_tiny_hubert(tmp_path / "other", seed=1)
    a = load_encoder(EncoderSpec("pretrained", str(hubert_dir)))
    b = load_encoder(EncoderSpec("bundled", str(other)))
    assert a.encoder_id != b.encoder_id
    assert a.encoder_id == load_encoder(EncoderSpec("pretrained", str(hubert_dir))).encoder_id


def test_refuses_pickled_weights_and_bad_sources(tmp_path, hubert_dir):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text((hubert_dir / "config.json").read_text())
    (folder / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(InputError, match="safetensors"):
        load_encoder(EncoderSpec("pretrained", str(folder)))
    with pytest.raises(InputError, match="missing"):
        load_encoder(EncoderSpec("bundled", str(tmp_path / "absent")))
    with pytest.raises(InputError):
        EncoderSpec("weird", "x")


def test_too_short_audio_is_an_input_error(hubert_dir):
    enc = load_encoder(EncoderSpec("pretrained", str(hubert_dir)))
    with pytest.raises(InputError, match="too short"):
        enc.encode(Waveform(np.zeros(300, np.float32)))
