"""The extension registers and unregisters in real Blender (bpy from PyPI)."""
import subprocess
import sys

import pytest

bpy = pytest.importorskip("bpy")


def test_register_and_unregister_in_blender():
    import emotalk3d_addon

    emotalk3d_addon.register()
    emotalk3d_addon.unregister()
    assert bpy.app.version >= (4, 2, 0)


def test_backend_never_imports_bpy():
    code = ("import sys, emotalk3d_addon.backend.cli, emotalk3d_addon.backend.pipeline, "
            "emotalk3d_addon.backend.train.s2g; assert 'bpy' not in sys.modules, 'bpy imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
