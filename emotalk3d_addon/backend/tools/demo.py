"""The embedded demo: build it (``make demo-subject``) and run it (``make demo``).

``make demo`` (``python -m emotalk3d_addon.backend.tools.demo run``): the bundled speech clip ->
predict (emotion keyed neutral -> happy -> surprised) -> render the frames from three
views -> ``out/`` (PNG passes per view, the track, and an MP4 with the audio when ffmpeg
is installed).

``make demo-subject`` (``... demo build``): the synthetic dataset's demo preset -> the
full training -> ``emotalk3d_addon/subjects/demo`` plus a held-out clip (a voice the
training never heard), with a fixed seed.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

from ..subject import BUNDLED_SUBJECTS_DIR

DEMO_DIR = BUNDLED_SUBJECTS_DIR / "demo"
DEMO_CLIP = "demo_clip.wav"
VIEWS = ("front", "left", "right")
DEMO_FPS = Fraction(25)


def run(out: Path) -> int:
    """The main job on the demo subject; returns an exit code."""
    clip = DEMO_DIR / DEMO_CLIP
    if not (DEMO_DIR / "subject.json").is_file() or not clip.is_file():
        print(f"error: the embedded demo subject is missing ({DEMO_DIR}); rebuild it with `make demo-subject`",
              file=sys.stderr)
        return 1
    from ..performance.service import Performance
    from ..protocol.messages import EmotionKey, EmotionSpec, PerformRequest
    from ..render.files import write_layers
    from ..render.frame import FrameRenderer
    from ..render.layers import frame_layers
    from ..render.views import orbit_camera
    from ..timebase import frame_count

    started = time.perf_counter()
    performance = Performance()
    loaded = performance.subject(str(DEMO_DIR))
    wave = performance.waveform(clip)
    frames = frame_count(wave.samples.size, wave.sample_rate, DEMO_FPS)
    keys = [EmotionKey(0, "neutral", 1.0), EmotionKey(frames // 3, "happy", 1.0),
            EmotionKey(2 * frames // 3, "surprised", 1.0), EmotionKey(frames - 1, "surprised", 1.0)]
    result = performance.perform(PerformRequest(str(DEMO_DIR), str(clip), (DEMO_FPS.numerator, DEMO_FPS.denominator),
                                                EmotionSpec.keyed(keys), device="cpu"))
    track = result.track
    out.mkdir(parents=True, exist_ok=True)
    arkit = result.arkit()
    if arkit is not None:
        from ..arkit.live_link import write_csv

        track.arkit = arkit.weights
        write_csv(arkit.weights, track.fps, out / "demo_arkit.csv")
    track.save_npz(out / "demo_track.npz")
    (out / "demo_keys.json").write_text(json.dumps([k.to_dict() for k in keys], indent=1))
    renderer = FrameRenderer(loaded.subject)
    shown = result.shape_key_vertices()           # the frames as Blender's shape keys show them
    for view in VIEWS:
        camera = orbit_camera(renderer.view_defaults, view)
        folder = out / view
        folder.mkdir(exist_ok=True)
        for f in range(track.num_frames):
            write_layers(frame_layers(renderer.render(shown[f], track.emotion[f], float(track.intensity[f]), camera)),
                         folder, f)
    print(f"rendered {track.num_frames} frames x {len(VIEWS)} views in {time.perf_counter() - started:.0f} s")
    video = _video(out, clip)
    print(f"results: {out.resolve()}/{{{','.join(VIEWS)}}}/rgba_NNNN.png, depth_NNNN.npy, matte_NNNN.png")
    if video:
        print(f"video with audio: {video.resolve()}")
    return 0


def _video(out: Path, clip: Path) -> Path | None:
    """front | left | right side by side with the clip's audio, if ffmpeg is installed."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        print("ffmpeg not found: no MP4 written (frames are complete)")
        return None
    video = out / "demo.mp4"
    inputs = []
    for view in VIEWS:
        inputs += ["-framerate", str(DEMO_FPS), "-i", str(out / view / "rgba_%04d.png")]
    cmd = [ffmpeg, "-y", "-loglevel", "error", *inputs, "-i", str(clip), "-filter_complex",
           "[0][1][2]hstack=inputs=3,format=yuv420p[v]", "-map", "[v]", "-map", "3:a", "-c:v", "libx264",
           "-c:a", "aac", "-shortest", str(video)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        print(f"ffmpeg failed, no MP4 written: {result.stderr.strip()[:300]}")
        return None
    return video


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emotalk3d_addon.backend.tools.demo")
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("run", help="the main job on the embedded demo subject")
    p.add_argument("--out", default="out")
    p = sub.add_parser("build", help="rebuild the demo subject from scratch (fixed seed)")
    p.add_argument("--work", default="build/demo", help="folder for the dataset and checkpoints")
    p = sub.add_parser("build-speech", help="retrain only the demo subject's speech sections (appearance kept)")
    p.add_argument("--work", default="build/demo", help="folder for the dataset, corpus and checkpoints")
    sub.add_parser("arkit", help="give the embedded demo subject the ARKit shapes of its rig (no retraining)")
    args = parser.parse_args(argv)
    if args.command == "arkit":
        from .demo_build import add_arkit

        add_arkit(DEMO_DIR)
        return 0
    if args.command == "build-speech":
        from .demo_build import build_speech

        build_speech(Path(args.work), DEMO_DIR)
        return 0
    if args.command == "build":
        from .demo_build import build

        build(Path(args.work), DEMO_DIR)
        return 0
    return run(Path(getattr(args, "out", "out")))


if __name__ == "__main__":
    sys.exit(main())
