"""Shared fixtures: caches in a temporary folder, a trained tiny subject."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

# Without a CUDA GPU, the Triton rasteriser's kernels run in Triton's interpreter on CPU tensors.
# Triton reads this once, when first imported, so it is set before any test imports it.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


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


@contextmanager
def one_torch_thread():
    """Run torch on one thread inside the block (then restore the count).

    Training on tiny tensors gains nothing from more threads, and a thread count that differs
    from machine to machine is one more thing that changes the float rounding of a trained
    fixture. (A CPU's own vector kernels still do: tests on what training learned measure it
    against the data or against the model's own outputs, not against fixed numbers.)
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def trained_subject(tmp_path_factory, tiny_dataset, tiny_hubert) -> Path:
    """A subject trained by ``train_s2g`` on the tiny dataset (frozen tiny HuBERT).

    batch=8 (every step sees all five training clips, some twice): with batch=4 the fear
    widening the model learns ranged from 1.7 to 3.1 mm over simulated CPUs (data: 2.9 mm),
    with batch=8 from 2.4 to 3.0 mm, for about 1.3x the training time.
    """
    from emotalk3d_addon.backend.train.s2g import S2GTrainConfig, train_s2g

    out = tmp_path_factory.mktemp("subjects") / "tiny"
    cfg = S2GTrainConfig(steps=300, batch=8, crop_frames=30, hidden=32, lr=3e-3,
                         encoder=str(tiny_hubert), checkpoint_every=1000)
    with one_torch_thread():
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
