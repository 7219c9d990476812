"""Synthetic multi-view emotional talking-head datasets (``emotalk3d make-dataset``).

A procedural head (numpy) speaks espeak-ng sentences with eight emotions at two
intensities; its tracked face meshes, audio, calibrated cameras and multi-view images
(rendered by Blender in a child process) are written in the training layout
(``backend/datasets/layout.py``). Nothing here imports bpy.

    make_dataset(out, preset="demo", seed=0, log=print) -> Path
    PRESETS: {"tiny": ..., "demo": ...}
"""
from __future__ import annotations


from .generator import PRESETS, GeneratorError, Preset, make_dataset

__all__ = ["PRESETS", "Preset", "GeneratorError", "make_dataset"]
