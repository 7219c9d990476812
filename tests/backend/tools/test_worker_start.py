"""The worker's first start: it may take long (PyTorch's first import on a cold machine) as
long as the worker keeps reporting; a dead worker still fails at once, a silent one after the
quiet limit, and a cancel ends the start. Fake workers (small Python scripts run as the
worker module) act it out with the deadlines scaled down to fractions of a second."""
from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from emotalk3d_addon.backend.protocol import PROTOCOL
from emotalk3d_addon.bridge import worker_client
from emotalk3d_addon.bridge.worker_client import WorkerClient, WorkerError

QUIET = 0.6                 # the scaled-down quiet limit (the product waits 120 s)

FAKE = """
import json, os, sys, time
def send(m):
    sys.stdout.write(json.dumps(m) + "\\n"); sys.stdout.flush()
send({{"type": "hello", "protocol": {protocol}, "pid": os.getpid()}})
for line in sys.stdin:
    req = json.loads(line)
    if req["op"] == "shutdown":
        send({{"id": req["id"], "type": "result", "ok": True}}); break
    send({{"id": req["id"], "type": "progress", "fraction": 0.0, "message": "Started"}})
    {ping}
    send({{"id": req["id"], "type": "result", "protocol": {protocol}, "pid": os.getpid()}})
"""
HEARTBEATS = """for k in range({beats}):
        time.sleep(0.05)
        send({{"id": req["id"], "type": "progress", "fraction": 0.2, "message": "importing PyTorch, %d s" % k}})"""


def _fake_worker(tmp_path: Path, ping: str) -> Path:
    """A package whose backend/tools/worker.py is the fake worker, answering ping after ``ping``'s code."""
    package = tmp_path / "fakepkg"
    tools = package / "backend" / "tools"
    tools.mkdir(parents=True)
    for folder in (package, package / "backend", tools):
        (folder / "__init__.py").write_text("")
    (tools / "worker.py").write_text(FAKE.format(protocol=PROTOCOL, ping=ping))
    return package


def _client(package: Path, tmp_path: Path, cap: float = 30.0) -> WorkerClient:
    return WorkerClient(sys.executable, package_dir=package, tmp_root=tmp_path / "tmp", start_timeout=QUIET,
                        start_cap=cap)


def test_a_start_longer_than_the_quiet_limit_succeeds_while_the_worker_reports(tmp_path):
    package = _fake_worker(tmp_path, HEARTBEATS.format(beats=40))       # 2 s of imports: over 3 quiet limits
    client = _client(package, tmp_path)
    heard: list[tuple[float, str]] = []
    try:
        info = client.ensure_started(on_progress=lambda f, m: heard.append((f, m)))
        assert info["protocol"] == PROTOCOL and info["pid"] == client.pid and client.alive
        messages = [m for _, m in heard]
        assert messages[0] == worker_client.STARTING_MESSAGE               # before the worker says anything
        assert messages.count(worker_client.STARTING_MESSAGE) >= 2        # "Started" reads as the start message
        assert "importing PyTorch, 39 s" in messages and len(messages) >= 30
        assert client.ensure_started() is info                           # started once
    finally:
        client.shutdown()


def test_a_silent_worker_is_stopped_after_the_quiet_limit(tmp_path):
    package = _fake_worker(tmp_path, "time.sleep(600)")
    client = _client(package, tmp_path)
    try:
        with pytest.raises(WorkerError) as err:
            client.ensure_started()
        assert err.value.kind == "timeout" and "did not finish starting" in str(err.value)
        assert "said nothing" in str(err.value) and not client.alive
    finally:
        client.shutdown()


def test_a_start_that_reports_forever_ends_at_the_cap(tmp_path):
    package = _fake_worker(tmp_path, HEARTBEATS.format(beats=100000))
    client = _client(package, tmp_path, cap=1.0)
    try:
        with pytest.raises(WorkerError) as err:
            client.ensure_started()
        assert err.value.kind == "timeout" and "within 1 s" in str(err.value) and "importing PyTorch" in str(err.value)
        assert not client.alive
    finally:
        client.shutdown()


def test_a_dead_worker_fails_at_once_with_its_last_words(tmp_path):
    package = _fake_worker(tmp_path, "sys.stderr.write('ImportError: DLL load failed while importing _C\\\\n'); "
                                     "sys.stderr.flush(); os._exit(3)")
    client = WorkerClient(sys.executable, package_dir=package, tmp_root=tmp_path / "tmp", start_timeout=300,
                          start_cap=600)
    done = threading.Event()
    result: list[BaseException] = []

    def start():
        try:
            client.ensure_started()
        except WorkerError as exc:
            result.append(exc)
        done.set()

    threading.Thread(target=start, daemon=True).start()
    try:
        assert done.wait(60)                                  # long before the 300 s quiet limit
        err = result[0]
        assert err.kind == "crashed" and "exit code 3" in str(err) and "DLL load failed" in str(err)
    finally:
        client.shutdown()


def test_cancel_during_the_start_ends_it(tmp_path):
    package = _fake_worker(tmp_path, HEARTBEATS.format(beats=100000))
    client = _client(package, tmp_path, cap=600)
    reporting = threading.Event()
    outcome: list[BaseException] = []

    def start():
        try:
            client.ensure_started(on_progress=lambda f, m: reporting.set() if "importing" in m else None)
        except WorkerError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=start, daemon=True)
    thread.start()
    try:
        assert reporting.wait(60)
        pid = client.pid
        client.kill()                                         # what a job's cancel does
        thread.join(60)
        assert not thread.is_alive() and outcome[0].kind == "cancelled" and not client.alive
        assert client.pid == pid and client._proc.poll() is not None
    finally:
        client.shutdown()


def test_the_worker_repeats_a_slow_steps_line_until_the_step_ends():
    """The real worker's heartbeat: the step's line at once, then again with the time spent."""
    from emotalk3d_addon.backend.tools import worker

    beats: list[tuple[float, str]] = []
    three = threading.Event()

    def progress(fraction: float, message: str) -> None:
        beats.append((fraction, message))
        if len(beats) >= 3:
            three.set()

    with worker.Heartbeat(progress, interval=0.01) as beat:
        beat.say(0.25, "Starting the backend: importing PyTorch")
        assert three.wait(60)
    n = len(beats)
    threading.Event().wait(0.05)
    assert len(beats) == n                                    # the beat stops with the step
    assert beats[0] == (0.25, "Starting the backend: importing PyTorch")
    assert all(f == 0.25 and m.startswith("Starting the backend: importing PyTorch, ") and m.endswith(" s")
               for f, m in beats[1:])
