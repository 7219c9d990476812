"""One frame of a head's Gaussians, from Blender's evaluated scene to compositor passes.

What a frame needs is read from the depsgraph at that frame only (nothing is carried
from one frame to the next, so any frame range can be rendered on its own):

* the head object: the scene's EmoTalk3D head, else the only head object in the scene;
* its evaluated mesh (shape-key curves, hand edits and modifiers that keep the vertex
  count all show) in object space, and its world matrix;
* its emotion state (``emotion_state``) from the evaluated shape-key datablock;
* the camera (``camera``).

The worker renders into a shared passes buffer (``backend/io/passes_buffer.py``) that this
side made for the frame's size and keeps mapped, so the passes reach ``foreach_set`` without
a file or a copy; the buffer goes back to the client's pool once they are in Blender.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import emotion_state, subjects
from .subjects import resolve_subject
from .camera import PinholeCamera
from ..backend.protocol import OP_RENDER_FRAME
from ..backend.protocol.messages import RenderFrameReply, RenderFrameRequest
from .errors import UserError


@dataclass
class HeadFrame:
    """Everything the backend needs to render one head at one frame."""

    head_name: str
    subject_path: str
    vertices: np.ndarray            # (V, 3) float32, object space, metres
    object_to_world: np.ndarray     # (4, 4) float64
    emotion: np.ndarray             # (8,) float32
    intensity: float


@dataclass
class RenderedPasses:
    """Views of a shared passes buffer: valid until ``release`` hands the buffer back."""

    combined: np.ndarray            # (H, W, 4) float32 straight RGBA (linear light), rows bottom-up
    depth: np.ndarray               # (H, W) float32 metres, 1e10 where empty
    face_matte: np.ndarray          # (H, W) float32
    device: str = ""
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    release: Callable[[], None] = lambda: None


def is_head(ob) -> bool:
    info = getattr(ob, "emotalk3d_head", None)
    return ob is not None and ob.type == 'MESH' and info is not None and bool(info.fingerprint)


def find_head(scene):
    """The head this scene renders; UserError when there is none (or several and none chosen)."""
    settings = getattr(scene, "emotalk3d", None)
    chosen = settings.head if settings is not None else None
    if chosen is not None and chosen.name in scene.objects and is_head(chosen):
        return chosen
    heads = [ob for ob in scene.objects if is_head(ob)]
    if not heads:
        raise UserError(f"Scene {scene.name!r} has no EmoTalk3D head: generate a performance (or Add Head) first")
    if len(heads) > 1:
        raise UserError(f"Scene {scene.name!r} has {len(heads)} EmoTalk3D heads: choose one as the scene's Head "
                        "in the EmoTalk3D panel")
    return heads[0]


def hidden_from_render(ob) -> bool:
    """True when Blender's renders skip ``ob`` (then its geometry is not evaluated for them)."""
    return bool(ob.hide_render) or any(c.hide_render for c in ob.users_collection)


def shape_key_mix(key_eval, num_vertices: int, values: dict[str, float] | None = None) -> np.ndarray:
    """(V, 3) float32 relative shape-key mix of an evaluated shape-key datablock:
    reference + Σ value·(key − its relative key) over unmuted keys, as Blender mixes them
    (vertex groups aside). Used for heads hidden from the render, which Blender does not evaluate.
    ``values``: key values by name to use instead of the blocks' own (a predicted frame)."""
    blocks = list(key_eval.key_blocks)
    coords = {}

    def co(block):
        if block.name not in coords:
            out = np.empty(num_vertices * 3, np.float32)
            block.points.foreach_get("co", out)     # ``points``: the bulk path (200x ``data``)
            coords[block.name] = out.reshape(-1, 3)
        return coords[block.name]

    reference = key_eval.reference_key if key_eval.reference_key is not None else blocks[0]
    mix = co(reference).astype(np.float64)
    for block in blocks:
        value = block.value if values is None else values.get(block.name, block.value)
        if block == reference or block.mute or value == 0.0:
            continue
        value = min(max(value, block.slider_min), block.slider_max)
        relative = block.relative_key if block.relative_key is not None else reference
        mix += value * (co(block).astype(np.float64) - co(relative))
    return mix.astype(np.float32)


def head_frame(depsgraph, head, dirs: list[Path], abspath: Callable[[str], str] = lambda p: p,
               evaluated_mesh: bool = True) -> HeadFrame:
    """Read ``head`` at the depsgraph's frame. ``evaluated_mesh`` False: the shape-key mix
    (for a head hidden from renders; modifiers do not apply then)."""
    from . import mesh

    info = head.emotalk3d_head
    path = resolve_subject(info.subject, dirs, abspath)
    if path is None:
        raise UserError(f"Subject {info.subject!r} of head {head.name!r} was not found in: "
                        + ", ".join(str(d) for d in dirs) + " (add its folder in the EmoTalk3D preferences)")
    head_eval = head.evaluated_get(depsgraph)
    key = head.data.shape_keys
    key_eval = key.evaluated_get(depsgraph) if key is not None else None
    if evaluated_mesh or key_eval is None:
        vertices = mesh.evaluated_vertices(head, depsgraph)
    else:
        vertices = shape_key_mix(key_eval, len(head.data.vertices))
    weights, intensity = emotion_state.state_of(key_eval)
    return HeadFrame(head.name, str(path), vertices, np.array(head_eval.matrix_world, np.float64),
                     weights, intensity)


def render_head(client, frame: HeadFrame, camera: PinholeCamera, dirs: list[Path], device: str = "auto",
                should_stop: Callable[[], bool] = lambda: False, timeout: float = 600.0,
                linear: bool = True) -> RenderedPasses | None:
    """Render ``frame`` through ``camera`` in the worker; None when ``should_stop`` said so
    (the worker is killed then, and restarts on the next call). ``linear``: colours in
    linear light (render passes); False keeps them display-encoded (viewport drawing).
    Call the result's ``release`` once its passes are copied into Blender."""
    return submit_head(client, frame, camera, dirs, device, linear).wait(should_stop, timeout)


def submit_head(client, frame: HeadFrame, camera: PinholeCamera, dirs: list[Path], device: str = "auto",
                linear: bool = True) -> "FrameCall":
    """Send ``frame`` to the worker and return at once; the worker renders it into a passes
    buffer taken from the client's pool, while this side goes on (``FrameCall.wait`` for it)."""
    client.ensure_started()
    in_dir = Path(client.tmp_root) / "inputs"
    in_dir.mkdir(parents=True, exist_ok=True)
    vertices_path = in_dir / f"vertices-{os.getpid()}-{time.monotonic_ns()}.npy"
    np.save(vertices_path, np.ascontiguousarray(frame.vertices, np.float32), allow_pickle=False)
    width, height = camera.width, camera.height
    buffer_path, mapping = client.passes.take(width, height)
    try:
        request = RenderFrameRequest(
            frame.subject_path, camera.spec(), str(buffer_path), str(vertices_path),
            tuple(float(v) for v in frame.object_to_world.ravel()), tuple(float(v) for v in frame.emotion),
            float(frame.intensity), tuple(str(d) for d in dirs), device, "bottom_up",
            "linear" if linear else "srgb")
        call = client.submit(OP_RENDER_FRAME, request.to_dict())
    except BaseException:
        vertices_path.unlink(missing_ok=True)
        client.passes.give_back(width, height, buffer_path, mapping)
        raise
    return FrameCall(client, call, width, height, buffer_path, mapping, vertices_path)


class FrameCall:
    """One frame in the worker: ``wait`` for its passes, or ``discard`` it. Until then it holds
    a passes buffer the worker may be writing, so the buffer goes back to the pool only once
    the call has ended."""

    def __init__(self, client, call, width: int, height: int, buffer_path: Path, mapping, vertices_path: Path):
        self.client, self.call = client, call
        self.width, self.height = width, height
        self.buffer_path, self.mapping, self.vertices_path = buffer_path, mapping, vertices_path
        self._settled = False

    @property
    def done(self) -> bool:
        return self.call.done

    def _settle(self, keep_buffer: bool = False) -> None:
        if self._settled:
            return
        self._settled = True
        self.call.cleanup()
        self.vertices_path.unlink(missing_ok=True)
        if not keep_buffer:
            self.client.passes.give_back(self.width, self.height, self.buffer_path, self.mapping)

    def wait(self, should_stop: Callable[[], bool] = lambda: False, timeout: float = 600.0) -> RenderedPasses | None:
        """The passes (None when ``should_stop`` said so: the worker is killed then, and
        restarts on the next call); WorkerError when the worker failed."""
        from ..backend.io import passes_buffer
        from .worker_client import WorkerError

        width, height, handed_out = self.width, self.height, False
        try:
            deadline = time.monotonic() + timeout
            while not self.call.ended_within(0.02):
                if should_stop():
                    self.client.kill()
                    return None
                if time.monotonic() > deadline:
                    self.client.kill()
                    raise WorkerError(f"rendering a frame took more than {timeout:.0f} s", "timeout")
            reply = RenderFrameReply.from_dict(self.call.wait(0))
            if (reply.passes, reply.width, reply.height) != (str(self.buffer_path), width, height):
                raise WorkerError(f"the backend rendered {reply.width}x{reply.height} into {reply.passes!r}, "
                                  f"not {width}x{height} into this render's buffer", "protocol")
            views = passes_buffer.views(self.mapping, width, height)
            handed_out = True
        finally:
            self._settle(keep_buffer=handed_out)
        client, buffer_path, mapping = self.client, self.buffer_path, self.mapping
        released = []

        def release() -> None:                  # once only: a buffer in the pool twice would be shared
            if not released:
                released.append(True)
                client.passes.give_back(width, height, buffer_path, mapping)

        return RenderedPasses(views["combined"], views["depth"], views["face_matte"], reply.device,
                              list(reply.warnings), dict(reply.timings), release=release)

    def discard(self) -> None:
        """Drop the call unused. Its buffer and files go back as soon as the worker has ended it
        (at once when it has; else from a background thread, so nothing waits for it here)."""
        if self._settled:
            return
        if self.call.done:
            self._settle()
            return

        def settle_later() -> None:
            if self.call.ended_within(3600.0):     # a worker that never answers keeps its buffer
                self._settle()

        threading.Thread(target=settle_later, name="emotalk3d-discarded-frame", daemon=True).start()


__all__ = ["HeadFrame", "RenderedPasses", "find_head", "head_frame", "render_head", "resolve_subject", "is_head",
           "hidden_from_render", "shape_key_mix", "submit_head", "FrameCall"]
