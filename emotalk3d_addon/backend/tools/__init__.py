"""The commands: the ``emotalk3d`` CLI (``cli``), the Blender worker (``worker``), the demo
(``demo``; ``demo_build`` stays in the source tree), evaluation and its metrics."""
