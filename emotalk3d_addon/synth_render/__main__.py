"""Entry point: ``python -m emotalk3d_addon.synth_render JOB.json [--part I/N]``."""
from __future__ import annotations

import sys

from .render import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
