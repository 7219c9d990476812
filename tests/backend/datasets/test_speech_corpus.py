"""The speech corpus: three engines with their own phone times, timing-preserving
augmentation, tempo copies re-timed and animated again, a resumable build, held-out voices."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from emotalk3d_addon.backend.datasets.speech_corpus import augment
from emotalk3d_addon.backend.datasets.speech_corpus.tempo import change_tempo
from emotalk3d_addon.backend.datasets.speech_corpus.build import PRESETS, make_corpus, plan_recordings, \
    recording_sentences
from emotalk3d_addon.backend.datasets.synthetic.head import RIG_VERSION
from emotalk3d_addon.backend.datasets.speech_corpus.engines import (ENGINES, NEURAL_ENGINE, VOICES, Prosody, Voice,
                                                                    available, emotion_prosody, synthesize)
from emotalk3d_addon.backend.datasets.speech_corpus.layout import load_corpus
from emotalk3d_addon.backend.datasets.speech_corpus.motion import Segment, emotion_state
from emotalk3d_addon.backend.datasets.speech_corpus.text import corpus_sentences
from emotalk3d_addon.backend.datasets.synthetic.sentences import TEST_SENTENCES
from emotalk3d_addon.backend.emotions import EMOTIONS
from emotalk3d_addon.backend.speech.phones import arpabet_to_ipa, is_bilabial, openness

NEUTRAL = Prosody(1.0, 0.0, 0.0, {})
needs_engines = pytest.mark.skipif(not all(available(e) for e in ENGINES + (NEURAL_ENGINE,)),
                                   reason="espeak-ng, flite, festival (make sysdeps) and piper (requirements.txt) "
                                          "are needed")


@needs_engines
@pytest.mark.parametrize("voice", [Voice("espeak-ng", "en-us+f2"), Voice("flite", "slt"), Voice("flite", "kal"),
                                   Voice("festival", "cmu_us_slt_arctic_hts"), Voice("festival", "kal_diphone")])
def test_each_engine_gives_16_khz_audio_with_its_own_phone_times(voice):
    utt = synthesize(voice, "Bob moved the map.", NEUTRAL)
    assert utt.sample_rate == 16000 and utt.samples.dtype == np.float32
    starts = [p.start for p in utt.phonemes]
    assert starts == sorted(starts) and all(p.end > p.start for p in utt.phonemes)
    assert utt.phonemes[-1].end <= utt.duration + 1e-6 and utt.phonemes[-1].end > 0.8 * utt.duration
    labels = "".join(p.ipa for p in utt.phonemes)
    assert "b" in labels and "m" in labels          # both bilabials of "Bob ... map" are there, as IPA
    # the phones sit on the speech: the RMS inside phones is far above that of the leading pause
    first = next(p for p in utt.phonemes if openness(p.ipa) > 0.3)
    a, b = int(first.start * 16000), int(first.end * 16000)
    assert np.sqrt(np.mean(utt.samples[a:b] ** 2)) > 0.01


@needs_engines
@pytest.mark.parametrize("voice", [Voice(e, v) for e in ENGINES for v in VOICES[e]], ids=lambda v: v.key)
def test_every_listed_voice_exists(voice):
    assert synthesize(voice, "Hi.", NEUTRAL).duration > 0.1


@needs_engines
@pytest.mark.parametrize("engine", ENGINES)
def test_sad_is_slower_than_fear_in_every_engine(engine):
    rng = np.random.default_rng(0)
    voice = Voice(engine, VOICES[engine][0])
    sad = synthesize(voice, "Maybe my mom meant the blue boat.", emotion_prosody("sad", 1.0, rng))
    fear = synthesize(voice, "Maybe my mom meant the blue boat.", emotion_prosody("fear", 1.0, rng))
    assert sad.duration > 1.2 * fear.duration


def test_arpabet_labels_become_ipa_the_rig_reads():
    assert [arpabet_to_ipa(x) for x in ("AA1", "b", "ow", "pau", "h#", "zzz")] == ["ɑ", "b", "oʊ", "_", "_", "_"]
    assert is_bilabial("m") and is_bilabial("bʲ") and not is_bilabial("ɑ")
    assert openness("ɑ") == 1.0 and openness("i") < openness("ɛ") < openness("a") and openness("p") == 0.0


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox is needed")
@pytest.mark.parametrize("chain", [augment.Chain(pitch_cents=250), augment.Chain(pitch_cents=-250),
                                   augment.Chain(telephone=True), augment.Chain(reverb=70),
                                   augment.Chain(eq=(900.0, 1.0, 10.0)), augment.Chain(codec="mp3", bitrate_kbps=24),
                                   augment.Chain(codec="ogg", bitrate_kbps=24),
                                   augment.Chain(codec="ogg"), augment.Chain(noise="pink", snr_db=10.0)])
def test_augmentation_keeps_length_and_timing(chain):
    """Bursts at known samples are still there after the chain, within 8 ms (a fifth of a
    25 fps frame; a reverb tail moves the envelope's peak by up to 15 ms more)."""
    rng = np.random.default_rng(0)
    n = 3 * 16000
    x = np.zeros(n, np.float32)
    onsets = [8000, 20000, 37000]
    t = np.arange(2400) / 16000
    for o in onsets:
        x[o:o + 2400] = 0.5 * np.sin(2 * np.pi * 440 * t) * np.hanning(2400)
    y = augment.apply_chain(x, chain, rng)
    assert y.shape == x.shape and np.isfinite(y).all() and np.abs(y).max() <= 1
    env = np.convolve(np.abs(y), np.ones(160) / 160, "same")
    for o in onsets:
        window = env[o - 1600:o + 4000]
        peak = o - 1600 + int(np.argmax(window))
        assert abs(peak - (o + 1200)) < 128 + (240 if chain.reverb else 0), (chain.describe(), peak - o - 1200)


@pytest.mark.parametrize("factor", [0.9, 1.1, 1.3, 1.5])
def test_tempo_change_puts_time_t_at_t_over_the_factor(factor):
    """Bursts at known times land at time / factor, within 12 ms (WSOLA's own jitter, under a
    third of a 25 fps frame), and the length is the input's / factor."""
    rng = np.random.default_rng(0)
    x = np.zeros(6 * 16000, np.float32)
    starts = [0.5, 1.3, 2.2, 3.0, 4.1, 5.2]
    for s in starts:
        a = int(s * 16000)
        x[a:a + 800] = rng.standard_normal(800).astype(np.float32) * 0.5 * np.hanning(800)
    y = change_tempo(x, factor)
    assert y.size == round(x.size / factor)

    def centroid(signal, centre):
        lo = max(0, centre - 2400)
        energy = signal[lo:centre + 2400].astype(np.float64) ** 2
        return (lo + (np.arange(energy.size) * energy).sum() / energy.sum()) / 16000

    for s in starts:
        before = centroid(x, int(s * 16000))
        after = centroid(y, int(before / factor * 16000))
        assert abs(after - before / factor) < 0.012, (s, after - before / factor)


def test_noise_is_added_at_the_requested_snr():
    rng = np.random.default_rng(1)
    x = (0.3 * np.sin(np.arange(32000) * 0.05)).astype(np.float32)
    y = augment.apply_chain(x, augment.Chain(noise="white", snr_db=10.0), rng)
    snr = 10 * np.log10(np.mean(x ** 2) / np.mean((y - x) ** 2))
    assert abs(snr - 10.0) < 0.5


def test_emotion_state_follows_the_utterances_and_sums_to_one():
    times = np.arange(0, 8, 0.04)
    segs = [Segment(0.3, 2.5, "happy", 1.0), Segment(3.5, 5.0, "sad", 0.5), Segment(6.0, 7.5, "neutral", 0.0)]
    w, i = emotion_state(segs, times)
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-5)
    at = lambda s: int(round(s / 0.04))
    assert w[at(1.5)].argmax() == EMOTIONS.index("happy") and abs(i[at(1.5)] - 1.0) < 1e-3
    assert w[at(4.2)].argmax() == EMOTIONS.index("sad") and abs(i[at(4.2)] - 0.5) < 1e-3
    assert w[at(7.0)].argmax() == 0 and i[at(7.0)] < 1e-3
    assert i[0] == 0.0                                        # ramps in from neutral at the start
    assert 0.5 < i[at(3.0)] < 1.0                             # changes are smooth, not steps


def test_sentences_are_distinct_and_never_the_held_out_ones():
    s = corpus_sentences(3000, seed=0)
    assert len(set(s)) == 3000 and not set(s) & set(TEST_SENTENCES)
    assert corpus_sentences(50, seed=0) == s[:50]


def test_plan_holds_out_voices_of_every_engine():
    p = PRESETS["demo"]
    plan = [r for r in plan_recordings(p, 0) if r.voice.engine != NEURAL_ENGINE]     # its own test below
    train = {(r.voice.engine, r.voice.name) for r in plan if r.split == "train"}
    test = {(r.voice.engine, r.voice.name) for r in plan if r.split == "test"}
    assert not train & test and {e for e, _ in test} == set(ENGINES) and {e for e, _ in train} == set(ENGINES)
    assert len([r for r in plan if r.split == "train"]) * p.recording_s >= p.hours * 3600 - p.recording_s


def test_the_neural_voice_is_planned_after_the_rest_and_keeps_their_plan():
    """The demo's Piper recordings come last: every other recording keeps its index, voice,
    split and seed; they speak English, some held out (the one voice is trained on, so those
    speak sentences no training recording speaks)."""
    from dataclasses import replace

    from emotalk3d_addon.backend.errors import InputError

    p = PRESETS["demo"]
    plan, without = plan_recordings(p, 0), plan_recordings(replace(p, neural_hours=0.0), 0)
    assert p.neural_hours > 0 and plan[:len(without)] == without
    neural = plan[len(without):]
    assert neural and all(s.voice.engine == NEURAL_ENGINE and s.language == "en" for s in neural)
    train = [s for s in neural if s.split == "train"]
    assert abs(len(train) * p.recording_s - p.neural_hours * 3600) <= p.recording_s
    assert len(neural) - len(train) == p.neural_test_recordings
    assert [s.index for s in plan] == list(range(len(plan)))
    english, unseen = ["a", "b"], ["c"]
    assert recording_sentences(train[0], english, unseen) == english
    held = next(s for s in neural if s.split == "test")
    assert recording_sentences(held, english, unseen) == unseen
    with pytest.raises(InputError, match="never saw"):
        recording_sentences(held, english)


@needs_engines
def test_tiny_corpus_builds_resumes_and_reads_back(tmp_path):
    out = tmp_path / "corpus"
    make_corpus(out, "tiny", seed=0, log=lambda _: None)
    corpus = load_corpus(out)
    assert corpus.split("train") and corpus.split("test")
    template = corpus.topology.template
    originals = {r.name: r for r in corpus.recordings if "tempo" not in r.meta}
    copies = [r for r in corpus.recordings if "tempo" in r.meta]
    # one tempo copy per training recording, none of the held-out ones
    assert sorted(c.meta["source"] for c in copies) == sorted(r.name for r in corpus.split("train") if r in originals.values())
    for copy in copies:
        source, factor = originals[copy.meta["source"]], copy.meta["tempo"]
        assert copy.split == "train" and 1.1 <= factor <= 1.5 and len(copy.audio_files) == 1
        assert abs(copy.frames - source.frames / factor) <= 1
        np.testing.assert_allclose(np.array([p[:2] for p in copy.phones]),
                                   np.array([p[:2] for p in source.phones]) / factor, atol=1e-3)
        assert [p[2] for p in copy.phones] == [p[2] for p in source.phones]
    # the neural voice speaks in both splits; its held-out recordings say nothing training says
    neural = [r for r in corpus.recordings if r.engine == NEURAL_ENGINE and "tempo" not in r.meta]
    assert {r.split for r in neural} == {"train", "test"} and all(r.phones for r in neural)
    said = {u["text"] for r in corpus.split("train") for u in r.meta["utterances"]}
    assert not {u["text"] for r in neural if r.split == "test" for u in r.meta["utterances"]} & said
    for rec in corpus.recordings:
        motion, emo = rec.motion(), rec.emotion()
        assert motion.shape == (rec.frames, template.shape[0], 3) and motion.dtype == np.float16
        assert emo.shape == (rec.frames, 9)
        np.testing.assert_allclose(emo[:, :8].sum(1), 1.0, atol=1e-4)
        assert len(rec.audio_files) == (1 if rec in copies else 2)
        import soundfile as sf
        lengths = {sf.info(str(f)).frames for f in rec.audio_files}
        assert len(lengths) == 1                               # augmented copies keep the length
        assert abs(lengths.pop() / 16000 * corpus.fps - rec.frames) <= 1
        assert rec.phones[-1][1] <= rec.frames / corpus.fps + 1e-3
    # interrupted builds resume: a removed recording is rebuilt identically, the others are kept
    victim = corpus.recordings[0]
    before = np.asarray(victim.motion()).copy()
    kept = corpus.recordings[1].folder / "meta.json"
    stamp = kept.stat().st_mtime_ns
    shutil.rmtree(victim.folder)
    make_corpus(out, "tiny", seed=0, log=lambda _: None)
    np.testing.assert_array_equal(np.asarray(load_corpus(out).recordings[0].motion()), before)
    assert kept.stat().st_mtime_ns == stamp
    # motion an older rig made is made again (the same draws), audio and other recordings kept
    for rec in (corpus.recordings[1], copies[0]):
        meta_path = rec.folder / "meta.json"
        meta = json.loads(meta_path.read_text())
        assert meta["rig"] == RIG_VERSION
        before = np.asarray(rec.motion()).copy()
        np.save(rec.folder / "motion.npy", np.zeros_like(before))
        meta_path.write_text(json.dumps(meta | {"rig": RIG_VERSION - 1}))
        audio = (rec.folder / "audio.flac").stat().st_mtime_ns
        untouched = corpus.recordings[2].folder / "meta.json"
        stamp = untouched.stat().st_mtime_ns
        make_corpus(out, "tiny", seed=0, log=lambda _: None)
        np.testing.assert_array_equal(np.load(rec.folder / "motion.npy"), before)
        assert json.loads(meta_path.read_text())["rig"] == RIG_VERSION
        assert (rec.folder / "audio.flac").stat().st_mtime_ns == audio
        assert untouched.stat().st_mtime_ns == stamp
    info = json.loads((out / "corpus.json").read_text())
    assert info["recordings"] == len(originals)
    from emotalk3d_addon.backend.errors import InputError
    with pytest.raises(InputError, match="other settings"):
        make_corpus(out, "tiny", seed=1, log=lambda _: None)
