"""The dialogue around a generation in real Blender: the scene's frame range holds the whole
performance, a new audio file replaces the previous take's sound strip (one undo brings it
back), the artist's own strips are never removed, and a video file's sound becomes a strip
as long as its audio."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from .conftest import audio_frames, bpy, setup_scene, snapshot


def _take(speech, path, repeat: float):
    """A second recording: the speech ``repeat`` times over (cut or repeated), same rate."""
    import soundfile as sf

    data, rate = sf.read(str(speech), dtype="float32")
    n = int(round(len(data) * repeat))
    sf.write(str(path), np.resize(data, n), rate)
    return path


def _sound_strips(scene):
    from emotalk3d_addon.bridge import sequencer

    return sorted((s.name, sequencer.strip_audio_path(s), s.channel, bool(s.mute), sequencer.is_ours(s))
                  for s in sequencer.sound_strips(scene))


def _playing(scene):
    """The sound files that play (unmuted strips)."""
    return sorted(f for _, f, _, mute, _ in _sound_strips(scene) if not mute)


def _choose_file(scene, path, start: int = 1):
    s = scene.emotalk3d
    s.audio_source, s.audio_file, s.audio_start = 'FILE', str(path), start


def test_generate_widens_the_frame_range_to_the_whole_performance(scene, trained_subject, speech):
    from emotalk3d_addon.operators.generate import LAST_REPORT

    s = setup_scene(scene, trained_subject, speech, start=3, fps=25)
    scene.frame_start, scene.frame_end = 5, 20              # shorter than the clip, and starting after it
    assert bpy.ops.emotalk3d.generate() == {'FINISHED'}
    frames = audio_frames(speech, 25)
    last = 3 + frames - 1
    assert s.last_action.emotalk3d.num_frames == frames and frames > 20
    assert (scene.frame_start, scene.frame_end) == (3, last)       # first and last word in playback
    assert f"frame range is now 3-{last}" in LAST_REPORT["message"]


def test_the_frame_range_is_only_widened_and_stays_in_blenders_limits(scene):
    from emotalk3d_addon.bridge.apply import cover_frame_range

    scene.frame_start, scene.frame_end = 1, 500                    # the artist's longer range
    assert cover_frame_range(scene, 10, 30) is None and (scene.frame_start, scene.frame_end) == (1, 500)
    assert cover_frame_range(scene, 1, 14520) == (1, 14520)        # a 10-minute take at 24 fps
    assert cover_frame_range(scene, 10, 30, exact=True) == (10, 39)   # a new file: exactly the performance
    assert cover_frame_range(scene, 400, 30, exact=True) == (400, 429)
    assert cover_frame_range(scene, -5.0, 10) == (0, 429)          # Blender's frames start at 0
    assert cover_frame_range(scene, 1048570, 100) == (0, 1048574)
    assert cover_frame_range(scene, 2.5, 4, exact=True) == (2, 6)  # a sub-frame start: every key inside


def test_new_audio_replaces_the_dialogue_strip_in_one_undo_step(scene, trained_subject, speech, tmp_path):
    """Take 1 from one file, then take 2 from another: one strip plays, in take 1's channel;
    one undo brings back take 1's strip, action and frame range together."""
    from emotalk3d_addon.bridge import sequencer
    from emotalk3d_addon.operators.generate import LAST_REPORT

    take2 = _take(speech, tmp_path / "take2.wav", 2.0)
    s = setup_scene(scene, trained_subject, speech, start=1, fps=25)
    scene.frame_end = 10
    bpy.ops.ed.undo_push(message="start")
    assert bpy.ops.emotalk3d.generate('EXEC_DEFAULT', True) == {'FINISHED'}
    frames1, frames2 = audio_frames(speech, 25), audio_frames(take2, 25)
    s = bpy.context.scene.emotalk3d
    first = s.strip
    assert _sound_strips(bpy.context.scene) == [(first, str(speech), 1, False, True)]
    _choose_file(bpy.context.scene, take2)
    bpy.ops.ed.undo_push(message="take 2 chosen")
    before = snapshot()
    assert before["frames"][:2] == (1, frames1)

    assert bpy.ops.emotalk3d.generate('EXEC_DEFAULT', True) == {'FINISHED'}
    scene = bpy.context.scene
    s = scene.emotalk3d
    after = snapshot()
    assert _sound_strips(scene) == [(s.strip, str(take2), 1, False, True)]        # one dialogue, in channel 1
    assert first not in [name for name, *_ in _sound_strips(scene)]
    assert len(after["sounds"]) == 1 and after["orphans"] == []                    # the old sound is freed too
    assert s.head.data.shape_keys.animation_data.action == s.last_action
    assert s.last_action.emotalk3d.strip == s.strip
    assert after["frames"][:2] == (1, frames2) and frames2 > frames1
    assert abs(sequencer.find_strip(scene, s.strip).frame_final_duration - frames2) <= 1
    assert f"dialogue strip '{first}' was removed" in LAST_REPORT["message"]

    bpy.ops.ed.undo()                                  # Ctrl+Z once: take 1 as it was
    assert snapshot() == before
    scene = bpy.context.scene
    assert _playing(scene) == [str(speech)]
    key = scene.emotalk3d.head.data.shape_keys
    assert key.animation_data.action.emotalk3d.audio == str(speech)


def test_edited_strips_are_muted_and_the_artists_own_strip_is_never_touched(scene, trained_subject, speech,
                                                                            tmp_path):
    from emotalk3d_addon.bridge import sequencer
    from emotalk3d_addon.operators.generate import LAST_REPORT

    take2, own = _take(speech, tmp_path / "take2.wav", 0.75), _take(speech, tmp_path / "own.wav", 0.5)
    s = setup_scene(scene, trained_subject, speech, start=1, fps=25)
    assert bpy.ops.emotalk3d.generate() == {'FINISHED'}
    take1 = sequencer.find_strip(scene, s.strip)
    take1.volume = 0.5                                           # the artist mixed it: their edit stays
    _choose_file(scene, take2)
    assert bpy.ops.emotalk3d.generate() == {'FINISHED'}
    assert _playing(scene) == [str(take2)]
    assert take1.mute and take1.volume == 0.5 and take1.name in scene.sequence_editor.strips
    assert "was muted (it has your edits)" in LAST_REPORT["message"]

    # the artist's own strip becomes the dialogue: take 2 (ours, untouched) goes
    mine = sequencer.add_sound_strip(scene, str(own), 1, 100, name="Mine")
    assert not sequencer.is_ours(mine)
    s.audio_source, s.strip = 'STRIP', mine.name
    assert bpy.ops.emotalk3d.generate() == {'FINISHED'}
    assert _playing(scene) == [str(own)] and str(take2) not in [f for _, f, *_ in _sound_strips(scene)]

    # back to the first file: its muted strip plays again; the artist's strip is left as it is
    _choose_file(scene, speech)
    assert bpy.ops.emotalk3d.generate() == {'FINISHED'}
    assert s.strip == take1.name and not take1.mute
    assert _playing(scene) == sorted([str(speech), str(own)])
    assert "Mine" in scene.sequence_editor.strips and not mine.mute and not sequencer.is_ours(mine)
    assert LAST_REPORT["level"] == 'WARNING' and "your sound strip 'Mine'" in LAST_REPORT["message"]


def test_a_take_saved_with_relative_paths_is_still_replaced(scene, trained_subject, speech, tmp_path):
    """As the command line saves a shot (paths relative to the .blend): reopened, the strip is
    still the extension's and untouched, so the next take removes it."""
    take2 = _take(speech, tmp_path / "take2.wav", 0.5)
    setup_scene(scene, trained_subject, speech, start=1, fps=25)
    assert bpy.ops.emotalk3d.generate() == {'FINISHED'}
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    bpy.ops.file.make_paths_relative()
    bpy.ops.wm.save_mainfile()
    bpy.ops.wm.open_mainfile(filepath=str(tmp_path / "shot.blend"))
    scene = bpy.context.scene
    assert bpy.data.sounds[0].filepath.startswith("//")
    _choose_file(scene, take2)
    assert bpy.ops.emotalk3d.generate() == {'FINISHED'}
    assert _sound_strips(scene) == [(scene.emotalk3d.strip, str(take2), 1, False, True)]


def test_push_to_nla_keeps_every_takes_strip(scene, trained_subject, speech, tmp_path):
    """NLA takes layer on purpose: each still plays, so each keeps its dialogue."""
    take2 = _take(speech, tmp_path / "take2.wav", 0.5)
    s = setup_scene(scene, trained_subject, speech, start=1, fps=25)
    s.push_to_nla = True
    assert bpy.ops.emotalk3d.generate() == {'FINISHED'}
    _choose_file(scene, take2, start=60)
    assert bpy.ops.emotalk3d.generate() == {'FINISHED'}
    assert _playing(scene) == sorted([str(speech), str(take2)])
    assert len(s.head.data.shape_keys.animation_data.nla_tracks) == 2


def write_video(path, video_s: float, audio_s: float, vcodec: str, acodec: str, rate: int) -> int:
    """A small video file with a sine tone as its sound (PyAV); returns the audio's sample count."""
    import av

    with av.open(str(path), "w") as box:
        video = box.add_stream(vcodec, rate=25)
        video.width = video.height = 32
        video.pix_fmt = "yuv420p"
        sound = box.add_stream(acodec, rate=rate)
        sound.layout = "mono"
        for _ in range(int(video_s * 25)):
            for packet in video.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")):
                box.mux(packet)
        for packet in video.encode():
            box.mux(packet)
        n = int(audio_s * rate)
        tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(n) / rate)).astype(np.float32)
        fmt = sound.codec_context.format.name
        for i in range(0, n, 960):
            block = tone[None, i:i + 960]
            frame = av.AudioFrame.from_ndarray(block if fmt.startswith("flt") else (block * 32767).astype(np.int16),
                                               format=fmt, layout="mono")
            frame.sample_rate, frame.pts = rate, i
            for packet in sound.encode(frame):
                box.mux(packet)
        for packet in sound.encode():
            box.mux(packet)
    return n


@pytest.mark.parametrize("name, vcodec, acodec, rate", [("clip.mp4", "mpeg4", "aac", 16000),
                                                        ("clip.mov", "mpeg4", "aac", 44100),
                                                        ("clip.webm", "libvpx", "libopus", 48000),
                                                        ("clip.mkv", "mpeg4", "aac", 16000)])
def test_a_video_files_sound_becomes_a_strip_as_long_as_its_audio(scene, tmp_path, name, vcodec, acodec, rate):
    """The video runs 1 s past the speech: the strip ends with the speech (Blender reads a
    Matroska/WebM file's length from the container, i.e. the video's)."""
    from emotalk3d_addon.bridge import sequencer

    path = tmp_path / name
    n = write_video(path, 2.5, 1.5, vcodec, acodec, rate)
    scene.render.fps, scene.render.fps_base = 25, 1.0
    frames = math.ceil(Fraction(n, rate) * 25)                      # what the performance covers
    strip = sequencer.add_sound_strip(scene, str(path), 7, frames)
    assert strip.type == 'SOUND' and sequencer.strip_audio_path(strip) == str(path)
    assert strip.frame_final_start == 7 and strip.frame_final_duration == frames == 38
    assert strip.sound.filepath == str(path)


def test_generate_from_a_video_take(scene, trained_subject, speech, tmp_path):
    """A video take (MP4: picture plus AAC speech running 1 s past it) generates a performance
    as long as its speech, with the take's sound as the dialogue strip."""
    import av
    import soundfile as sf

    data, rate = sf.read(str(speech), dtype="float32")
    data = data if data.ndim == 1 else data.mean(axis=1)
    take = tmp_path / "take.mp4"
    with av.open(str(take), "w") as box:
        video = box.add_stream("mpeg4", rate=25)
        video.width = video.height = 32
        video.pix_fmt = "yuv420p"
        sound = box.add_stream("aac", rate=rate)
        sound.layout = "mono"
        for _ in range(int(len(data) / rate * 25) + 25):
            for packet in video.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")):
                box.mux(packet)
        for packet in video.encode():
            box.mux(packet)
        for i in range(0, len(data), 1024):
            frame = av.AudioFrame.from_ndarray(data[None, i:i + 1024].copy(), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, i
            for packet in sound.encode(frame):
                box.mux(packet)
        for packet in sound.encode():
            box.mux(packet)
    s = setup_scene(scene, trained_subject, speech, start=1, fps=25)
    _choose_file(scene, take, start=1)
    assert bpy.ops.emotalk3d.generate() == {'FINISHED'}
    frames = audio_frames(speech, 25)
    # AAC keeps up to one 1024-sample frame of end padding: at most one video frame more
    assert frames <= s.last_action.emotalk3d.num_frames <= frames + 1
    assert _playing(scene) == [str(take)]
    assert scene.frame_end >= frames
