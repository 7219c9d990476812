"""Shared fixtures: caches in a temporary folder, a trained tiny subject."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Keep the backend's caches (features, extracted bundles) out of the user's home."""
    mp = pytest.MonkeyPatch()
    mp.setenv("EMOTALK3D_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    mp.setenv("HF_HUB_OFFLINE", "1")
    yield
    mp.undo()


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    from tests.backend.fixtures_data import write_tiny_dataset

    return write_tiny_dataset(tmp_path_factory.mktemp("data") / "tiny")


@pytest.fixture(scope="session")
def tiny_hubert(tmp_path_factory) -> Path:
    from tests.backend.fixtures_data import write_tiny_hubert

    return write_tiny_hubert(tmp_path_factory.mktemp("hubert"))


@pytest.fixture(scope="session")
def trained_subject(tmp_path_factory, tiny_dataset, tiny_hubert) -> Path:
    """A subject trained by ``train_s2g`` on the tiny dataset (frozen tiny HuBERT)."""
    from emotalk3d_addon.backend.train.s2g import S2GTrainConfig, train_s2g

    out = tmp_path_factory.mktemp("subjects") / "tiny"
    cfg = S2GTrainConfig(steps=300, batch=4, crop_frames=30, hidden=32, lr=3e-3,
                         encoder=str(tiny_hubert), checkpoint_every=1000)
    train_s2g(tiny_dataset, out, cfg, log=lambda _: None)
    return out


@pytest.fixture(scope="session")
def tiny_speech_dataset(tmp_path_factory) -> Path:
    """The synthetic generator's tiny preset without images (geometry and audio only)."""
    from emotalk3d_addon.backend.datasets.synthetic import make_dataset

    return make_dataset(tmp_path_factory.mktemp("speechdata") / "tiny", preset="tiny", seed=0, render=False,
                        log=lambda _: None)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """The speech corpus's tiny preset (three engines, held-out voices, augmented copies)."""
    from emotalk3d_addon.backend.datasets.speech_corpus.build import make_corpus

    return make_corpus(tmp_path_factory.mktemp("corpus") / "tiny", "tiny", seed=0, log=lambda _: None)


@pytest.fixture(scope="session")
def tiny_multiview(tmp_path_factory) -> Path:
    """The synthetic generator's tiny preset: espeak-ng speech, Blender-rendered views."""
    from emotalk3d_addon.backend.datasets.synthetic import make_dataset

    return make_dataset(tmp_path_factory.mktemp("multiview") / "tiny", preset="tiny", seed=0, log=lambda _: None)


@pytest.fixture(scope="session")
def full_subject(tmp_path_factory, tiny_multiview) -> Path:
    """A complete subject (speech->geometry + appearance) trained by ``emotalk3d train``."""
    from emotalk3d_addon.backend.train.appearance import AppearanceTrainConfig
    from emotalk3d_addon.backend.train.full import FullTrainConfig, train_subject
    from emotalk3d_addon.backend.train.s2g import S2GTrainConfig

    cfg = FullTrainConfig(S2GTrainConfig(steps=30, batch=2, crop_frames=12, hidden=16, bundled_encoder="tiny"),
                          AppearanceTrainConfig(canonical_steps=40, g2a_steps=20, num_otf=600, sh_degree=1,
                                                g2a_hidden=16, densify_every=20))
    out = tmp_path_factory.mktemp("full") / "subject"
    return train_subject(tiny_multiview, out, cfg, log=lambda _: None, progress=False)
