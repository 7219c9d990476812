"""The worker process and its client: JSON lines over pipes, arrays as .npy files.

Every test talks to a real worker process (``python -m emotalk3d_addon.backend.tools.worker``)
started from this interpreter, serving the subject trained by the project's own code.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from emotalk3d_addon.backend.protocol import PROTOCOL
from emotalk3d_addon.bridge import worker_client
from emotalk3d_addon.bridge.worker_client import (ADDON_DIR, WorkerClient, WorkerError, resolve_python,
                                                  worker_command, worker_environment)

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def client():
    c = WorkerClient(sys.executable, ADDON_DIR)
    yield c
    c.shutdown()


@pytest.fixture(scope="module")
def audio(tiny_dataset) -> Path:
    return next((tiny_dataset / "sequences").glob("*_neutral")) / "audio.wav"


def _load(path: str) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def test_ping_reports_the_backend(client):
    """The first start says what it imports (PyTorch before Transformers), then answers."""
    heard: list[str] = []
    info = client.ensure_started(on_progress=lambda f, m: heard.append(m))
    import torch

    assert info["torch"] == torch.__version__ and info["protocol"] == PROTOCOL
    assert info["pid"] == client.pid and client.alive
    if client.starts == 1 and heard:                          # this test started the worker
        # the client's line, the worker's "Started" read as the same, then one line per import
        assert heard[:2] == [worker_client.STARTING_MESSAGE] * 2
        steps = list(dict.fromkeys(m.split(":", 1)[1].split("(")[0].split(",")[0].strip() for m in heard[2:]))
        assert steps == ["importing NumPy", "importing PyTorch", "importing safetensors", "importing soundfile",
                         "importing Transformers"]


def test_load_subject_writes_arrays(client, trained_subject):
    from emotalk3d_addon.backend.subject import load_subject

    subject = load_subject(trained_subject)
    res = client.call("load_subject", {"subject": str(trained_subject)}, timeout=120)
    s = res["subject"]
    assert s["num_vertices"] == subject.geometry.num_vertices
    assert s["num_components"] == subject.basis.num_components
    np.testing.assert_array_equal(_load(s["arrays"]["template"]), subject.geometry.template)
    np.testing.assert_array_equal(_load(s["arrays"]["triangles"]), subject.geometry.triangles)
    assert _load(s["arrays"]["triangles"]).dtype == np.int32
    np.testing.assert_array_equal(_load(s["arrays"]["components"]), subject.basis.components)
    assert s["manifest"]["name"] == subject.name and len(s["fingerprint"]) == 16


def test_perform_coefficients_reproduce_the_backend(client, trained_subject, audio):
    """Coefficients (F, K) = project(vertices - template), the least-squares ones; expanded they
    match the pipeline within the basis error the worker reports (exactly that error), at an NTSC rate."""
    from emotalk3d_addon.backend.io.audio import load_audio
    from emotalk3d_addon.backend.performance.emotion_track import constant_track
    from emotalk3d_addon.backend.performance.runtime import SubjectRuntime
    from emotalk3d_addon.backend.subject import load_subject
    from emotalk3d_addon.backend.timebase import frame_count

    fps = Fraction(30000, 1001)
    call = client.submit("perform", {"subject": str(trained_subject), "audio": str(audio),
                                     "fps": [30000, 1001], "device": "cpu",
                                     "emotion": {"mode": "constant", "emotion": "happy", "intensity": 0.7}})
    seen = []
    res = call.wait(120, on_progress=lambda f, m: seen.append((f, m)))
    coeffs = _load(res["arrays"]["coefficients"])
    subject = load_subject(trained_subject)
    wave = load_audio(audio)
    frames = frame_count(wave.samples.size, wave.sample_rate, fps)
    assert coeffs.shape == (frames, subject.basis.num_components) and coeffs.dtype == np.float32
    assert res["num_frames"] == frames and res["fps"] == [30000, 1001]
    truth = SubjectRuntime(subject).perform(wave, fps, constant_track("happy", 0.7, frames)).vertices
    # the coefficients are the least-squares ones (nothing the shape keys could show is lost),
    # with the mouth closed toward the template where the clip is silent
    from emotalk3d_addon.backend.performance.mouth_closure import MouthClosure
    from emotalk3d_addon.backend.performance.silence import mouth_gate, voice_activity

    flat = subject.basis.components.reshape(subject.basis.num_components, -1).astype(np.float64)
    disp = (truth - subject.geometry.template[None]).reshape(frames, -1).astype(np.float64)
    lstsq = np.linalg.lstsq(flat.T, disp.T, rcond=None)[0].T
    gate = mouth_gate(voice_activity(wave.samples, wave.sample_rate), frames, fps)
    assert (gate == 1).mean() > 0.8
    np.testing.assert_allclose(coeffs, MouthClosure.of(subject).apply(lstsq, gate), atol=1e-4)
    rebuilt = subject.geometry.template[None] + subject.basis.expand(lstsq)
    err_mm = 1000 * np.linalg.norm(rebuilt - truth, axis=2)
    # the worker reports the error its coefficients really have (max and rms, every frame of a short clip)
    assert res["basis_error_frames"] == frames
    assert err_mm.max() == pytest.approx(res["basis_max_mm"], abs=1e-3)
    assert np.sqrt(np.mean(err_mm ** 2)) == pytest.approx(res["basis_rms_mm"], abs=1e-3)
    assert np.abs(coeffs).max() > 0.05     # and there is motion in it
    assert [m for _, m in seen][:1] == ["Started"] and any("S2GNet" in m for _, m in seen)
    np.testing.assert_allclose(_load(res["arrays"]["emotion"])[:, 5], 1.0)
    call.cleanup()
    assert not Path(res["arrays"]["coefficients"]).exists()


def test_the_basis_loses_no_more_than_the_network_gets_wrong(client, trained_subject, tiny_dataset):
    """The shape keys reproduce the performance as well as the network reproduces the capture.

    The basis spans the training motion up to the error the bundle reports for it (manifest
    ``basis.max_mm``), so on a training clip performed with its own label the part of the
    performance the shape keys lose is at most the network's own error against the captured
    meshes plus that: ||P(pred)|| <= ||pred - truth|| + ||P(truth)||, P the projection onto what
    the basis leaves out. That holds for any trained weights, so it does not hang on how training
    came out on this CPU (the residual itself came out between 0.2 and 1.3 mm max on the tiny
    subject, depending on the CPU's float rounding; a fixed "below 1 mm" failed on some CPUs).
    A basis or manifest that misses the captured motion (the clips move about 3 mm rms), or a
    residual measured against the wrong components, breaks it.
    """
    from emotalk3d_addon.backend.datasets.layout import load_dataset
    from emotalk3d_addon.backend.subject import load_subject

    basis_max_mm = load_subject(trained_subject).manifest["basis"]["max_mm"]
    dataset = load_dataset(tiny_dataset)
    clips = dataset.split("train")
    assert len(clips) >= 3
    for seq in clips:
        emotion = {"mode": "constant", "emotion": seq.emotion, "intensity": seq.intensity}
        res = client.call("perform", {"subject": str(trained_subject), "audio": str(seq.audio_path),
                                      "fps": [int(seq.fps), 1], "emotion": emotion, "return_vertices": True},
                          timeout=120)
        vertices = _load(res["arrays"]["vertices"])
        meshes = np.asarray(seq.meshes(), np.float32)
        n = min(len(vertices), len(meshes))
        assert n >= len(meshes) - 1
        network_rms_mm = 1000 * np.sqrt(np.mean(np.sum((vertices[:n] - meshes[:n]) ** 2, axis=2)))
        motion_rms_mm = 1000 * np.sqrt(np.mean(np.sum((meshes - dataset.topology.template) ** 2, axis=2)))
        assert res["basis_rms_mm"] <= network_rms_mm + basis_max_mm + 1e-3, (seq.name, res["basis_rms_mm"],
                                                                              network_rms_mm)
        assert motion_rms_mm > 1.0          # the clip moves, so the bound is not trivially loose


def test_regeneration_reuses_the_features(client, trained_subject, audio):
    params = {"subject": str(trained_subject), "audio": str(audio), "fps": [25, 1]}
    first = client.call("perform", {**params, "emotion": {"mode": "constant", "emotion": "sad"}}, timeout=120)
    again = client.call("perform", {**params, "emotion": {"mode": "constant", "emotion": "fear"}}, timeout=120)
    assert again["features_cached"] is True
    a, b = _load(first["arrays"]["coefficients"]), _load(again["arrays"]["coefficients"])
    assert a.shape == b.shape and not np.allclose(a, b)


def test_keys_and_fill_from_speech(client, trained_subject, audio):
    params = {"subject": str(trained_subject), "audio": str(audio), "fps": [25, 1]}
    keys = [{"frame": 0, "emotion": "angry", "intensity": 1.0}, {"frame": 39, "emotion": "sad", "intensity": 0.5}]
    keyed = client.call("perform", {**params, "emotion": {"mode": "keys", "keys": keys}}, timeout=120)
    speech = client.call("perform", {**params, "emotion": {"mode": "speech"}}, timeout=120)
    filled = client.call("perform", {**params, "emotion": {"mode": "keys", "keys": keys, "fill_from_speech": True,
                                                          "reach": 5}}, timeout=120)
    ek, es, ef = (_load(r["arrays"]["emotion"]) for r in (keyed, speech, filled))
    np.testing.assert_allclose(ek[0], np.eye(8)[1], atol=1e-6)             # keys pin their frames
    np.testing.assert_allclose(ef[0], np.eye(8)[1], atol=1e-6)
    np.testing.assert_allclose(ef[39], np.eye(8)[6], atol=1e-6)
    np.testing.assert_allclose(ef[10:30], es[10:30], atol=1e-6)            # speech fills the gap
    assert not np.allclose(ek[10:30], es[10:30], atol=1e-3)
    np.testing.assert_allclose(_load(filled["arrays"]["intensity"])[39], 0.5, atol=1e-6)


def test_bad_input_is_an_error_reply_and_the_worker_lives_on(client, trained_subject, tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF" + os.urandom(200))
    with pytest.raises(WorkerError) as err:
        client.call("perform", {"subject": str(trained_subject), "audio": str(broken), "fps": [30, 1]}, timeout=60)
    assert err.value.kind == "input" and "broken.wav" in str(err.value)
    with pytest.raises(WorkerError) as err:
        client.call("perform", {"subject": str(tmp_path / "nobody"), "audio": str(broken)}, timeout=60)
    assert err.value.kind == "input" and "nobody" in str(err.value)
    with pytest.raises(WorkerError) as err:
        client.call("no_such_op", {}, timeout=60)
    assert err.value.kind == "protocol"
    pid = client.pid
    assert client.call("ping", {}, timeout=60)["pid"] == pid


def test_cancel_kills_only_the_worker_then_it_restarts(client, trained_subject, audio):
    client.ensure_started()
    starts, pid = client.starts, client.pid
    call = client.submit("perform", {"subject": str(trained_subject), "audio": str(audio), "fps": [30, 1],
                                     "debug_delay": 60})
    deadline = time.monotonic() + 60
    while "debug delay" not in call.message and time.monotonic() < deadline:
        call.poll()
        time.sleep(0.02)
    assert "debug delay" in call.message
    t0 = time.monotonic()
    client.kill()
    with pytest.raises(WorkerError) as err:
        call.wait(10)
    assert err.value.kind == "cancelled" and time.monotonic() - t0 < 5
    assert not client.alive
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    res = client.call("perform", {"subject": str(trained_subject), "audio": str(audio), "fps": [30, 1],
                                  "emotion": {"mode": "constant", "emotion": "neutral"}}, timeout=120)
    assert client.starts == starts + 1 and client.pid != pid and res["num_frames"] > 0


def test_a_crash_gives_a_clear_message(client, trained_subject, audio):
    client.ensure_started()
    call = client.submit("perform", {"subject": str(trained_subject), "audio": str(audio), "fps": [30, 1],
                                     "debug_delay": 60})
    while "debug delay" not in call.message:
        call.poll()
        time.sleep(0.02)
    os.kill(client.pid, signal.SIGKILL)
    with pytest.raises(WorkerError) as err:
        call.wait(10)
    assert err.value.kind == "crashed" and "stopped unexpectedly" in str(err.value)
    assert client.call("ping", {}, timeout=120)["protocol"] == PROTOCOL


def test_an_interpreter_without_torch_is_reported(tmp_path):
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    bare = resolve_python(str(tmp_path / "bare"))
    c = WorkerClient(bare, ADDON_DIR)
    try:
        with pytest.raises(WorkerError) as err:
            c.ensure_started()
        assert err.value.kind == "missing" and bare in str(err.value)
    finally:
        c.shutdown()
    with pytest.raises(WorkerError) as err:
        resolve_python(str(tmp_path / "nope" / "python"))
    assert err.value.kind == "missing"
    with pytest.raises(WorkerError, match="Install backend"):
        resolve_python("", None, module_mode=False)
    assert resolve_python("", None, module_mode=True) == sys.executable


def test_protocol_survives_library_prints():
    """Python prints and C-level writes to fd 1 inside the worker land on stderr."""
    code = ("import os, sys; import emotalk3d_addon.backend.tools.worker as w; p = w._protocol_stream(); "
            "print('noise from print'); os.write(1, b'noise from C\\n'); sys.exit(w.serve(sys.stdin, p))")
    proc = subprocess.run([sys.executable, "-c", code], input='{"id": 7, "op": "shutdown"}\n', capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [m["type"] for m in lines] == ["hello", "result"] and lines[1]["id"] == 7
    assert "noise from print" in proc.stderr and "noise from C" in proc.stderr and proc.returncode == 0


def test_worker_exits_when_blender_goes_away():
    """End of stdin (Blender quit or crashed) ends the worker."""
    proc = subprocess.Popen(worker_command(sys.executable), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=worker_environment(), cwd=ROOT)
    assert json.loads(proc.stdout.readline())["type"] == "hello"
    proc.stdin.close()
    assert proc.wait(30) == 0
