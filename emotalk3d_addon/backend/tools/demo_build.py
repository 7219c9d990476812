"""Rebuild the embedded demo subject from scratch with a fixed seed (``make demo-subject``).

synthetic multi-view dataset (demo preset) + speech corpus (demo preset: 2 h of English
from three engines, 9 min in each of ten other languages) -> full training with the Whisper
tiny.en encoder (frozen, from its pinned package, so the bundle carries no encoder weights;
S2GNet's lip-gap and closure terms measured on the shape keys' mix) -> the bundle in
``emotalk3d_addon/subjects/demo`` + ``demo_clip.wav``, a held-out test sentence spoken
by a voice the training never heard. Every stage resumes where an interrupted run
stopped. The appearance is trained on 512² images from the paper's 85,500 head-completion
points (what densification and pruning leave is kept) with SH degree 1, within the 40 MB
budget of the shipped bundle.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from ..train.appearance import AppearanceTrainConfig
from ..train.full import FullTrainConfig, train_subject
from ..train.s2g import S2GTrainConfig

SEED = 0
DEMO_CONFIG = FullTrainConfig(
    S2GTrainConfig(steps=3000, batch=8, crop_frames=100, min_crop_frames=32, encoder="whisper:tiny.en",
                   checkpoint_every=250, seed=SEED, ema_decay=0.998, closure_weight=0.05, closure_window=1, lip_weight=0.2,
                   lip_on_mix=True),
    AppearanceTrainConfig(canonical_steps=600, g2a_steps=8000, num_otf=85_500, sh_degree=1, seed=SEED),
)


def write_phones(sequence, path: Path) -> None:
    """The synthesiser's phone times of a dataset sequence as "start end phone" lines (seconds,
    IPA), the format ``evaluate-lipsync --phones`` reads."""
    lines = ["# start_s end_s phone (IPA; _ = pause), espeak-ng's own timings"]
    lines += [f"{a:.4f} {b:.4f} {p.strip() or '_'}" for a, b, p in sequence.phones()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def add_arkit(bundle: Path, log=print) -> Path:
    """Give the bundle at ``bundle`` the ARKit shapes of the synthetic head's own rig (the
    rig is deterministic, so this needs no dataset); files beside the bundle's are kept."""
    from dataclasses import replace

    from ..arkit.basis import ArkitBasis
    from ..datasets.synthetic.arkit_rig import arkit_shapes
    from ..subject import load_subject

    subject = load_subject(bundle)
    shapes, present = arkit_shapes()
    if shapes.shape[1] != subject.geometry.num_vertices:
        raise ValueError(f"the rig's face has {shapes.shape[1]} vertices, the subject {subject.geometry.num_vertices}")
    replace(subject, arkit=ArkitBasis(shapes, present)).save(bundle)     # keeps the demo clip beside it
    log(f"ARKit shapes: {int(present.sum())} of 52 from the rig ({52 - int(present.sum())} absent) -> {bundle}")
    return bundle


def replace_speech_sections(speech: Path, target: Path, log=print) -> Path:
    """Put the speech sections of the bundle ``speech`` (S2GNet, emotion extractor, motion
    basis, encoder pin and their training record) into the bundle at ``target``, whose
    appearance and ARKit sections (and files beside them, such as the demo clip) stay. The
    two must share the face: template, triangles and landmarks."""
    from dataclasses import replace

    import numpy as np

    from ..subject import load_subject

    new, old = load_subject(speech), load_subject(target)
    a, b = new.geometry, old.geometry
    if a.template.shape != b.template.shape or np.abs(a.template - b.template).max() > 1e-7 or \
            not np.array_equal(a.triangles, b.triangles) or dict(a.landmarks) != dict(b.landmarks):
        raise ValueError(f"{speech} was trained on another face than {target}")
    training = dict(old.manifest.get("training") or {}) | {"s2g": new.manifest["training"]["s2g"]}
    manifest = old.manifest | {"description": new.manifest["description"], "basis": new.manifest["basis"],
                               "training": training}
    merged = replace(old, manifest=manifest, basis=new.basis, s2g_config=new.s2g_config, s2g_state=new.s2g_state,
                     emotion_config=new.emotion_config, emotion_state=new.emotion_state, encoder=new.encoder)
    merged.save(target)
    log(f"speech sections of {speech} -> {target} (appearance and ARKit kept)")
    return target


def build_speech(work: Path, target: Path, log=print) -> Path:
    """Retrain only the speech sections of the demo subject at ``target`` (its appearance
    stays): the dataset's geometry and audio (no images), the speech corpus, then S2GNet and
    the emotion extractor, each stage resuming where an interrupted run stopped."""
    from dataclasses import replace

    from ..datasets.speech_corpus.build import make_corpus
    from ..datasets.synthetic import make_dataset
    from ..train.s2g import train_s2g

    started = time.perf_counter()
    data = work / "data"
    if not (data / "dataset.json").is_file():
        make_dataset(data, preset="demo", seed=SEED, log=log, render=False)
    corpus = make_corpus(work / "corpus", preset="demo", seed=SEED, log=log)
    cfg = replace(DEMO_CONFIG.s2g, corpus=str(corpus))
    speech = work / "speech"
    train_s2g(data, speech, cfg, resume=True, log=log, name="demo")
    replace_speech_sections(speech, target, log)
    log(f"demo speech sections rebuilt in {time.perf_counter() - started:.0f} s -> {target}")
    return target


def build(work: Path, target: Path, log=print) -> Path:
    """Dataset + training under ``work``; the finished bundle replaces ``target``."""
    from dataclasses import replace

    from ..datasets.layout import load_dataset
    from ..datasets.speech_corpus.build import make_corpus
    from ..datasets.synthetic import make_dataset

    started = time.perf_counter()
    data = work / "data"
    if (data / "dataset.json").is_file():
        log(f"reusing the dataset in {data} (delete it to regenerate)")
    else:
        data = make_dataset(data, preset="demo", seed=SEED, log=log)
    log(f"dataset ready in {time.perf_counter() - started:.0f} s: {data}")
    corpus = make_corpus(work / "corpus", preset="demo", seed=SEED, log=log)
    log(f"speech corpus ready in {time.perf_counter() - started:.0f} s: {corpus}")
    config = replace(DEMO_CONFIG, s2g=replace(DEMO_CONFIG.s2g, corpus=str(corpus)))
    subject = train_subject(data, work / "subject", config, resume=True, log=log, name="demo")
    test = load_dataset(data).split("test")
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(subject, target)
    add_arkit(target, log)
    shutil.copyfile(test[0].audio_path, target / "demo_clip.wav")
    write_phones(test[0], target / "demo_clip.phones.txt")
    log(f"demo subject rebuilt in {time.perf_counter() - started:.0f} s -> {target}")
    return target
