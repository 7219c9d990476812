"""Speech encoder: transformers ``HubertModel`` -> content features at 50 Hz.

One loader serves both kinds of encoder a subject can name (SPEC 2.2):

* ``pretrained``: a hub id or a local folder, through ``HubertModel.from_pretrained``;
* ``bundled``: a small HuBERT trained with the subject, stored inside its bundle.

Weights are only ever read from safetensors (``use_safetensors=True``): never pickle.
Long audio is encoded in overlapping windows so memory stays bounded; a clip that fits
in one window is encoded whole, so the two agree exactly there.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..audio import Waveform
from ..errors import InputError

SAMPLES_PER_FEATURE = 320   # HuBERT hop at 16 kHz (50 Hz features)
RECEPTIVE_FIELD = 400       # samples seen by one feature frame


@dataclass(frozen=True)
class EncoderSpec:
    """Which speech encoder a subject uses.

    kind: "pretrained" (``source`` is a hub id or folder) or "bundled" (``source`` is
    the folder inside the subject bundle, resolved to an absolute path).
    """

    kind: str
    source: str

    def __post_init__(self) -> None:
        if self.kind not in ("pretrained", "bundled"):
            raise InputError(f"speech encoder kind must be 'pretrained' or 'bundled', got {self.kind!r}")


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


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


class SpeechEncoder:
    """A loaded HuBERT with windowed encoding. ``encoder_id`` names it in feature caches."""

    def __init__(self, model: torch.nn.Module, encoder_id: str, plan: WindowPlan | None = None):
        self.model = model.eval()
        self.encoder_id = encoder_id
        self.plan = plan or WindowPlan(core=20 * 16000, context=16000)
        self.feature_dim: int = int(model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def encode(self, waveform: Waveform) -> torch.Tensor:
        """(T, D) float32 features at 50 Hz on the CPU, T = num_features(N)."""
        samples = torch.tensor(waveform.samples)   # own copy: Waveform arrays are read-only
        total = num_features(samples.numel())
        if total == 0:
            raise InputError(f"audio is too short to encode ({waveform.duration:.3f} s)")
        parts = []
        for in_start, in_stop, core_start, core_stop in self.plan.windows(samples.numel()):
            chunk = samples[in_start:in_stop].to(self.device).unsqueeze(0)
            hidden = self.model(chunk).last_hidden_state[0]
            first = (core_start - in_start) // SAMPLES_PER_FEATURE
            last_global = min(total, -(-core_stop // SAMPLES_PER_FEATURE))
            count = last_global - core_start // SAMPLES_PER_FEATURE
            parts.append(hidden[first:first + count].float().cpu())
        features = torch.cat(parts)
        assert features.shape[0] == total, (features.shape, total)
        return features


def load_encoder(spec: EncoderSpec, device: str | torch.device = "cpu",
                 plan: WindowPlan | None = None) -> SpeechEncoder:
    """Load the encoder a subject names; InputError with the reason when it cannot be."""
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
            encoder_id = f"{spec.kind}:{_file_digest(weights)}"
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
