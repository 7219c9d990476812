"""Where gsplat's kernels are built, per system: the folder the build hint names is the one
PyTorch's cpp_extension uses (``_get_build_directory``), on Windows, macOS and Linux alike."""
from __future__ import annotations

import sys

import pytest

from emotalk3d_addon.backend.raster import gsplat_backend
from emotalk3d_addon.backend.raster.gsplat_backend import extension_build_dir


@pytest.mark.parametrize("platform, env, home, want", [
    ("win32", {"LOCALAPPDATA": "C:\\Users\\ana\\AppData\\Local"}, "C:\\Users\\ana",
     "C:\\Users\\ana\\AppData\\Local\\torch_extensions\\torch_extensions\\Cache\\py311_cu128\\gsplat_cuda"),
    ("win32", {}, "C:\\Users\\ana",
     "C:\\Users\\ana\\AppData\\Local\\torch_extensions\\torch_extensions\\Cache\\py311_cu128\\gsplat_cuda"),
    ("darwin", {}, "/Users/ana", "/Users/ana/Library/Caches/torch_extensions/py311_cu128/gsplat_cuda"),
    ("linux", {}, "/home/ana", "/home/ana/.cache/torch_extensions/py311_cu128/gsplat_cuda"),
    ("linux", {"XDG_CACHE_HOME": "/scratch/cache"}, "/home/ana", "/scratch/cache/torch_extensions/py311_cu128/gsplat_cuda"),
    ("win32", {"TORCH_EXTENSIONS_DIR": "D:\\ext", "LOCALAPPDATA": "C:\\x"}, "C:\\Users\\ana", "D:\\ext\\gsplat_cuda"),
    ("linux", {"TORCH_EXTENSIONS_DIR": "/opt/ext"}, "/home/ana", "/opt/ext/gsplat_cuda"),
])
def test_the_build_folder_per_system(platform, env, home, want):
    assert extension_build_dir(platform, env, home, "py311_cu128") == want


def test_the_rule_is_pytorchs_own_on_this_system(tmp_path, monkeypatch):
    """The same folder as torch.utils.cpp_extension computes here, with and without TORCH_EXTENSIONS_DIR."""
    import os

    import torch
    from torch.utils import cpp_extension

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    accel = f"cu{torch.version.cuda.replace('.', '')}" if torch.version.cuda else "cpu"
    folder = f"py{sys.version_info.major}{sys.version_info.minor}{getattr(sys, 'abiflags', '')}_{accel}"
    theirs = cpp_extension._get_build_directory("gsplat_cuda", verbose=False)
    assert extension_build_dir(sys.platform, os.environ, str(tmp_path / "home"), folder) == theirs
    assert theirs in gsplat_backend.build_hint()
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    assert extension_build_dir(sys.platform, os.environ, "/nowhere", folder) == \
        cpp_extension._get_build_directory("gsplat_cuda", verbose=False)
    assert "~/.cache" not in gsplat_backend.build_hint()
