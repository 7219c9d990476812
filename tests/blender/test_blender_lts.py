"""The extension on Blender 4.5 LTS and 4.2 LTS (bpy from PyPI in their own venvs, ``make
venv-bpy45 venv-bpy42``): the 4.x compositor (``scene.use_nodes``/``node_tree``, Composite
node), the render engine through it, the action writer (slotted on 4.5, legacy F-curves on
4.2), a target character, and the panel's Generate (frame range, a new file's strip in place
of the old one, one undo), checked in a subprocess each."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from .lts import LTS_VENVS, run_scenario
from .test_dialogue import write_video

@pytest.fixture(scope="module", params=sorted(LTS_VENVS))
def scenario(request, tmp_path_factory):
    work = tmp_path_factory.mktemp("lts")
    for name, codecs in (("video.mp4", ("mpeg4", "aac", 16000)), ("video.webm", ("libvpx", "libopus", 48000))):
        write_video(work / name, 2.5, 1.5, *codecs)       # 1.5 s of speech in 2.5 s of video: 38 frames at 25 fps
    found = run_scenario(request.param, "scenario.py", work, "SCENARIO", EMOTALK3D_PYTHON=sys.executable)
    found["expected"] = request.param
    return found, work


def test_runs_on_blender_4_5_and_4_2(scenario):
    found, _ = scenario
    assert found["version"].startswith(found["expected"])
    assert found["generate_rc"] == 0
    assert found["range"] == [1, found["range"][2], found["range"][2]]   # a new scene: exactly the performance
    assert found["slotted"] is (found["expected"] == "4.5") and found["group_compositor"] is False
    assert '["emotalk3d_emotion"]' in found["curves"] and any(c.startswith("key_blocks") for c in found["curves"])
    # the sound strip where Blender has audio (4.5); without it (the 4.2 wheels) no strip and
    # no sequence editor that the file did not have before
    assert found["audio"] is (found["expected"] == "4.5")
    if found["audio"]:
        assert found["strips"] == 1
    else:
        assert found["strips"] == 0 and found["sequence_editor"] is found["sequence_editor_before"]


def test_compositor_set_up_on_the_node_tree(scenario):
    found, _ = scenario
    assert found["use_nodes_before"] is False and found["idempotent"] is True
    # the default Render Layers -> Composite link becomes the background of the Alpha Over
    assert {"EmoTalk3D Gaussians", "EmoTalk3D Over", "Render Layers", "Composite"} <= set(found["nodes"])
    assert found["after_remove"] == {"scenes": ["Scene"], "use_nodes": False, "ours_left": []}


def test_renders_through_the_4x_compositor_and_frames_are_independent(scenario):
    from PIL import Image

    found, work = scenario
    assert found["render_rc"] == 0 and found["render_alone_rc"] == 0, found
    assert found["last_render"]["ok"] is True
    anim = np.asarray(Image.open(work / "anim" / "frame_0003.png")).astype(int)
    alone = np.asarray(Image.open(work / "alone" / "frame_0003.png")).astype(int)
    other = np.asarray(Image.open(work / "anim" / "frame_0002.png")).astype(int)
    assert anim.shape == (96, 96, 4) and np.array_equal(anim, alone)
    assert not np.array_equal(anim, other)
    # the head sits left of and below the centre (the camera is right of and above it)
    background = anim[0, -1, :3]
    head = np.abs(anim[..., :3] - background).sum(-1) > 30
    ys, xs = np.nonzero(head)
    assert head.sum() > 300 and xs.mean() < 48 - 3 and ys.mean() > 48 + 3


def test_a_target_character_is_driven_on_4_5_and_4_2(scenario):
    found, _ = scenario
    assert found["target_rc"] == 0, found
    t = found["target"]
    assert t["action_target"] == "Hero" and t["jaw_max"] > 0.2
    assert t["range"][:2] == [1, 250] and t["range"][2] < 250      # the artist's file (--open): range kept
    keyed = {f'key_blocks["{n}"].value' for n in ("ARKit_jawOpen", "mouthSmile_L", "mouthSmile_R")}
    assert keyed <= set(t["curves"]) <= keyed | {'key_blocks["browInnerUp"].value'}


def test_the_panels_generate_widens_the_range_and_a_new_file_replaces_the_dialogue(scenario):
    found, _ = scenario
    p = found["panel"]
    assert p["rc1"] == ["FINISHED"] and p["rc2"] == ["FINISHED"], p
    n1, n2 = p["take1"]["frames"], p["take2"]["frames"]
    assert n2 > n1 > 10
    assert p["take1"]["range"] == [1, n1] and p["take2"]["range"] == [1, n2]      # the range was 1-10
    if found["audio"]:                     # 4.5: one dialogue plays, the new take's; undo brings the old back
        assert p["take1"]["strips"] == [["demo_clip.wav", False, True]]
        assert p["take2"]["strips"] == [["take2.wav", False, True]]
        assert p["undo"] == {"range": [1, n1], "strips": [["demo_clip.wav", False, True]],
                             "playing": "demo_clip.wav", "actions": 1}
    else:                                  # 4.2 has no audio: no strips, the rest as on 4.5
        assert p["take1"]["strips"] == p["take2"]["strips"] == []
        assert p["undo"] == {"range": [1, n1], "strips": [], "playing": "demo_clip.wav", "actions": 1}
    assert p["take2"]["actions"] == 2


def test_a_video_files_sound_is_a_strip_as_long_as_its_audio(scenario):
    found, _ = scenario
    expected = {"video.mp4": 38, "video.webm": 38} if found["audio"] else {}
    assert found["videos"] == expected
