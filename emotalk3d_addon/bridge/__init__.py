"""Blender-side helpers (bpy and numpy only; never torch, never the backend's models).

compat      version shims for Blender 4.2 - 5.0, chosen by feature detection
timing      scene frame rate as an exact fraction, frame alignment with a sound strip
sequencer   sound strips (``strips`` on 4.4+, ``sequences`` on 4.2)
mesh        the subject's head: mesh, UVs, the motion basis as shape keys
action      a new Action with one F-curve per basis shape key, written in bulk
keys        the keyframed emotion/intensity properties -> the backend's key list
subjects    subject library folders and manifests (read as JSON, no torch)
settings    the add-on preferences as plain values, read once; the backend interpreter
errors      UserError: what the artist must fix, said in their terms
worker_client  the worker process and its JSON-lines protocol
jobs        one generation: request -> worker -> arrays (runs off the UI thread)
apply       write a finished generation into the scene in one step (rollback on failure)
install     the "Install backend" virtual environment
headless    the ``emotalk3d generate`` command (Blender's --command and python -m)
"""
