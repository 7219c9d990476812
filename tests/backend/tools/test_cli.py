"""The ``emotalk3d`` command's contract: outputs, exit codes, one-line errors."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emotalk3d_addon.backend.tools.cli import main
from emotalk3d_addon.backend.emotions import EMOTIONS



@pytest.fixture(scope="module")
def audio(tiny_dataset) -> Path:
    return next((tiny_dataset / "sequences").glob("*_neutral")) / "audio.wav"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_writes_the_track(tmp_path, capsys, trained_subject, audio):
    out = tmp_path / "track.npz"
    code, stdout, _ = run(capsys, "predict", "--subject", trained_subject, "--audio", audio, "--out", out,
                          "--fps", "29.97", "--emotion", "happy", "--intensity", "0.5")
    assert code == 0 and "wrote" in stdout
    with np.load(out) as t:
        duration = sf.info(str(audio)).duration
        frames = int(np.ceil(round(duration * 30000 / 1001, 9)))
        assert t["vertices"].shape[0] == frames and t["vertices"].dtype == np.float32
        assert t["emotion"].shape == (frames, 8) and np.all(t["emotion"][:, 5] == 1)
        assert np.allclose(t["intensity"], 0.5)
        assert list(t["emotion_names"]) == list(EMOTIONS)
        assert float(t["fps"]) == pytest.approx(29.97, abs=1e-3)
        # the track is the shape keys' mix of the coefficients beside it (one performance)
        from emotalk3d_addon.backend.subject import load_subject

        subject = load_subject(trained_subject)
        mix = subject.geometry.template[None] + subject.basis.expand(t["coefficients"])
        np.testing.assert_allclose(t["vertices"], mix, atol=1e-6)


def test_predict_with_keys_and_from_speech(tmp_path, capsys, trained_subject, audio):
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps([{"frame": 0, "emotion": "sad", "intensity": 1.0},
                                {"frame": 20, "emotion": "angry", "intensity": 0.5}]))
    assert run(capsys, "predict", "--subject", trained_subject, "--audio", audio, "--out",
               tmp_path / "k.npz", "--keys", keys, "--fps", "25")[0] == 0
    with np.load(tmp_path / "k.npz") as t:
        assert t["emotion"][0, 6] == 1 and t["emotion"][10, 6] == pytest.approx(0.5)
        assert t["intensity"][20] == pytest.approx(0.5)
    assert run(capsys, "predict", "--subject", trained_subject, "--audio", audio, "--out",
               tmp_path / "s.npz")[0] == 0
    with np.load(tmp_path / "s.npz") as t:
        np.testing.assert_allclose(t["emotion"].sum(1), 1, atol=1e-5)


def test_info_and_validate(tmp_path, capsys, trained_subject):
    code, out, _ = run(capsys, "info", "--subject", trained_subject, "--json")
    info = json.loads(out)
    assert code == 0 and set(info["landmarks"]) >= {"upper_lip", "lower_lip", "mouth_left", "mouth_right"}
    assert info["emotions"] == list(EMOTIONS)
    assert run(capsys, "validate", trained_subject)[0] == 0
    broken = tmp_path / "broken"
    shutil.copytree(trained_subject, broken)
    (broken / "s2g.safetensors").write_bytes(b"\x80\x04not safetensors")
    code, out, _ = run(capsys, "validate", broken)
    assert code == 1 and "s2g.safetensors" in out


def bad_cases(tmp_path, subject, audio):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(os.urandom(4000))
    out = tmp_path / "o.npz"
    base = ["predict", "--subject", subject, "--out", out]
    return {
        "missing audio": base + ["--audio", tmp_path / "nope.wav"],
        "empty audio": base + ["--audio", empty],
        "undecodable audio": base + ["--audio", garbage],
        "unknown subject": ["predict", "--subject", "no-such-subject", "--audio", audio, "--out", out],
        "bad fps": base + ["--audio", audio, "--fps", "0"],
        "bad emotion": base + ["--audio", audio, "--emotion", "bored"],
        "bad intensity": base + ["--audio", audio, "--emotion", "sad", "--intensity", "3"],
        "emotion and keys": base + ["--audio", audio, "--emotion", "sad", "--keys", tmp_path / "k.json"],
        "missing keys": base + ["--audio", audio, "--keys", tmp_path / "nokeys.json"],
        "cuda absent": base + ["--audio", audio, "--device", "cuda"],
        "unknown option": base + ["--audio", audio, "--colour", "red"],
        "info of a broken path": ["info", "--subject", tmp_path],
    }


def test_bad_input_exits_2_with_one_line(tmp_path, capsys, trained_subject, audio):
    for name, argv in bad_cases(tmp_path, trained_subject, audio).items():
        if name == "cuda absent" and __import__("torch").cuda.is_available():
            continue
        code, _, err = run(capsys, *argv)
        assert code == 2, name
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, err)
        assert "Traceback" not in err
    assert not (tmp_path / "o.npz").exists()


def test_console_script_and_debug_traceback(tmp_path, audio):
    exe = Path(sys.executable).with_name("emotalk3d")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "emotalk3d_addon.backend.tools.cli"]
    r = subprocess.run(cmd + ["predict", "--subject", str(tmp_path), "--audio", str(audio),
                              "--out", str(tmp_path / "x.npz")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    r = subprocess.run(cmd + ["--debug", "predict", "--subject", str(tmp_path), "--audio", str(audio),
                              "--out", str(tmp_path / "x.npz")], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" in r.stderr


def test_console_script_leaves_a_complete_track_and_its_message(tmp_path, trained_subject, audio):
    """The console entry skips the interpreter's teardown: the track it wrote must be whole
    and its stdout line must still arrive through a pipe."""
    exe = Path(sys.executable).with_name("emotalk3d")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "emotalk3d_addon.backend.tools.cli"]
    out = tmp_path / "t.npz"
    r = subprocess.run(cmd + ["predict", "--subject", str(trained_subject), "--audio", str(audio),
                              "--out", str(out), "--emotion", "happy"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"wrote {out}: ")
    frames = int(r.stdout.split(": ")[1].split()[0])
    with np.load(out) as track:
        assert track["vertices"].shape[0] == frames and np.isfinite(track["vertices"]).all()


def test_a_training_command_without_the_training_tools_says_where_they_are(tmp_path, capsys, monkeypatch):
    """The extension zip leaves train/ and datasets/ out: a command that needs them exits 2
    with one line naming the missing part, not a traceback."""
    for name in [m for m in sys.modules if m.startswith("emotalk3d_addon.backend.train")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "emotalk3d_addon.backend.train", None)     # as if not shipped
    code = main(["train-s2g", "--data", str(tmp_path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "emotalk3d_addon.backend.train" in err and "source checkout" in err
