"""The extension registers and unregisters in real Blender (bpy from PyPI), with no backend."""
import subprocess
import sys

import pytest

pytest.importorskip("bpy")

REGISTER_SCRIPT = r"""
import sys
import bpy
import emotalk3d_addon
for _ in range(2):                     # register / unregister twice: nothing left behind
    emotalk3d_addon.register()
    assert hasattr(bpy.types.Scene, "emotalk3d") and "generate" in dir(bpy.ops.emotalk3d)
    assert hasattr(bpy.types, "EMOTALK3D_PT_view3d") and hasattr(bpy.types, "EMOTALK3D_PT_sequencer")
    assert bpy.types.EMOTALK3D_PT_view3d.bl_space_type == "VIEW_3D"
    assert bpy.types.EMOTALK3D_PT_sequencer.bl_space_type == "SEQUENCE_EDITOR"
    emotalk3d_addon.unregister()
    assert not hasattr(bpy.types.Scene, "emotalk3d") and "generate" not in dir(bpy.ops.emotalk3d)
assert "torch" not in sys.modules, "torch was imported in Blender"
print("ok")
"""


def test_register_and_unregister_in_blender(tmp_path):
    """No worker, no interpreter configured: registration must not depend on the backend."""
    env = {k: v for k, v in __import__("os").environ.items() if k != "EMOTALK3D_PYTHON"}
    env["BLENDER_USER_RESOURCES"] = str(tmp_path)
    proc = subprocess.run([sys.executable, "-c", REGISTER_SCRIPT], capture_output=True, text=True, timeout=120,
                          env=env)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stdout + proc.stderr


def test_backend_never_imports_bpy():
    code = ("import sys, emotalk3d_addon.backend.tools.cli, emotalk3d_addon.backend.performance.runtime, "
            "emotalk3d_addon.backend.tools.worker, emotalk3d_addon.backend.train.s2g; "
            "assert 'bpy' not in sys.modules, 'bpy imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
