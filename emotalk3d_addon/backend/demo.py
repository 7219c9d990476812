"""``make demo``: the main job on the embedded demo subject, headless.

bundled speech clip -> predict (vertex track) -> files under ``--out``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .subject import BUNDLED_SUBJECTS_DIR

DEMO_DIR = BUNDLED_SUBJECTS_DIR / "demo"
DEMO_CLIP_NAMES = ("demo_clip.wav", "demo_clip.flac")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="emotalk3d-demo")
    parser.add_argument("--out", default="out", help="folder for the results")
    args = parser.parse_args(argv)
    clip = next((DEMO_DIR / n for n in DEMO_CLIP_NAMES if (DEMO_DIR / n).is_file()), None)
    if not (DEMO_DIR / "subject.json").is_file() or clip is None:
        print(f"error: the embedded demo subject is not in this build yet ({DEMO_DIR} is missing).\n"
              "Any trained subject works with: emotalk3d predict --subject PATH --audio FILE --out TRACK.npz",
              file=sys.stderr)
        return 1
    from .cli import main as cli_main

    out = Path(args.out)
    track = out / "demo_track.npz"
    code = cli_main(["predict", "--subject", str(DEMO_DIR), "--audio", str(clip), "--out", str(track)])
    if code == 0:
        print(f"results: {track.resolve()}")
    return code


if __name__ == "__main__":
    sys.exit(main())
