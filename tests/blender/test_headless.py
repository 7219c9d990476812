"""The command-line path: ``python -m emotalk3d_addon generate ... --save OUT.blend`` (bpy from
PyPI; the same function ``blender -b --command emotalk3d`` calls) writes a .blend that reopens
with the performance."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from .conftest import audio_frames, bpy, evaluated

ROOT = Path(__file__).resolve().parents[2]


def _run(args, tmp_path, timeout=300):
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "blender-user"))
    return subprocess.run([sys.executable, "-m", "emotalk3d_addon", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_cli_writes_a_blend_that_reopens_with_the_performance(addon, trained_subject, speech, tmp_path):
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps([{"frame": 0, "emotion": "happy", "intensity": 1.0},
                                {"frame": 25, "emotion": "fear", "intensity": 0.5}]))
    out = tmp_path / "shot.blend"
    proc = _run(["generate", "--subject", str(trained_subject), "--audio", str(speech), "--keys", str(keys),
                 "--fps", "29.97", "--start-frame", "12", "--save", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.is_file() and "saved" in proc.stdout

    bpy.ops.wm.open_mainfile(filepath=str(out))
    scene = bpy.context.scene
    s = scene.emotalk3d
    frames = audio_frames(speech, Fraction(30000, 1001))
    assert (scene.render.fps, round(scene.render.fps_base, 4)) == (30, 1.001)
    assert (scene.frame_start, scene.frame_end) == (12, 12 + frames - 1)
    act = s.last_action
    assert act is not None and act.emotalk3d.num_frames == frames and act.emotalk3d.emotion_mode == "keys"
    from emotalk3d_addon.bridge import keys as keys_mod
    from emotalk3d_addon.bridge import sequencer

    assert keys_mod.scene_keys(scene, s, 12) == [{"frame": 0.0, "emotion": "happy", "intensity": 1.0},
                                                 {"frame": 25.0, "emotion": "fear", "intensity": 0.5}]
    strip = sequencer.find_strip(scene, s.strip)
    assert strip.frame_start == 12 and sequencer.strip_audio_path(strip) == str(speech)
    head = s.head
    assert head.data.shape_keys.animation_data.action == act
    moved = [np.abs(evaluated(head, 12 + f) - evaluated(head, 12)).max() for f in (5, 15)]
    assert max(moved) > 1e-5                     # the performance plays from the saved file


def test_cli_drives_a_character_in_an_opened_file(scene, tmp_path):
    """``generate --open IN.blend --target OBJECT``: the character in the artist's file gets the
    performance on its own shape keys; an object that is not a character exits 2."""
    from emotalk3d_addon.backend.subject import resolve_subject

    from .test_target import _character, _curve

    ob = _character("Hero")
    src, out = tmp_path / "in.blend", tmp_path / "out.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(src))
    clip = resolve_subject("demo") / "demo_clip.wav"
    proc = _run(["generate", "--open", str(src), "--target", "Hero", "--subject", "demo", "--audio", str(clip),
                 "--emotion", "happy", "--fps", "25", "--save", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "noseSneerRight" in proc.stdout                      # the unmatched shape, reported once
    bpy.ops.wm.open_mainfile(filepath=str(out))
    hero = bpy.data.objects["Hero"]
    act = hero.data.shape_keys.animation_data.action
    assert act is not None and act.emotalk3d.target == "Hero" and _curve(act, "ARKit_jawOpen")[:, 1].max() > 0.2
    assert not [o for o in bpy.data.objects if o.emotalk3d_head.fingerprint]      # no subject head was added
    bad = _run(["generate", "--open", str(src), "--target", "Camera", "--subject", "demo", "--audio", str(clip),
                "--save", str(tmp_path / "x.blend")], tmp_path)
    assert bad.returncode == 2 and "no mesh object with shape keys named 'Camera'" in bad.stderr
    del ob


def test_cli_bad_input_exits_2_with_one_line(addon, trained_subject, tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio at all")
    out = tmp_path / "never.blend"
    proc = _run(["generate", "--subject", str(trained_subject), "--audio", str(broken), "--emotion", "happy",
                 "--save", str(out)], tmp_path)
    assert proc.returncode == 2 and not out.exists()
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "broken.wav" in errors[0]
    proc = _run(["generate", "--subject", str(trained_subject), "--audio", str(broken), "--emotion", "joyful",
                 "--save", str(out)], tmp_path)
    assert proc.returncode == 2 and "joyful" in proc.stderr


def test_the_blender_command_is_registered(addon):
    import emotalk3d_addon

    assert emotalk3d_addon._cli_handle is not None      # bpy.utils.register_cli_command("emotalk3d", ...)


@pytest.mark.parametrize("text,want", [("1-3", (1, 3)), ("7", (7, 7)), (None, (5, 9)), ("10-10", (10, 10))])
def test_frames_argument(text, want):
    from emotalk3d_addon.bridge.headless import parse_frames

    assert parse_frames(text, (5, 9)) == want


@pytest.mark.parametrize("text", ["3-1", "a-b", "1-2-3", "x", ""])
def test_bad_frames_argument(text):
    from emotalk3d_addon.bridge.headless import parse_frames

    if text == "":
        assert parse_frames(text, (5, 9)) == (5, 9)
        return
    with pytest.raises(ValueError, match="--frames"):
        parse_frames(text, (5, 9))


def test_cli_render_bad_input_exits_2(addon, tmp_path):
    import subprocess
    import sys

    missing = subprocess.run([sys.executable, "-m", "emotalk3d_addon", "render", str(tmp_path / "none.blend"),
                              "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and missing.stderr.strip().splitlines()[-1].startswith("error: blend file not found")
    junk = tmp_path / "junk.blend"
    junk.write_bytes(b"BLENDER-v999 not really")
    bad = subprocess.run([sys.executable, "-m", "emotalk3d_addon", "render", str(junk), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "could not open" in bad.stderr.strip().splitlines()[-1]
