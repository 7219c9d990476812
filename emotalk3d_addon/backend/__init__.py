"""EmoTalk3D backend: pure PyTorch + numpy, never imports bpy.

Runs in the extension's worker process or on the command line (``emotalk3d``).
Data flows one way: audio -> speech features -> emotion track -> vertex track.
"""
