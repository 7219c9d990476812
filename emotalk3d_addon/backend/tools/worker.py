"""The worker process: the backend's request loop for the Blender extension (no bpy).

Blender never imports torch. It starts this module with an interpreter that has the
backend's dependencies::

    python -m <package>.backend.tools.worker

and talks to it in JSON lines (protocol version ``PROTOCOL``):

* requests on stdin, one JSON object a line: ``{"id": n, "op": name, "params": {...}}``;
* replies on the process's *original* stdout, one JSON object a line:
  ``{"type": "hello", ...}`` once at start, then per request any number of
  ``{"id": n, "type": "progress", "fraction": x, "message": s}`` and exactly one
  ``{"id": n, "type": "result", ...}`` or ``{"id": n, "type": "error", "kind": k,
  "message": s}`` (kind: ``input`` for bad input, ``missing`` for a missing
  dependency, ``internal`` for a bug; ``traceback`` is added for internal errors).

Python's ``sys.stdout`` (and file descriptor 1) are redirected to stderr before anything
else runs, so library prints can never corrupt the protocol. Arrays never cross as
text: the worker writes ``.npy`` files (no pickle) into the request's ``out_dir`` and
replies with their paths. Requests are served one at a time; the process lives until
``shutdown`` or end of stdin, keeping subjects, models and speech features loaded.
A cancel is the client killing this process.

Ops:

``ping``          versions of Python/torch/numpy, CUDA availability. The first ping imports
                  the backend's packages: a progress line names each, repeated every
                  ``HEARTBEAT_S`` seconds while it loads (PyTorch can take minutes on a cold
                  machine), so the client waits as long as the worker lives and reports.
``load_subject``  {subject, library?, out_dir} -> manifest, fingerprint, arrays
                  (template (V,3) f32, triangles (T,3) i32, uvs (V,2) f32,
                  components (K,V,3) f32).
``perform``       {subject, library?, audio, fps: [num, den], emotion, device?, encoder?,
                  cache_mb?, out_dir, return_vertices?} -> coefficients (F,K) f32: the
                  performance's shape-key values (S2GNet's vertices projected onto the basis,
                  the mouth closed toward the template in silence; ``performance/service.py``),
                  emotion (F,8) f32, intensity (F,) f32, ``vertices`` (with return_vertices:
                  the performance, template + basis mix), the subject's arrays, the basis
                  error (S2GNet's vertices against the shape keys, mm; measured on at most
                  performance.basis_frames.MAX_ERROR_FRAMES evenly spread frames) and timings. ``emotion`` is one of
                  ``{"mode": "constant", "emotion": name, "intensity": x}``,
                  ``{"mode": "keys", "keys": [{frame, emotion, intensity}], "fill_from_speech": bool,
                  "reach": frames}``, ``{"mode": "speech"}``.
``render_frame``  {subject, library?, vertices? (.npy (V,3) f32 subject space, metres; the
                  template when absent), object_to_world? (16 numbers, row-major), emotion
                  (8 weights), intensity, camera {K (9), world_to_camera (16, OpenCV axes),
                  width, height, near, far}, device?, rows? ("bottom_up" for Blender),
                  colors? ("linear": sRGB decoded to linear light), passes (a passes
                  buffer the caller made for the camera's size, ``io/passes_buffer.py``)}
                  -> the buffer filled with combined (H,W,4) straight RGBA, depth (H,W)
                  camera z in metres (1e10 where empty), face_matte (H,W); device used,
                  warnings, timings.
                  The subject's Gaussians stay loaded between frames; no state is carried
                  from one frame to the next.
``shutdown``      reply, then exit.

On a CUDA out-of-memory error ``perform`` and ``render_frame`` redo the work on the CPU
and say so in the result's ``warnings``.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from ..protocol import OP_SHUTDOWN, OPS, PROTOCOL

Send = Callable[[dict], None]
MAPPED_PASS_BUFFERS = 4          # passes buffers kept mapped (a few render sizes, viewport and final)
HEARTBEAT_S = 5.0                # seconds between the repeated progress lines of a slow start
# what ``ping`` imports (the first start's slow part), with the names an artist reads
STARTUP_IMPORTS = (("numpy", "NumPy"), ("torch", "PyTorch"), ("safetensors", "safetensors"),
                   ("soundfile", "soundfile"), ("transformers", "Transformers"))


def _save(folder: Path, name: str, array) -> str:
    import numpy as np

    path = folder / f"{name}.npy"
    np.save(path, np.ascontiguousarray(array), allow_pickle=False)
    return str(path)


# --------------------------------------------------------------------------- the worker


class Worker:
    """Request handlers: decode a request, call the backend, write its arrays, reply.

    Speech -> geometry is the ``Performance`` service's (it keeps subjects, models and
    features between requests); the worker keeps only the subject arrays it has written
    and one ``FrameRenderer`` per subject and device.
    """

    def __init__(self, send: Send):
        self.send = send
        self._performance = None
        self._exported: dict[str, dict[str, str]] = {}            # fingerprint -> array paths
        self._renderers: dict[tuple, Any] = {}                    # (subject path, stamp, device) -> FrameRenderer
        self._pass_buffers: dict[tuple, Any] = {}                 # (path, width, height) -> mapping

    @property
    def performance(self):
        if self._performance is None:
            from ..performance.service import Performance

            self._performance = Performance()
        return self._performance

    def _subject_arrays(self, loaded, out_dir: Path) -> dict[str, str]:
        """The subject's arrays as .npy files (written once per worker and fingerprint)."""
        import numpy as np

        paths = self._exported.get(loaded.fingerprint)
        if paths and all(Path(p).is_file() for p in paths.values()):
            return paths
        folder = out_dir.parent / f"subject-{loaded.fingerprint}"
        folder.mkdir(parents=True, exist_ok=True)
        g = loaded.subject.geometry
        paths = {"template": _save(folder, "template", g.template.astype(np.float32)),
                 "triangles": _save(folder, "triangles", g.triangles.astype(np.int32)),
                 "uvs": _save(folder, "uvs", g.uvs.astype(np.float32)),
                 "components": _save(folder, "components", loaded.subject.basis.components.astype(np.float32))}
        self._exported[loaded.fingerprint] = paths
        return paths

    def _subject_info(self, loaded, out_dir: Path):
        from ..protocol.messages import SubjectSummary

        subject = loaded.subject
        return SubjectSummary(subject.name, str(subject.root), loaded.fingerprint, subject.manifest,
                              subject.geometry.num_vertices, subject.geometry.num_triangles,
                              subject.basis.num_components, self._subject_arrays(loaded, out_dir))

    # -- ops ------------------------------------------------------------------------

    def op_ping(self, params: dict, progress) -> dict:
        with Heartbeat(progress) as beat:
            for k, (mod, label) in enumerate(STARTUP_IMPORTS):
                beat.say(k / len(STARTUP_IMPORTS), f"Starting the backend: importing {label}"
                         + (" (first start can take a few minutes)" if mod == "torch" else ""))
                try:
                    __import__(mod)
                except ImportError as exc:
                    raise MissingDependency(_missing_message(mod, exc)) from None
        import numpy
        import torch

        return {"protocol": PROTOCOL, "python": sys.version.split()[0], "executable": sys.executable,
                "torch": torch.__version__, "numpy": numpy.__version__,
                "cuda": bool(torch.cuda.is_available()), "pid": os.getpid(),
                "torch_threads": torch.get_num_threads()}

    def op_load_subject(self, params: dict, progress) -> dict:
        from ..protocol.messages import parse_library

        loaded = self.performance.subject(str(params.get("subject", "")), parse_library(params.get("library")))
        return {"subject": self._subject_info(loaded, Path(params["out_dir"])).to_dict()}

    def op_perform(self, params: dict, progress) -> dict:
        import numpy as np

        from ..emotions import EMOTIONS
        from ..protocol.messages import PerformReply, PerformRequest

        request = PerformRequest.from_dict(params)
        out_dir = Path(params["out_dir"])
        out_dir.mkdir(parents=True, exist_ok=True)
        result = self.performance.perform(request, progress)
        clock = time.perf_counter()
        progress(0.85, "Writing the performance")
        coefficients = result.coefficients
        error, measured = result.basis_error()
        timings = dict(result.timings, project=round(time.perf_counter() - clock, 4))
        clock = time.perf_counter()
        track = result.track
        arrays = {"coefficients": _save(out_dir, "coefficients", coefficients.astype(np.float32)),
                  "emotion": _save(out_dir, "emotion", track.emotion.astype(np.float32)),
                  "intensity": _save(out_dir, "intensity", track.intensity.astype(np.float32))}
        if request.return_vertices:
            arrays["vertices"] = _save(out_dir, "vertices", track.vertices.astype(np.float32))
        clock_arkit = time.perf_counter()
        arkit = result.arkit()
        if arkit is not None:
            arrays["arkit"] = _save(out_dir, "arkit", arkit.weights)
            if request.arkit_neutral:
                neutral = self.performance.neutral_arkit(request, result.device)
                arrays["arkit_neutral"] = _save(out_dir, "arkit_neutral", neutral)
            timings["arkit"] = round(time.perf_counter() - clock_arkit, 4)
        subject = self._subject_info(result.loaded, out_dir)
        timings["write"] = round(time.perf_counter() - clock, 4)
        return PerformReply(int(track.num_frames), int(coefficients.shape[1]), (track.fps.numerator, track.fps.denominator),
                            EMOTIONS, error.rms_mm, error.max_mm, measured, result.features_cached, result.device,
                            tuple(result.warnings), arrays, subject, timings,
                            None if arkit is None else arkit.rms_mm, None if arkit is None else arkit.max_mm).to_dict()

    def _renderer(self, loaded, device):
        from ..render.frame import FrameRenderer

        key = (loaded.path, loaded.stamp, str(device))
        renderer = self._renderers.get(key)
        if renderer is None:
            self._renderers = {k: v for k, v in self._renderers.items() if k[0] != loaded.path or k[1] == loaded.stamp}
            renderer = FrameRenderer(loaded.subject, device)
            self._renderers[key] = renderer
        return renderer

    def op_render_frame(self, params: dict, progress) -> dict:
        import numpy as np

        from ..device import resolve_device, run_with_fallback
        from ..protocol.messages import RenderFrameReply, RenderFrameRequest
        from ..raster import gpu_paths
        from ..render.views import raster_camera
        from ..render.layers import frame_layers

        clock = time.perf_counter()
        request = RenderFrameRequest.from_dict(params)
        loaded = self.performance.subject(request.subject, request.library)
        camera = raster_camera(request.camera)
        passes = self._passes(request.passes, camera.width, camera.height)
        vertices = np.load(request.vertices, allow_pickle=False) if request.vertices \
            else loaded.subject.geometry.template
        matrix = None if request.object_to_world is None else np.asarray(request.object_to_world).reshape(4, 4)
        warnings: list[str] = []
        timings: dict[str, float] = {"setup": time.perf_counter() - clock}

        def render(dev):
            out = self._renderer(loaded, dev).render(vertices, np.asarray(request.emotion, np.float32),
                                                     request.intensity, camera, matrix, timings)
            clock = time.perf_counter()
            frame_layers(out, bottom_up=request.rows == "bottom_up", linear=request.colors == "linear", out=passes)
            timings["layers"] = time.perf_counter() - clock

        _, used = run_with_fallback(render, resolve_device(request.device), warnings, "rendering")
        notice = gpu_paths.CHOICE.take_notice()   # once per worker: a GPU rasteriser was set aside, and why
        if notice:
            warnings.append(notice)
        return RenderFrameReply(request.passes, camera.width, camera.height, str(used), tuple(warnings),
                                {k: round(v, 6) for k, v in timings.items()}).to_dict()

    def _passes(self, path: str, width: int, height: int) -> dict[str, Any]:
        """Views of the caller's passes buffer, mapped once (the last few buffers stay mapped)."""
        from ..errors import InputError
        from ..io import passes_buffer

        key = (path, width, height)
        mapping = self._pass_buffers.pop(key, None)
        if mapping is None:
            try:
                mapping = passes_buffer.attach(path, width, height)
            except ValueError as exc:
                raise InputError(str(exc)) from None
        self._pass_buffers[key] = mapping                     # most recent last
        while len(self._pass_buffers) > MAPPED_PASS_BUFFERS:
            self._pass_buffers.pop(next(iter(self._pass_buffers)))
        return passes_buffer.views(mapping, width, height)


class Heartbeat:
    """While a slow step runs (the first import of PyTorch), repeat its progress line every
    ``interval`` seconds with the time spent so far, so the client knows the worker lives.

    A context manager: ``say`` sets the line, leaving stops the beat."""

    def __init__(self, progress: Callable[[float, str], None], interval: float = HEARTBEAT_S):
        self.progress = progress
        self.interval = interval
        self.fraction, self.message = 0.0, ""
        self._since = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="emotalk3d-heartbeat", daemon=True)

    def say(self, fraction: float, message: str) -> None:
        self.fraction, self.message, self._since = fraction, message, time.monotonic()
        self.progress(fraction, message)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            if self.message:
                self.progress(self.fraction, f"{self.message}, {time.monotonic() - self._since:.0f} s")

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class MissingDependency(Exception):
    """The interpreter lacks a package the backend needs."""


def _missing_message(module: str, exc: BaseException) -> str:
    return (f"the backend Python {sys.executable} lacks the package {module!r} ({exc}): use Install Backend "
            "in the EmoTalk3D add-on preferences, or choose a Python that has the backend's packages")


# --------------------------------------------------------------------------- the loop


def _protocol_stream():
    """Keep the original stdout for the protocol; send everything else printed to stderr."""
    proto_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(proto_fd, "w", buffering=1, encoding="utf-8", newline="\n")


def serve(stdin, proto) -> int:
    lock = threading.Lock()

    def send(message: dict) -> None:
        line = json.dumps(message, allow_nan=False, default=str)
        with lock:
            proto.write(line + "\n")
            proto.flush()

    worker = Worker(send)
    send({"type": "hello", "protocol": PROTOCOL, "pid": os.getpid(), "python": sys.version.split()[0],
          "executable": sys.executable})
    for line in stdin:
        line = line.strip()
        if not line:
            continue
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("a request must be a JSON object")
        except ValueError as exc:
            send({"id": None, "type": "error", "kind": "protocol", "message": f"bad request line: {exc}"})
            continue
        rid, op = request.get("id"), str(request.get("op", ""))
        params = request.get("params") or {}
        if op == OP_SHUTDOWN:
            send({"id": rid, "type": "result", "ok": True})
            return 0
        handler = getattr(worker, f"op_{op}", None) if op in OPS else None
        if handler is None:
            send({"id": rid, "type": "error", "kind": "protocol", "message": f"unknown op {op!r}"})
            continue

        def progress(fraction: float, message: str, rid=rid) -> None:
            send({"id": rid, "type": "progress", "fraction": float(fraction), "message": str(message)})

        send({"id": rid, "type": "progress", "fraction": 0.0, "message": "Started"})
        try:
            result = handler(params, progress)
        except MissingDependency as exc:
            send({"id": rid, "type": "error", "kind": "missing", "message": str(exc)})
        except Exception as exc:  # noqa: BLE001 - every failure becomes a reply
            send(_error_reply(rid, exc))
        else:
            send({"id": rid, "type": "result", **result})
    return 0


def _error_reply(rid, exc: Exception) -> dict:
    try:
        from ..errors import InputError
    except ImportError:  # pragma: no cover
        InputError = ()  # type: ignore[assignment]
    if isinstance(exc, ModuleNotFoundError):
        return {"id": rid, "type": "error", "kind": "missing",
                "message": _missing_message(str(exc.name or "?"), exc)}
    if isinstance(exc, InputError) or isinstance(exc, (FileNotFoundError, KeyError)):
        message = " ".join(str(exc).split()) or type(exc).__name__
        defects = getattr(exc, "defects", None)
        if defects:
            message = f"invalid subject bundle {exc.where}: " + "; ".join(defects)
        return {"id": rid, "type": "error", "kind": "input", "message": message}
    return {"id": rid, "type": "error", "kind": "internal",
            "message": f"{type(exc).__name__}: {' '.join(str(exc).split())}",
            "traceback": traceback.format_exc()}


def main() -> int:
    proto = _protocol_stream()
    try:
        return serve(sys.stdin, proto)
    except KeyboardInterrupt:
        return 130
    finally:
        try:
            proto.close()
        except OSError:
            pass


if __name__ == "__main__":
    sys.exit(main())
