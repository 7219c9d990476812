"""``make_dataset`` (tiny preset, geometry and audio only): the training layout, loadable
by ``load_dataset``, reproducible. The rendered images are tested in tests/blender."""
import json
import math

import numpy as np
import pytest
import soundfile as sf

from emotalk3d_addon.backend.datasets.layout import load_dataset
from emotalk3d_addon.backend.datasets.synthetic import PRESETS, GeneratorError, make_dataset
from emotalk3d_addon.backend.datasets.synthetic.generator import plan_sequences
from emotalk3d_addon.backend.datasets.synthetic.speech import espeak_available
from emotalk3d_addon.backend.emotions import EMOTIONS

pytestmark = pytest.mark.skipif(not espeak_available(), reason="libespeak-ng not installed")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("synth") / "tiny", "tiny", seed=0, log=None, render=False)


def test_tiny_dataset_loads_with_the_training_reader(tiny):
    ds = load_dataset(tiny)
    info = json.loads((tiny / "dataset.json").read_text())
    assert ds.fps == 25 and info["image_size"] == [64, 64] and info["generator"]["preset"] == "tiny"
    assert "space" in info
    V = ds.topology.template.shape[0]
    assert 2000 <= V <= 4000
    for name in ("upper_lip", "lower_lip", "mouth_left", "mouth_right", "nose_tip", "chin"):
        assert name in ds.topology.landmarks
    assert len(ds.split("train")) >= 2 and len(ds.split("test")) >= 1
    assert [p.name for p in ds.rigid_parts] == ["eye_left", "eye_right", "teeth_upper", "teeth_lower"]
    assert ds.rigid_parts[3].anchor.size >= 20
    cams = json.loads((tiny / "cameras.json").read_text())["cameras"]
    assert len(cams) == PRESETS["tiny"].cameras
    for seq in ds.sequences:
        meta = json.loads((seq.folder / "meta.json").read_text())
        audio, rate = sf.read(seq.audio_path)
        meshes = seq.meshes()
        assert meshes.dtype == np.float32 and meshes.shape[1:] == (V, 3)
        assert meshes.shape[0] == math.ceil(audio.size / rate * ds.fps)
        assert meta["emotion"] in EMOTIONS and meta["voice"] and meta["text"]
        assert meta["intensity"] == (0.0 if meta["emotion"] == "neutral" else 1.0)
        assert meta["image_frames"] == []               # render=False
        # speech-free start: silent audio, closed neutral face at frame 0
        assert np.abs(audio[: int(0.25 * rate)]).max() < 1e-3
        assert np.abs(meshes[0] - ds.topology.template).max() < 5e-4
        lm = ds.topology.landmarks
        gap = np.linalg.norm(meshes[:, lm["lower_lip"]] - meshes[:, lm["upper_lip"]], axis=-1)
        assert gap[0] < 5e-4 and gap.max() > 3e-3             # the mouth moves
        # the synthesiser's phones, in order, inside the audio, as Sequence.phones reads them
        phones = seq.phones()
        assert phones == [(float(a), float(b), str(p)) for a, b, p in meta["phonemes"]] and phones
        starts = np.array([a for a, _, _ in phones])
        assert np.all(np.diff(starts) >= 0) and phones[-1][1] <= audio.size / rate + 1e-6


def test_a_sequence_without_phones_has_none(tiny, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny, copy)
    seq = load_dataset(copy).sequences[0]
    meta = json.loads((seq.folder / "meta.json").read_text())
    del meta["phonemes"]
    (seq.folder / "meta.json").write_text(json.dumps(meta))
    assert load_dataset(copy).sequences[0].phones() == []


def test_test_split_uses_an_unseen_voice_and_unseen_sentences():
    specs = plan_sequences(PRESETS["demo"], seed=0)
    train = [s for s in specs if s.split == "train"]
    test = [s for s in specs if s.split == "test"]
    assert {s.voice for s in test}.isdisjoint({s.voice for s in train})
    assert {s.sentence for s in test}.isdisjoint({s.sentence for s in train})
    assert len({s.voice for s in train}) >= 4
    levels = {(s.emotion, s.intensity) for s in train}
    assert len(levels) == 1 + 7 * 2 and ("neutral", 0.0) in levels
    assert all(sum(1 for s in train if (s.emotion, s.intensity) == lv) == 3 for lv in levels)


def test_generation_is_reproducible(tiny, tmp_path):
    again = make_dataset(tmp_path / "again", "tiny", seed=0, log=None, render=False)
    other = make_dataset(tmp_path / "other", "tiny", seed=1, log=None, render=False)
    for seq in sorted(p.name for p in (tiny / "sequences").iterdir()):
        a, b = tiny / "sequences" / seq, again / "sequences" / seq
        np.testing.assert_array_equal(np.load(a / "meshes.npy"), np.load(b / "meshes.npy"))
        assert (a / "audio.wav").read_bytes() == (b / "audio.wav").read_bytes()
    assert (tiny / "topology.npz").read_bytes() == (again / "topology.npz").read_bytes() or \
        np.array_equal(np.load(tiny / "topology.npz")["template"], np.load(again / "topology.npz")["template"])
    # another seed: other sentences/voices or other expression variation
    diff = False
    for a, b in zip(sorted((tiny / "sequences").iterdir()), sorted((other / "sequences").iterdir())):
        ma, mb = np.load(a / "meshes.npy"), np.load(b / "meshes.npy")
        diff |= ma.shape != mb.shape or not np.array_equal(ma, mb)
    assert diff


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(GeneratorError, match="preset"):
        make_dataset(tmp_path / "x", "huge", log=None)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(GeneratorError, match="not empty"):
        make_dataset(tmp_path / "full", "tiny", log=None, render=False)
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"


def test_generator_never_imports_bpy():
    import subprocess
    import sys

    code = ("import sys; import emotalk3d_addon.backend.datasets.synthetic as s; "
            "import emotalk3d_addon.backend.datasets.synthetic.__main__; "
            "from emotalk3d_addon.backend.datasets.synthetic.model import HeadModel; HeadModel(); "
            "assert 'bpy' not in sys.modules, 'bpy imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_broken_rigid_parts_file_is_refused_by_name(tiny, tmp_path):
    import shutil

    from emotalk3d_addon.backend.errors import DatasetError

    copy = tmp_path / "copy"
    shutil.copytree(tiny, copy)
    with np.load(copy / "rigid_parts.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["teeth_lower.anchor"] = np.array([0, 1, 10 ** 6])
    np.savez(copy / "rigid_parts.npz", **arrays)
    with pytest.raises(DatasetError, match="rigid_parts.npz.*teeth_lower.*outside"):
        load_dataset(copy)
    (copy / "rigid_parts.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="rigid_parts.npz is not a readable"):
        load_dataset(copy)


def test_a_smaller_copy_of_the_held_out_views_has_the_same_cameras_and_frames(tiny_multiview, tmp_path):
    """--image-size and --render-split: the same views sampled at another size, only the test
    split rendered (how a zoomed-in evaluation gets its ground truth)."""
    from emotalk3d_addon.backend.datasets.multiview import read_rgba

    small = make_dataset(tmp_path / "small", "tiny", seed=0, log=None, image_size=32, render_splits=("test",))
    a = json.loads((tiny_multiview / "cameras.json").read_text())["cameras"]
    b = json.loads((small / "cameras.json").read_text())["cameras"]
    for ca, cb in zip(a, b):
        assert (cb["width"], cb["height"]) == (32, 32)
        np.testing.assert_allclose(np.asarray(cb["K"])[:2], np.asarray(ca["K"])[:2] / 2, rtol=1e-12)
        assert cb["world_to_camera"] == ca["world_to_camera"]
    for seq in sorted((small / "sequences").iterdir()):
        meta = json.loads((seq / "meta.json").read_text())
        full = json.loads((tiny_multiview / "sequences" / seq.name / "meta.json").read_text())
        np.testing.assert_array_equal(np.load(seq / "meshes.npy"), np.load(tiny_multiview / "sequences" / seq.name / "meshes.npy"))
        if meta["split"] == "test":
            assert meta["image_frames"] == full["image_frames"] != []
            pngs = sorted((seq / "images").rglob("*.png"))
            assert len(pngs) == len(full["image_frames"]) * len(b)
            assert tuple(read_rgba(pngs[0]).shape) == (32, 32, 4)
        else:
            assert meta["image_frames"] == [] and not (seq / "images").exists()
    assert json.loads((small / "dataset.json").read_text())["generator"]["rendered_splits"] == ["test"]
    with pytest.raises(GeneratorError, match="image size"):
        make_dataset(tmp_path / "bad", "tiny", log=None, image_size=8)
    with pytest.raises(GeneratorError, match="render_splits"):
        make_dataset(tmp_path / "bad", "tiny", log=None, render_splits=("validation",))
