"""Shared set-up for the speech benchmarks: a HuBERT-base-sized encoder (random
weights, the same compute as facebook/hubert-base-ls960), a subject of FLAME size
(5,023 vertices) built in memory, and speech-like audio."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emotalk3d_addon.backend.io.audio import Waveform  # noqa: E402
from emotalk3d_addon.backend.geometry.basis import MotionBasis  # noqa: E402
from emotalk3d_addon.backend.geometry.s2gnet import S2GConfig, S2GNet  # noqa: E402
from emotalk3d_addon.backend.speech.emotion import EmotionConfig, EmotionExtractor  # noqa: E402
from emotalk3d_addon.backend.speech.encoder import EncoderSpec, SpeechEncoder  # noqa: E402
from emotalk3d_addon.backend.subject import Geometry, Subject  # noqa: E402

NUM_VERTICES = int(os.environ.get("BENCH_VERTICES", 5023))


def hubert_base_encoder() -> SpeechEncoder:
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(0)
    return SpeechEncoder(HubertModel(HubertConfig()), "bench:hubert-base-random")


def speech(seconds: float, seed: int = 0) -> Waveform:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    env = np.clip(np.sin(2 * np.pi * 4.5 * t), 0, None)
    voiced = sum(np.sin(2 * np.pi * 120 * h * t) / h for h in range(1, 8))
    return Waveform((0.1 * env * voiced + 0.003 * rng.standard_normal(t.size)).astype(np.float32))


def subject(feature_dim: int = 768, num_vertices: int = NUM_VERTICES) -> Subject:
    torch.manual_seed(0)
    s2g = S2GNet(S2GConfig(feature_dim, num_vertices))
    torch.nn.init.normal_(s2g.head.weight, std=1e-4)
    emo = EmotionExtractor(EmotionConfig(feature_dim))
    rng = np.random.default_rng(0)
    template = rng.standard_normal((num_vertices, 3)).astype(np.float32) * 0.1
    tris = rng.integers(0, num_vertices, (num_vertices * 2, 3))
    geometry = Geometry(template, tris, rng.random((num_vertices, 2)), np.ones(num_vertices, bool),
                        {"upper_lip": 0, "lower_lip": 1, "mouth_left": 2, "mouth_right": 3})
    q, _ = np.linalg.qr(rng.standard_normal((num_vertices * 3, 32)))
    basis = MotionBasis(q.T.reshape(32, num_vertices, 3).astype(np.float32) * 1e-3)
    return Subject(None, {"name": "bench", "fps": 30}, geometry, basis, s2g.config, s2g.state_dict(), emo.config,
                   emo.state_dict(), EncoderSpec("pretrained", "bench"))


def best_of(fn, repeats: int = 3) -> float:
    """Best wall time of ``repeats`` calls, seconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
