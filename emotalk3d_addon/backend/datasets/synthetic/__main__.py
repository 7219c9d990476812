"""``python -m emotalk3d_addon.backend.datasets.synthetic --out DIR [--preset demo|tiny]``
(the same as ``emotalk3d make-dataset``)."""
from __future__ import annotations

import argparse
import sys

from ...errors import InputError
from . import PRESETS, make_dataset


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m emotalk3d_addon.backend.datasets.synthetic",
                                 description="make a synthetic multi-view emotional talking-head dataset")
    ap.add_argument("--out", required=True, help="folder to create (must be new or empty)")
    ap.add_argument("--preset", default="demo", choices=sorted(PRESETS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--engine", choices=("WORKBENCH", "CYCLES"), help="override the preset's renderer")
    ap.add_argument("--no-render", action="store_true", help="geometry, audio and cameras only")
    ap.add_argument("--overwrite", action="store_true", help="replace a dataset made by this generator")
    args = ap.parse_args(argv)
    try:
        make_dataset(args.out, args.preset, args.seed, print, render=not args.no_render,
                     engine=args.engine, overwrite=args.overwrite)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
