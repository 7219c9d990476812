"""The subject's own speech's lip gap (``own_speech.py``): measured per phone class from the
dataset's neutral training sequences, and a performance's lip gap set beside it, raw and at the
performance's phone mix."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from emotalk3d_addon.backend.datasets.layout import load_dataset
from emotalk3d_addon.backend.errors import InputError
from emotalk3d_addon.backend.tools.lipsync import GAP_CLASSES
from emotalk3d_addon.backend.tools.own_speech import (class_matched_percentile, compare_gaps, format_comparison,
                                                      own_speech_gaps, weighted_percentile)
from tests.backend.fixtures_data import grid_topology

FPS = 25
# lip gap (mm) the test meshes hold on each kind of phone
GAP_MM = {"a": 10.0, "p": 0.0, "s": 4.0}


def _phones(pattern: str, start: float = 0.2, step: float = 0.12) -> list[list]:
    """One phone per letter of ``pattern``, ``step`` s each from ``start``."""
    return [[start + i * step, start + (i + 1) * step, c] for i, c in enumerate(pattern)]


def _write_dataset(root, sequences: list[dict]) -> None:
    """A dataset whose meshes part the lips by GAP_MM of the phone at each frame (0 in silence)."""
    topo = grid_topology()
    root.mkdir(parents=True)
    (root / "dataset.json").write_text(json.dumps({"format": "emotalk3d-dataset", "version": 1, "name": "t",
                                                   "fps": FPS}))
    np.savez(root / "topology.npz", **topo)
    lower = int(topo["landmark_indices"][list(topo["landmark_names"]).index("lower_lip")])
    for i, seq in enumerate(sequences):
        folder = root / "sequences" / f"{i:03d}"
        folder.mkdir(parents=True)
        duration = seq["phones"][-1][1] + 0.3 if seq["phones"] else 2.0
        frames = int(np.ceil(duration * FPS))
        sf.write(folder / "audio.wav", np.zeros(int(duration * 16000), np.float32), 16000)
        meshes = np.repeat(topo["template"][None], frames, 0).copy()
        times = np.arange(frames) / FPS
        for a, b, c in seq["phones"]:
            inside = (times >= a) & (times < b)
            meshes[inside, lower, 2] -= GAP_MM[c] / 1000.0      # the lower lip drops (it sits below the upper)
        np.save(folder / "meshes.npy", meshes)
        meta = {"emotion": seq["emotion"], "intensity": 0.0 if seq["emotion"] == "neutral" else 1.0,
                "split": seq["split"], "fps": FPS, "image_frames": []}
        if seq["phones"]:
            meta["phonemes"] = seq["phones"]
        (folder / "meta.json").write_text(json.dumps(meta))


@pytest.fixture()
def dataset(tmp_path):
    root = tmp_path / "data"
    _write_dataset(root, [
        {"emotion": "neutral", "split": "train", "phones": _phones("sasap")},
        {"emotion": "neutral", "split": "train", "phones": _phones("psss")},
        {"emotion": "happy", "split": "train", "phones": _phones("aaaa")},      # not neutral
        {"emotion": "neutral", "split": "test", "phones": _phones("aaaa")},     # not training speech
        {"emotion": "neutral", "split": "train", "phones": []},                 # no phones to class it by
    ])
    return load_dataset(root)


def test_own_gaps_are_the_neutral_training_sequences_per_phone_class(dataset):
    own = own_speech_gaps(dataset)
    frames = sum(int(np.ceil((s.phones()[-1][1] + 0.3) * FPS)) for s in dataset.sequences[:2])
    assert own["all"].size == frames                       # only the two neutral training sequences
    assert own["open_vowels"] == pytest.approx(np.full(own["open_vowels"].size, 10.0), abs=1e-3)
    assert own["other_phones"] == pytest.approx(np.full(own["other_phones"].size, 4.0), abs=1e-3)
    assert own["bilabials"] == pytest.approx(0.0, abs=1e-3) and own["silence"] == pytest.approx(0.0, abs=1e-3)
    # 2 'a' phones of 0.12 s at 25 fps: 3 frames each
    assert own["open_vowels"].size == 6
    assert sum(own[k].size for k in GAP_CLASSES) == own["all"].size


def test_a_dataset_without_neutral_phones_is_refused(tmp_path):
    root = tmp_path / "data"
    _write_dataset(root, [{"emotion": "happy", "split": "train", "phones": _phones("sas")},
                          {"emotion": "neutral", "split": "train", "phones": []}])
    with pytest.raises(InputError, match="neutral"):
        own_speech_gaps(load_dataset(root))


@pytest.mark.parametrize("seed", range(5))
def test_weighted_percentile_is_the_percentile_of_repeated_frames(seed):
    rng = np.random.default_rng(seed)
    values = rng.normal(5, 3, 40)
    counts = rng.integers(0, 6, 40)
    repeated = np.repeat(values, counts)
    for q in (0, 10, 50, 90, 99, 100):
        assert weighted_percentile(values, counts, q) == np.percentile(repeated, q, method="inverted_cdf")
        # scaling every weight changes nothing
        assert weighted_percentile(values, counts * 0.37, q) == np.percentile(repeated, q, method="inverted_cdf")


def test_weighted_percentile_of_no_weight_is_nan():
    assert np.isnan(weighted_percentile(np.arange(3.0), np.zeros(3), 50))


def test_class_matching_reweights_each_class_to_the_shares():
    rng = np.random.default_rng(0)
    own = {"open_vowels": rng.normal(9, 1, 30), "bilabials": rng.uniform(0, 1, 10),
           "other_phones": rng.normal(5, 1, 120), "silence": rng.uniform(0, 0.5, 40)}
    own["all"] = np.concatenate([own[k] for k in GAP_CLASSES])
    # at the own speech's own shares, the matched percentile is the plain one
    shares = {k: own[k].size / own["all"].size for k in GAP_CLASSES}
    for q in (50, 90):
        assert class_matched_percentile(own, shares, q) == np.percentile(own["all"], q, method="inverted_cdf")
    # brute force at other shares: repeat each class's frames in proportion
    counts = {"open_vowels": 12, "bilabials": 3, "other_phones": 1, "silence": 3}     # frames per frame
    repeated = np.concatenate([np.repeat(own[k], counts[k]) for k in GAP_CLASSES])
    total = sum(own[k].size * counts[k] for k in GAP_CLASSES)
    shares = {k: own[k].size * counts[k] / total for k in GAP_CLASSES}
    for q in (50, 90):
        assert class_matched_percentile(own, shares, q) == pytest.approx(
            np.percentile(repeated, q, method="inverted_cdf"))


def _gaps(rng, counts: dict[str, int], scale: float = 1.0) -> dict[str, np.ndarray]:
    centre = {"open_vowels": 9.0, "bilabials": 0.5, "other_phones": 5.0, "silence": 0.3}
    out = {k: scale * np.abs(rng.normal(centre[k], 0.5 + 0.1 * centre[k], counts[k])) for k in GAP_CLASSES}
    out["all"] = np.concatenate([out[k] for k in GAP_CLASSES])
    return out


def test_a_mouth_that_opens_like_the_subject_on_more_open_vowels_matches_it():
    """Same per-class motion, a phone mix richer in open vowels: the raw p90 is well above the
    own speech's, the matched one is not."""
    rng = np.random.default_rng(1)
    own = _gaps(rng, {"open_vowels": 400, "bilabials": 200, "other_phones": 2400, "silence": 600})
    performed = _gaps(rng, {"open_vowels": 3000, "bilabials": 1000, "other_phones": 4000, "silence": 2000})
    cmp = compare_gaps(performed, own)
    assert cmp["all"]["raw_ratio"] > 1.25
    assert cmp["all"]["matched_ratio"] == pytest.approx(1.0, abs=0.05)
    assert cmp["shares"]["open_vowels"] == pytest.approx(0.3)
    for name in ("open_vowels", "other_phones"):
        assert cmp["classes"][name]["p50_ratio"] == pytest.approx(1.0, abs=0.05)
        assert cmp["classes"][name]["own_frames"] == own[name].size


def test_a_mouth_that_opens_wider_than_the_subject_is_seen_in_every_class():
    rng = np.random.default_rng(2)
    counts = {"open_vowels": 2000, "bilabials": 500, "other_phones": 6000, "silence": 1500}
    own = _gaps(rng, counts)
    cmp = compare_gaps(_gaps(rng, counts, scale=1.5), own)
    assert cmp["all"]["matched_ratio"] == pytest.approx(1.5, abs=0.08)
    assert cmp["all"]["raw_ratio"] == pytest.approx(1.5, abs=0.08)
    for name in ("open_vowels", "other_phones"):
        assert cmp["classes"][name]["p90_ratio"] == pytest.approx(1.5, abs=0.08)
    text = format_comparison(cmp)
    assert "at this set's phone mix" in text and "open_vowels" in text


def test_a_class_the_own_speech_lacks_has_no_ratio():
    rng = np.random.default_rng(3)
    own = _gaps(rng, {"open_vowels": 0, "bilabials": 50, "other_phones": 300, "silence": 50})
    performed = _gaps(rng, {"open_vowels": 100, "bilabials": 50, "other_phones": 300, "silence": 50})
    cmp = compare_gaps(performed, own)
    row = cmp["classes"]["open_vowels"]
    assert row["own_frames"] == 0 and row["own_p90_mm"] is None and row["p90_ratio"] is None
    assert row["p90_mm"] is not None
    assert np.isfinite(cmp["all"]["matched_p90_mm"])
    json.dumps(cmp)                                        # JSON-ready
