"""Small real inputs made by the tests: a tiny HuBERT folder and a tiny speech dataset.

The dataset is synthetic but honest: each sequence's audio is a voiced signal whose
loudness envelope opens a "jaw" on the mesh frame by frame, and the emotion label adds
a per-emotion expression offset, so a model can learn both from the inputs.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

from emotalk3d_addon.backend.emotions import EMOTIONS

TINY_HUBERT = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                   conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)


def write_tiny_hubert(folder: Path, seed: int = 0, **overrides) -> Path:
    """A randomly initialised small HubertModel saved as config.json + model.safetensors."""
    import torch
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(seed)
    model = HubertModel(HubertConfig(**(TINY_HUBERT | overrides)))
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def speech_like(duration: float, rate: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(N,) float32 voiced signal and its (N,) syllable envelope in [0, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration * rate)) / rate
    syllables = 4.0 + rng.random() * 2.0
    envelope = np.clip(np.sin(2 * np.pi * syllables * t + rng.random() * 6), 0, None) ** 1.5
    f0 = 110 + 40 * rng.random()
    voiced = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 8))
    signal = 0.3 * envelope * voiced / 2 + 0.003 * rng.standard_normal(t.size)
    return signal.astype(np.float32), envelope


def grid_topology(n: int = 6) -> dict[str, np.ndarray]:
    """An n x n vertex grid facing -Y (x right, z up), metres, with UVs and a mouth."""
    xs, zs = np.meshgrid(np.linspace(-0.05, 0.05, n), np.linspace(-0.05, 0.05, n))
    template = np.stack([xs.ravel(), np.zeros(n * n), zs.ravel()], 1).astype(np.float32)
    tris = []
    for r in range(n - 1):
        for c in range(n - 1):
            a, b, d, e = r * n + c, r * n + c + 1, (r + 1) * n + c, (r + 1) * n + c + 1
            tris += [(a, b, e), (a, e, d)]
    uvs = ((template[:, [0, 2]] + 0.05) / 0.1).astype(np.float32)
    mid = n // 2
    landmarks = {"upper_lip": (mid) * n + mid, "lower_lip": (mid - 1) * n + mid,
                 "mouth_left": (mid - 1) * n + 1, "mouth_right": (mid - 1) * n + n - 2}
    return dict(template=template, triangles=np.array(tris, np.int32), uvs=uvs,
                face_mask=np.ones(n * n, np.uint8), landmark_names=np.array(list(landmarks)),
                landmark_indices=np.array(list(landmarks.values()), np.int64))


def write_tiny_dataset(root: Path, sequences: int = 6, duration: float = 1.6, fps: int = 25,
                       rate: int = 16000) -> Path:
    """A subject folder in the documented dataset layout."""
    topo = grid_topology()
    root.mkdir(parents=True, exist_ok=True)
    np.savez(root / "topology.npz", **topo)
    (root / "dataset.json").write_text(json.dumps({"format": "emotalk3d-dataset", "version": 1,
                                                   "name": "tiny", "fps": fps}))
    template = topo["template"]
    lower = template[:, 2] < 0            # the "jaw": lower half of the grid
    for s in range(sequences):
        emotion = EMOTIONS[s % len(EMOTIONS)]
        signal, envelope = speech_like(duration, rate, seed=s)
        frames = int(np.ceil(duration * fps))
        env = np.interp(np.arange(frames) / fps, np.arange(signal.size) / rate, envelope)
        meshes = np.repeat(template[None], frames, 0).copy()
        meshes[:, lower, 2] -= 0.01 * env[:, None]                 # jaw opens with loudness
        meshes[:, :, 0] *= 1 + 0.05 * (EMOTIONS.index(emotion) / 7)  # emotion widens the face
        folder = root / "sequences" / f"{s:03d}_{emotion}"
        folder.mkdir(parents=True)
        sf.write(folder / "audio.wav", signal, rate)
        np.save(folder / "meshes.npy", meshes.astype(np.float32))
        (folder / "meta.json").write_text(json.dumps({"emotion": emotion, "intensity": 1.0,
                                                      "split": "test" if s == sequences - 1 else "train",
                                                      "fps": fps}))
    return root
