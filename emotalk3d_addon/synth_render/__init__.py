"""Blender side of the synthetic dataset generator: renders the multi-view images.

Run as ``python -m emotalk3d_addon.synth_render JOB.json`` with an interpreter that has
bpy (the PyPI ``bpy`` module), or inside Blender:
``blender -b --factory-startup --python-expr "...main(['JOB.json'])"``.
The backend (``emotalk3d_addon.backend``) never imports this package or bpy; it writes
a job file and starts this renderer as a child process.

Job JSON (paths relative to the job file's folder unless absolute)::

    {"format": "emotalk3d-synth-render", "version": 1,
     "engine": "WORKBENCH" | "CYCLES", "samples": 16,
     "triangles": "tris.npy",          (T, 3) int
     "uvs": "uvs.npy",                 (V, 2) float32, atlas UVs (v up)
     "texture": "base.npy",            (H, W, 4) uint8 sRGB, row 0 at the top
     "overlays": {"name": "x.npy"},    (H, W, 3) float16 sRGB deltas, added times a weight
     "cameras": [{"name", "width", "height", "K": 3x3, "world_to_camera": 4x4}],   OpenCV axes
     "items": [{"vertices": "v.npy",   (N, V, 3) float32 metres, one row per frame below
                "frames": [int, ...],  frame numbers (file names), N of them
                "overlay": "name" | null, "overlay_weight": [float per frame],
                "out_dir": "path"}]}   -> out_dir/<camera name>/<frame:06d>.png

Images: RGBA 8-bit, straight alpha, transparent background.
"""
from __future__ import annotations

JOB_FORMAT = "emotalk3d-synth-render"
