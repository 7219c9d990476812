"""Blender's side of the worker protocol (see ``backend/tools/worker.py``); no bpy, no torch.

A ``WorkerClient`` starts ``python -m <package>.backend.tools.worker`` with the interpreter
chosen in the preferences, keeps it alive between calls (models and speech features stay
loaded there), and talks JSON lines. A background thread reads the worker's stdout into
per-call queues; callers poll (the modal operator's timer) or wait (headless). The
worker's stderr goes to a log file whose last lines explain a crash. ``kill()`` (Esc)
ends only the worker; the next call starts a fresh one.

The first start imports PyTorch in the worker, which a cold machine (a virus scanner reading
every library) can take minutes over. The start waits as long as the worker keeps saying
how far it got (its progress and heartbeat lines), up to ``start_cap`` seconds, and fails
only after ``start_timeout`` seconds of silence, at the cap, or at once when the worker
dies; a cancel (``kill``) ends it at any point.
"""
from __future__ import annotations

import itertools
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from ..backend.protocol import OP_PING, OP_SHUTDOWN, PROTOCOL
ADDON_DIR = Path(__file__).resolve().parent.parent
ENV_PYTHON = "EMOTALK3D_PYTHON"
BACKEND_ENV_DIRNAME = "backend-env"

Progress = Callable[[float, str], None]

START_QUIET_S = 120.0        # the longest the worker may stay silent while it starts (seconds)
START_CAP_S = 600.0          # the longest a start may take while the worker keeps reporting (seconds)
STARTING_MESSAGE = "Starting the backend: importing PyTorch (first start can take a few minutes)"


class WorkerError(Exception):
    """A call failed. ``kind``: input, missing, internal, crashed, cancelled, protocol, timeout."""

    def __init__(self, message: str, kind: str = "internal", details: str = ""):
        super().__init__(message)
        self.kind = kind
        self.details = details


# --------------------------------------------------------------------------- interpreter


def venv_python(env_dir: Path) -> Path:
    """The interpreter of a virtual environment folder."""
    if sys.platform == "win32":
        return env_dir / "Scripts" / "python.exe"
    return env_dir / "bin" / "python"


def env_python(env_dir: Path, platform: str | None = None) -> Path:
    """The interpreter of an environment folder: a venv's (``Scripts\\python.exe``, ``bin/python``)
    or a conda environment's, whose Windows ``python.exe`` sits at its root; the venv path when
    none exists (for the message that says so)."""
    env_dir = Path(env_dir)
    if (platform or sys.platform) == "win32":
        candidates = [env_dir / "Scripts" / "python.exe", env_dir / "python.exe"]
    else:
        candidates = [env_dir / "bin" / "python", env_dir / "bin" / "python3"]
    return next((c for c in candidates if c.is_file()), candidates[0])


def resolve_python(configured: str = "", user_env_dir: Path | None = None, module_mode: bool = False) -> str:
    """The backend interpreter: the preference, else $EMOTALK3D_PYTHON, else the
    environment built by "Install backend", else (bpy from PyPI only) this interpreter.
    WorkerError(kind="missing") with what to do when there is none."""
    configured = (configured or "").strip()
    if configured:
        path = Path(configured).expanduser()
        if path.is_dir():
            path = env_python(path)
        if not path.is_file():
            raise WorkerError(f"The backend interpreter set in Preferences does not exist: {configured}", "missing")
        return str(path)
    env = os.environ.get(ENV_PYTHON, "").strip()
    if env:
        if not Path(env).is_file():
            raise WorkerError(f"${ENV_PYTHON} names no file: {env}", "missing")
        return env
    if user_env_dir is not None and venv_python(user_env_dir).is_file():
        return str(venv_python(user_env_dir))
    if module_mode:
        return sys.executable
    raise WorkerError("EmoTalk3D needs a Python with PyTorch for its backend: press 'Install backend' in "
                      "Preferences > Add-ons > EmoTalk3D, or set the interpreter of an environment "
                      "that has the backend's packages", "missing")


def worker_command(python: str, package_dir: Path = ADDON_DIR) -> list[str]:
    """Command line of the worker: the extension's package run as a top-level package."""
    return [str(python), "-u", "-m", f"{package_dir.name}.backend.tools.worker"]


def worker_environment(package_dir: Path = ADDON_DIR, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    for name in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONEXECUTABLE"):
        env.pop(name, None)
    env["PYTHONPATH"] = str(package_dir.parent)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("PYTHONIOENCODING", "utf-8")
    return env


# --------------------------------------------------------------------------- calls


class Call:
    """One request in flight. Poll from the UI thread or wait from any thread."""

    def __init__(self, call_id: int, op: str, out_dir: Path | None):
        self.id = call_id
        self.op = op
        self.out_dir = out_dir
        self.fraction = 0.0
        self.message = ""
        self.result: dict | None = None
        self.error: WorkerError | None = None
        self._events: "queue.Queue[dict]" = queue.Queue()
        self._done = threading.Event()
        self.heard_at = time.monotonic()          # when the worker last said something about this call

    # reader thread side
    def _push(self, message: dict) -> None:
        self.heard_at = time.monotonic()
        self._events.put(message)
        kind = message.get("type")
        if kind == "result":
            self.result = {k: v for k, v in message.items() if k not in ("id", "type")}
            self._done.set()
        elif kind == "error":
            self.error = WorkerError(str(message.get("message", "worker error")), str(message.get("kind", "internal")),
                                     str(message.get("traceback", "")))
            self._done.set()

    def _fail(self, error: WorkerError) -> None:
        if not self._done.is_set():
            self.error = error
            self._events.put({"type": "error", "kind": error.kind, "message": str(error)})
            self._done.set()

    # caller side
    @property
    def done(self) -> bool:
        return self._done.is_set()

    def ended_within(self, seconds: float) -> bool:
        """Block up to ``seconds`` for the call to end (returns at once when it does)."""
        return self._done.wait(seconds)

    def poll(self, on_progress: Progress | None = None) -> bool:
        """Take the progress messages received so far; True once the call has ended."""
        while True:
            try:
                message = self._events.get_nowait()
            except queue.Empty:
                break
            if message.get("type") == "progress":
                self.fraction = float(message.get("fraction", 0.0))
                self.message = str(message.get("message", ""))
                if on_progress:
                    on_progress(self.fraction, self.message)
        return self.done

    def wait(self, timeout: float | None = None, on_progress: Progress | None = None,
             quiet: float | None = None) -> dict:
        """The result; WorkerError for an error reply, a crash, a cancel or a timeout: more than
        ``timeout`` seconds in all, or more than ``quiet`` seconds without a word from the worker."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._done.wait(0.05):
            self.poll(on_progress)
            now = time.monotonic()
            if deadline is not None and now > deadline:
                raise WorkerError(f"the worker did not answer {self.op!r} within {timeout:g} s", "timeout")
            if quiet is not None and now > self.heard_at + quiet:
                raise WorkerError(f"the worker said nothing about {self.op!r} for {quiet:g} s", "timeout")
        self.poll(on_progress)
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    def cleanup(self) -> None:
        """Delete the call's array folder (after its arrays were read)."""
        if self.out_dir is not None:
            shutil.rmtree(self.out_dir, ignore_errors=True)


def _memory_tmp() -> str | None:
    """A RAM-backed folder for the arrays that cross between Blender and the worker (render passes
    are tens of MB a frame), when the system has one (Linux /dev/shm); None: the default temp."""
    shm = Path("/dev/shm")
    if sys.platform.startswith("linux") and shm.is_dir() and os.access(shm, os.W_OK):
        return str(shm)
    return None


# --------------------------------------------------------------------------- passes buffers


class PassesPool:
    """Shared passes buffers (``backend/io/passes_buffer.py``) in the client's folder, by
    frame size. A render takes one for its call and gives it back once its passes are in
    Blender, so a final render and the viewport never write the same one; each buffer is
    created and mapped once and kept for the next frame of its size (at most ``keep``
    free ones stay)."""

    def __init__(self, folder: Path, keep: int = 3):
        self.folder = Path(folder)
        self.keep = keep
        self._free: list[tuple[int, int, Path, Any]] = []       # (width, height, path, mapping), newest last
        self._lock = threading.Lock()
        self.created = 0

    def take(self, width: int, height: int) -> tuple[Path, Any]:
        """(path, flat float32 mapping) of a free buffer for ``width`` x ``height``."""
        from ..backend.io import passes_buffer

        with self._lock:
            for i in range(len(self._free) - 1, -1, -1):
                w, h, path, mapping = self._free[i]
                if (w, h) == (width, height):
                    del self._free[i]
                    return path, mapping
            self.folder.mkdir(parents=True, exist_ok=True)
            self.created += 1
        return passes_buffer.create(self.folder, width, height)

    def give_back(self, width: int, height: int, path: Path, mapping: Any) -> None:
        with self._lock:
            self._free.append((width, height, path, mapping))
            dropped = self._free[:-self.keep] if len(self._free) > self.keep else []
            self._free = self._free[len(dropped):]
        for _, _, old_path, _ in dropped:
            _remove(old_path)

    def clear(self) -> None:
        with self._lock:
            dropped, self._free = self._free, []
        for _, _, path, _ in dropped:
            _remove(path)


def _remove(path: Path) -> None:
    """Delete a buffer file; where it is still mapped and the system refuses (Windows), it goes
    with the client's folder at shutdown."""
    try:
        Path(path).unlink(missing_ok=True)
    except OSError:
        pass


# --------------------------------------------------------------------------- client


class WorkerClient:
    """A long-lived worker process; restarted lazily after a kill or a crash."""

    def __init__(self, python: str, package_dir: Path = ADDON_DIR, env: dict[str, str] | None = None,
                 tmp_root: Path | None = None, start_timeout: float = START_QUIET_S,
                 start_cap: float = START_CAP_S):
        """``start_timeout``: the longest the worker may stay silent while it starts (s);
        ``start_cap``: the longest a start may take while it keeps reporting (s)."""
        self.python = str(python)
        self.package_dir = Path(package_dir)
        self.env = env if env is not None else worker_environment(self.package_dir)
        self.tmp_root = Path(tmp_root) if tmp_root else Path(tempfile.mkdtemp(prefix="emotalk3d-worker-",
                                                                             dir=_memory_tmp()))
        self.tmp_root.mkdir(parents=True, exist_ok=True)
        self.passes = PassesPool(self.tmp_root / "passes")
        self.start_timeout = start_timeout
        self.start_cap = max(start_cap, start_timeout)
        self.info: dict[str, Any] = {}
        self.hello: dict[str, Any] = {}       # the running worker's hello (its protocol, pid, versions)
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._calls: dict[int, Call] = {}
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._hello = threading.Event()
        self._killed = False
        self._log_path: Path | None = None
        self._starts = 0

    # -- process --------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def starts(self) -> int:
        """How many worker processes this client has started."""
        return self._starts

    def ensure_started(self, on_progress: Progress | None = None) -> dict:
        """Start the worker if it is not running and check it can run the backend (ping).

        ``on_progress(fraction, message)`` hears how the start goes (the worker's imports);
        WorkerError when the worker dies ("crashed", with its last output), is cancelled by
        ``kill`` ("cancelled"), stays silent for ``start_timeout`` s or takes longer than
        ``start_cap`` s ("timeout"; the worker is stopped then)."""
        with self._lock:
            if self.alive and self.info:
                return self.info
            proc = self._proc if self.alive else self._spawn()
        if on_progress is not None:
            on_progress(0.0, STARTING_MESSAGE)
        self._wait_hello(proc)
        spoken = self.hello.get("protocol")
        if spoken != PROTOCOL:
            self.kill()
            raise WorkerError(f"the backend at {self.python} speaks worker protocol {spoken!r}, this add-on "
                              f"speaks {PROTOCOL}: use the backend that came with this version of the add-on",
                              "protocol")

        def starting(fraction: float, message: str) -> None:
            if on_progress is not None:   # an older worker says only "Started" while it imports
                on_progress(fraction, STARTING_MESSAGE if message in ("", "Started") else message)

        call = self.submit(OP_PING, {})
        try:
            info = call.wait(timeout=self.start_cap, on_progress=starting, quiet=self.start_timeout)
        except WorkerError as exc:
            if exc.kind != "timeout":
                raise
            self.kill()
            raise WorkerError(f"The EmoTalk3D backend did not finish starting ({exc}); its last words: "
                              f"{call.message or 'none'}. Try again (a second start is faster, once the "
                              "system has read PyTorch's files) or check the backend interpreter in Preferences",
                              "timeout") from None
        self.info = info
        return info

    def _spawn(self) -> subprocess.Popen:
        self._killed = False
        self._hello.clear()
        self.hello = {}
        self.info = {}
        self._starts += 1
        self._log_path = self.tmp_root / f"worker-{self._starts}.log"
        log = open(self._log_path, "wb")
        kwargs: dict[str, Any] = {}
        if sys.platform == "win32":
            kwargs["creationflags"] = getattr(subprocess, "CREATE_NO_WINDOW", 0)
        try:
            proc = subprocess.Popen(worker_command(self.python, self.package_dir), stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=log, cwd=str(self.tmp_root), env=self.env,
                                    **kwargs)
        except OSError as exc:
            self._proc = None
            raise WorkerError(f"could not start the backend interpreter {self.python}: {exc}", "missing") from None
        finally:
            log.close()
        self._proc = proc
        self._reader = threading.Thread(target=self._read, args=(proc,), name="emotalk3d-worker-reader",
                                        daemon=True)
        self._reader.start()
        return proc

    def _wait_hello(self, proc: subprocess.Popen) -> None:
        if not self._hello.wait(self.start_timeout) or proc.poll() is not None:
            silent = proc.poll() is None
            if silent:
                proc.kill()
                proc.wait()
            if self._killed:
                raise WorkerError("cancelled", "cancelled")
            if silent:
                raise WorkerError(f"The EmoTalk3D backend worker said nothing for {self.start_timeout:g} s after it "
                                  f"was started with {self.python}, and was stopped", "timeout")
            raise WorkerError(self._crash_message(proc), "crashed")

    def _read(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            try:
                message = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                continue           # not protocol (cannot happen: stdout is redirected in the worker)
            if not isinstance(message, dict):
                continue
            if message.get("type") == "hello":
                self.hello = message
                self._hello.set()
                continue
            with self._lock:
                call = self._calls.get(message.get("id"))  # type: ignore[arg-type]
            if call is not None:
                call._push(message)
                if call.done:
                    with self._lock:
                        self._calls.pop(call.id, None)
        proc.wait()
        self._hello.set()
        with self._lock:
            if proc is not self._proc:
                pending: list[Call] = []
            else:
                pending = list(self._calls.values())
                self._calls.clear()
            killed = self._killed
        if pending:
            error = (WorkerError("cancelled", "cancelled") if killed
                     else WorkerError(self._crash_message(proc), "crashed"))
            for call in pending:
                call._fail(error)

    def _crash_message(self, proc: subprocess.Popen | None) -> str:
        code = proc.poll() if proc is not None else None
        tail = self.log_tail()
        text = f"The EmoTalk3D backend worker stopped unexpectedly (exit code {code})"
        return text + (f"; its last output: {tail}" if tail else "")

    def log_tail(self, lines: int = 4, max_bytes: int = 4000) -> str:
        if self._log_path is None or not self._log_path.is_file():
            return ""
        with open(self._log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            text = f.read().decode("utf-8", "replace")
        return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())

    # -- calls ----------------------------------------------------------------------

    def submit(self, op: str, params: dict | None = None) -> Call:
        """Send a request (the worker must be running); returns the Call to poll or wait on."""
        with self._lock:
            if not self.alive:
                raise WorkerError("the backend worker is not running", "crashed")
            call_id = next(self._ids)
            out_dir = self.tmp_root / f"r{self._starts}-{call_id}"
            params = dict(params or {})
            params.setdefault("out_dir", str(out_dir))
            call = Call(call_id, op, out_dir)
            self._calls[call_id] = call
            line = json.dumps({"id": call_id, "op": op, "params": params}) + "\n"
            try:
                assert self._proc is not None and self._proc.stdin is not None
                self._proc.stdin.write(line.encode("utf-8"))
                self._proc.stdin.flush()
            except (BrokenPipeError, OSError):
                self._calls.pop(call_id, None)
                raise WorkerError(self._crash_message(self._proc), "crashed") from None
        return call

    def call(self, op: str, params: dict | None = None, timeout: float | None = None,
             on_progress: Progress | None = None) -> dict:
        """Start the worker if needed, send one request and wait for its result."""
        self.ensure_started()
        return self.submit(op, params).wait(timeout, on_progress)

    def kill(self) -> None:
        """End the worker now (cancel): pending calls fail with kind "cancelled"."""
        with self._lock:
            proc = self._proc
            self._killed = True
            self.info = {}
        if proc is not None and proc.poll() is None:
            proc.kill()
        if proc is not None:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                pass
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(5)
        self._close_pipes(proc)

    def shutdown(self, timeout: float = 5.0, remove_tmp: bool = True) -> None:
        """Ask the worker to exit (kill it if it does not), then delete the temporary folder."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                self.submit(OP_SHUTDOWN, {}).wait(timeout)
            except WorkerError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        self.passes.clear()
        if remove_tmp:
            shutil.rmtree(self.tmp_root, ignore_errors=True)

    @staticmethod
    def _close_pipes(proc: subprocess.Popen | None) -> None:
        if proc is None:
            return
        for pipe in (proc.stdin, proc.stdout):
            try:
                if pipe is not None:
                    pipe.close()
            except OSError:
                pass


# --------------------------------------------------------------------------- the shared client

_client: WorkerClient | None = None
_client_lock = threading.Lock()


def get_client(python: str, package_dir: Path = ADDON_DIR) -> WorkerClient:
    """The process-wide client for this interpreter (a new one if the interpreter changed)."""
    global _client
    with _client_lock:
        if _client is not None and (_client.python != str(python) or _client.package_dir != Path(package_dir)):
            _client.shutdown()
            _client = None
        if _client is None:
            _client = WorkerClient(python, package_dir)
        return _client


def current_client() -> WorkerClient | None:
    return _client


def shutdown_client() -> None:
    """Stop the shared worker (unregister, quitting Blender)."""
    global _client
    with _client_lock:
        if _client is not None:
            _client.shutdown()
            _client = None
