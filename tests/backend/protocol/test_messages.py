"""Typed requests: the wire form round-trips, what the Blender side sends is accepted, and
every bad field is refused with a message that names it."""
from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import pytest

from emotalk3d_addon.backend.errors import InputError
from emotalk3d_addon.backend.protocol import messages
from emotalk3d_addon.backend.protocol.messages import (CameraSpec, EmotionKey, EmotionSpec, PerformReply,
                                                       PerformRequest, RenderFrameReply, RenderFrameRequest,
                                                       SubjectSummary)

K = (500.0, 0.0, 32.0, 0.0, 500.0, 24.0, 0.0, 0.0, 1.0)
W2C = tuple(float(v) for v in (1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0.9, 0, 0, 0, 1))


def _requests():
    camera = CameraSpec(K, W2C, 64, 48, 0.05, 100.0)
    yield camera
    yield EmotionSpec.constant("fear", 0.3)
    yield EmotionSpec.speech()
    yield EmotionSpec.keyed([EmotionKey(-2.0, "sad", 0.5), EmotionKey(30.0, "happy")], True, 6.0)
    yield PerformRequest("demo", "/tmp/a.wav", (30000, 1001), EmotionSpec.constant("happy"), ("/lib",), "cpu",
                         "whisper:tiny.en", 256, True, 0.5, "/tmp/out")
    yield PerformRequest("demo", "/tmp/a.wav", 29.97)
    yield RenderFrameRequest("demo", camera, "/tmp/passes-64x48-00aa.f32", "/tmp/v.npy", tuple(float(i) for i in range(16)),
                             (0.0, 1.0) + (0.0,) * 6, 0.7, ("/lib",), "cuda", "bottom_up", "linear", "/tmp/o")
    yield RenderFrameRequest("demo", camera, "/tmp/passes-64x48-00aa.f32")
    summary = SubjectSummary("demo", "/s/demo", "0123456789abcdef", {"name": "demo", "fps": 30}, 3150, 6000, 15,
                             {"template": "/t/template.npy", "components": "/t/components.npy"})
    yield summary
    yield PerformReply(90, 15, (30000, 1001), ("neutral",) * 8, 0.1, 0.7, 90, True, "cpu", ("slow",),
                       {"coefficients": "/o/c.npy"}, summary, {"s2g": 0.01})
    yield RenderFrameReply("/tmp/passes-64x48-00aa.f32", 64, 48, "cuda",
                           (), {"raster": 0.002})


@pytest.mark.parametrize("request_", list(_requests()), ids=lambda r: type(r).__name__)
def test_the_wire_form_round_trips_through_json(request_):
    wire = json.loads(json.dumps(request_.to_dict(), allow_nan=False))
    assert type(request_).from_dict(wire) == request_


def test_a_reply_lacking_a_part_is_refused_by_name():
    with pytest.raises(InputError, match="lacks subject"):
        PerformReply.from_dict({"num_frames": 1, "num_components": 1, "fps": [30, 1], "arrays": {}})
    with pytest.raises(InputError, match="lacks passes"):
        RenderFrameReply.from_dict({"width": 4, "height": 4})


def test_nested_matrices_and_defaults_are_accepted():
    cam = CameraSpec.from_dict({"K": [list(K[0:3]), list(K[3:6]), list(K[6:9])],
                                "world_to_camera": [list(W2C[i:i + 4]) for i in range(0, 16, 4)]}, 64, 48)
    assert cam == CameraSpec(K, W2C, 64, 48)
    assert PerformRequest.from_dict({"subject": "demo", "audio": "a.wav"}).emotion == EmotionSpec.speech()


@pytest.mark.parametrize("build, needle", [
    (lambda: CameraSpec.from_dict({"world_to_camera": W2C, "width": 4, "height": 4}), "no K"),
    (lambda: CameraSpec.from_dict({"K": K, "world_to_camera": W2C, "width": 0, "height": 4}), "width"),
    (lambda: CameraSpec.from_dict({"K": K[:8], "world_to_camera": W2C, "width": 4, "height": 4}), "9 numbers"),
    (lambda: CameraSpec.from_dict({"K": (math.nan,) + K[1:], "world_to_camera": W2C, "width": 4, "height": 4}),
     "finite"),
    (lambda: CameraSpec.from_dict({"K": K, "world_to_camera": W2C, "width": 4, "height": 4, "near": 2, "far": 1}),
     "near < far"),
    (lambda: CameraSpec.from_dict({"K": K, "world_to_camera": W2C, "width": 16384, "height": 16384 + 1}), "height"),
    (lambda: EmotionSpec.from_dict({"mode": "mood"}), "constant, keys or speech"),
    (lambda: EmotionSpec.from_dict({"mode": "constant", "emotion": "bored"}), "unknown emotion"),
    (lambda: EmotionSpec.from_dict({"mode": "constant", "emotion": "sad", "intensity": 1.5}), "[0, 1]"),
    (lambda: EmotionSpec.from_dict({"mode": "keys", "keys": []}), "non-empty"),
    (lambda: EmotionSpec.from_dict("happy"), "must be an object"),
    (lambda: PerformRequest.from_dict({"fps": [30, 0]}), "fps"),
    (lambda: PerformRequest.from_dict({"fps": "fast"}), "fps"),
    (lambda: PerformRequest.from_dict({"library": "/one/folder"}), "library"),
    (lambda: RenderFrameRequest.from_dict({"subject": "demo"}), "needs a camera"),
    (lambda: RenderFrameRequest.from_dict({"camera": CameraSpec(K, W2C, 4, 4).to_dict()}), "needs passes"),
    (lambda: CameraSpec.from_dict({"K": [[1, 2, 3], [4, 5, 6], [7, 8, [9]]], "world_to_camera": W2C, "width": 4,
                                   "height": 4}), "9 numbers"),
    (lambda: PerformRequest.from_dict({"cache_mb": float("nan")}), "cache_mb"),
    (lambda: PerformRequest.from_dict(["not", "an", "object"]), "must be an object"),
    (lambda: RenderFrameRequest.from_dict({"camera": CameraSpec(K, W2C, 4, 4).to_dict(), "passes": "p", "intensity": 7}), "[0, 1]"),
    (lambda: RenderFrameRequest.from_dict({"camera": CameraSpec(K, W2C, 4, 4).to_dict(), "passes": "p", "emotion": []}),
     "8 numbers"),
    (lambda: RenderFrameRequest.from_dict({"camera": CameraSpec(K, W2C, 4, 4).to_dict(), "passes": "p", "emotion": [1, 0]}),
     "8 numbers"),
    (lambda: RenderFrameRequest.from_dict({"camera": CameraSpec(K, W2C, 4, 4).to_dict(), "passes": "p", "rows": "sideways"}), "rows"),
    (lambda: RenderFrameRequest.from_dict({"camera": CameraSpec(K, W2C, 4, 4).to_dict(), "passes": "p",
                                           "object_to_world": [1.0] * 15}), "object_to_world"),
])
def test_a_bad_field_is_refused_by_name(build, needle):
    with pytest.raises(InputError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        build()


def test_the_messages_module_needs_neither_torch_nor_numpy():
    tree = ast.parse(Path(messages.__file__).read_text(encoding="utf-8"))
    modules = {n.module if isinstance(n, ast.ImportFrom) else a.name
               for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
               for a in (n.names if isinstance(n, ast.Import) else [None])}
    assert modules <= {"__future__", "math", "dataclasses", "typing", "emotions", "errors", None}, modules
