"""The worker protocol's one definition (``backend/protocol/__init__.py``): every op it names has a
handler in the worker, both sides speak its version, and the Blender side names ops only
through it."""
from __future__ import annotations

import ast
from pathlib import Path

from emotalk3d_addon.backend import protocol
from emotalk3d_addon.backend.tools import worker
from emotalk3d_addon.bridge import worker_client

BRIDGE = Path(worker_client.__file__).resolve().parent


def test_every_op_but_shutdown_has_a_worker_handler_and_no_handler_is_unlisted():
    handlers = {name[3:] for name in dir(worker.Worker) if name.startswith("op_")}
    assert handlers == set(protocol.OPS) - {protocol.OP_SHUTDOWN}


def test_both_sides_speak_the_same_version():
    assert worker.PROTOCOL is protocol.PROTOCOL and worker_client.PROTOCOL is protocol.PROTOCOL


def test_the_blender_side_names_ops_only_through_the_protocol_module():
    literal_ops = []
    for path in list(BRIDGE.glob("*.py")) + [BRIDGE.parent / "engine.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "submit" and node.args \
                    and isinstance(node.args[0], ast.Constant):
                literal_ops.append(f"{path.name}: {node.args[0].value!r}")
    assert not literal_ops, literal_ops


def test_the_protocol_module_imports_nothing():
    tree = ast.parse(Path(protocol.__file__).read_text(encoding="utf-8"))
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert all(isinstance(n, ast.ImportFrom) and n.module == "__future__" for n in imports)


def test_a_worker_speaking_another_protocol_is_refused_with_a_message(tmp_path):
    """A backend whose hello names another protocol version is stopped before any call, with
    a WorkerError of kind "protocol" that says which versions met."""
    import sys

    import pytest

    package = tmp_path / "otherpkg"
    (package / "backend" / "tools").mkdir(parents=True)
    for folder in (package, package / "backend", package / "backend" / "tools"):
        (folder / "__init__.py").write_text("")
    (package / "backend" / "tools" / "worker.py").write_text(
        "import json, sys\n"
        "print(json.dumps({'type': 'hello', 'protocol': 99, 'pid': 0}), flush=True)\n"
        "for line in sys.stdin:\n"
        "    pass\n")
    client = worker_client.WorkerClient(sys.executable, package_dir=package, tmp_root=tmp_path / "tmp",
                                        start_timeout=60)
    try:
        with pytest.raises(worker_client.WorkerError) as err:
            client.ensure_started()
        assert err.value.kind == "protocol" and "99" in str(err.value) and str(protocol.PROTOCOL) in str(err.value)
        assert not client.alive
    finally:
        client.shutdown()
