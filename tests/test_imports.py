"""The package's import structure, read from the source (AST), imports at any depth:
the backend never imports Blender, and no two modules import each other, directly or round
a longer cycle."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "emotalk3d_addon"
BLENDER_MODULES = {"bpy", "gpu", "bmesh", "mathutils", "addon_utils", "bl_math", "bl_ui", "bpy_extras", "aud"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path) -> list[str]:
    """Absolute names of everything ``path`` imports, anywhere in it (function bodies too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found += [module] + [f"{module}.{a.name}" for a in node.names]
    return found


def test_the_backend_never_imports_blender_at_any_depth():
    offenders = []
    for name, path in _modules().items():
        if name.startswith("emotalk3d_addon.backend"):
            offenders += [f"{path.relative_to(PACKAGE)}: {m}" for m in _imports(name, path)
                          if m.split(".")[0] in BLENDER_MODULES]
    assert not offenders, offenders


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in _imports(name, path) if m in modules and m != name}
    return graph


def test_there_is_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}          # 1: on the current path, 2: done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    # a package's __init__ re-exporting its own modules is not a cycle of concepts
    real = [c for c in cycles if not any(a.startswith(b + ".") or b.startswith(a + ".") for a, b in zip(c, c[1:]))]
    assert not real, real


def test_the_scan_sees_imports_inside_functions(tmp_path):
    """The scan itself: a bpy import in a function body is found."""
    source = tmp_path / "m.py"
    source.write_text("def f():\n    import bpy\n    from gpu import shader\n")
    assert {"bpy", "gpu", "gpu.shader"} <= set(_imports("emotalk3d_addon.backend.m", source))
