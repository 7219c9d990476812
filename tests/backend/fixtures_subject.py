"""A tiny but complete subject bundle, built from real (randomly initialised) models.

``make_tiny_subject`` gives the in-memory Subject; ``build_tiny_subject`` saves it as a
folder bundle. V = 49 vertices (a 7 x 7 grid facing -Y), T = 72 triangles, K = 4 basis
components, speech features of width 16 from a bundled tiny HuBERT.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from emotalk3d_addon.backend.geometry.basis import MotionBasis
from emotalk3d_addon.backend.geometry.s2gnet import S2GConfig, S2GNet
from emotalk3d_addon.backend.speech.emotion import EmotionConfig, EmotionExtractor
from emotalk3d_addon.backend.speech.encoder import EncoderSpec
from emotalk3d_addon.backend.subject import Geometry, Subject, make_manifest

from .fixtures_data import write_tiny_hubert

GRID = 7
FEATURE_DIM = 16  # = the tiny HuBERT's hidden_size
NUM_COMPONENTS = 4


def tiny_geometry() -> Geometry:
    """A 7 x 7 grid, 10 cm wide, in the XZ plane bulging toward -Y (metres)."""
    u, v = np.meshgrid(np.linspace(0, 1, GRID), np.linspace(0, 1, GRID), indexing="xy")
    x, z = (u - 0.5) * 0.1, (v - 0.5) * 0.1
    y = -0.02 * (1 - (2 * u - 1) ** 2) * (1 - (2 * v - 1) ** 2)
    template = np.stack([x, y, z], -1).reshape(-1, 3).astype(np.float32)
    idx = np.arange(GRID * GRID).reshape(GRID, GRID)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]
    triangles = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    uvs = np.stack([u, v], -1).reshape(-1, 2).astype(np.float32)
    face_mask = np.zeros((GRID, GRID), bool)
    face_mask[1:-1, 1:-1] = True
    landmarks = {"upper_lip": int(idx[3, 3]), "lower_lip": int(idx[2, 3]),
                 "mouth_left": int(idx[2, 2]), "mouth_right": int(idx[2, 4]), "chin": int(idx[0, 3])}
    return Geometry(template, triangles, uvs, face_mask.reshape(-1), landmarks)


def tiny_basis(num_vertices: int, seed: int = 0) -> MotionBasis:
    """K random orthogonal components, 1 mm per unit coefficient."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((num_vertices * 3, NUM_COMPONENTS)))
    return MotionBasis(components=(q.T.reshape(NUM_COMPONENTS, num_vertices, 3) * 1e-3).astype(np.float32))


def _randomised_state(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """The module's state dict with every tensor randomised (so round trips test values)."""
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=gen) * 0.1 for k, v in module.state_dict().items()}


def make_tiny_subject(tmp_dir: Path, name: str = "tiny", seed: int = 0, feature_dim: int = FEATURE_DIM) -> Subject:
    """The in-memory Subject; its bundled encoder lives in ``tmp_dir/hubert_src`` (its
    features are ``FEATURE_DIM`` wide: another ``feature_dim`` suits another encoder)."""
    tmp_dir = Path(tmp_dir)
    geometry = tiny_geometry()
    basis = tiny_basis(geometry.num_vertices, seed)
    s2g_config = S2GConfig(feature_dim=feature_dim, num_vertices=geometry.num_vertices, hidden=8)
    emotion_config = EmotionConfig(feature_dim=feature_dim, d_model=16, heads=2, ff_dim=32)
    torch.manual_seed(seed)
    s2g_state = _randomised_state(S2GNet(s2g_config), seed)
    emotion_state = _randomised_state(EmotionExtractor(emotion_config), seed + 1)
    hubert = write_tiny_hubert(tmp_dir / "hubert_src", seed=seed)
    encoder = EncoderSpec("bundled", str(hubert))
    manifest = make_manifest(name, 30.0, encoder, geometry, basis, s2g_config, emotion_config,
                             basis_error=(0.25, 1.5), description="tiny test subject",
                             training={"epochs": 1, "note": "random weights"})
    return Subject(root=None, manifest=manifest, geometry=geometry, basis=basis,
                   s2g_config=s2g_config, s2g_state=s2g_state,
                   emotion_config=emotion_config, emotion_state=emotion_state, encoder=encoder)


def build_tiny_subject(tmp_dir: Path, name: str = "tiny") -> Path:
    """Save the tiny subject as the folder bundle ``tmp_dir/<name>`` and return its path."""
    return make_tiny_subject(tmp_dir, name).save(Path(tmp_dir) / name)
