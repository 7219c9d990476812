"""Typed requests of the worker protocol, shared by the worker and the Blender side.

``PerformRequest`` and ``RenderFrameRequest`` with their parts (``EmotionSpec`` and its
``EmotionKey`` list, ``CameraSpec``): ``to_dict`` gives the wire form (JSON), ``from_dict``
validates it (``InputError`` naming the field). ``parse_keys`` is the one parser of
emotion keys (the worker's and ``--keys KEYS.json``). No torch and no numpy here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..emotions import EMOTIONS
from ..errors import InputError
from . import BACKGROUND_DEPTH, FILL_REACH_DEFAULT, MAX_IMAGE_PIXELS


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _numbers(value: Any, count: int, what: str) -> tuple[float, ...]:
    """``count`` finite numbers from a flat or nested list (a 3x3 matrix may come either way)."""
    flat: list = []

    def walk(v: Any, depth: int) -> None:
        if isinstance(v, (list, tuple)) and depth < 3:
            for x in v:
                walk(x, depth + 1)
        else:
            flat.append(v)

    walk(value, 0)
    if not isinstance(value, (list, tuple)) or len(flat) != count:
        raise InputError(f"{what} must hold {count} numbers, got {value!r}"[:300])
    return tuple(_number(v, what) for v in flat)


@dataclass(frozen=True)
class EmotionKey:
    """An emotion key: 0-based performance frame, emotion name, intensity in [0, 1]."""

    frame: float
    emotion: str
    intensity: float = 1.0

    def to_dict(self) -> dict:
        return {"frame": self.frame, "emotion": self.emotion, "intensity": self.intensity}


def emotion_name(value: Any, where: str = "") -> str:
    """A known emotion name, lower-case; InputError naming the choices otherwise (after ``where``)."""
    name = value.strip().lower() if isinstance(value, str) else None
    if name not in EMOTIONS:
        raise InputError(f"{where}unknown emotion {value!r}; choose one of: {', '.join(EMOTIONS)}")
    return name


def intensity_value(value: Any, what: str = "intensity") -> float:
    x = _number(value, what)
    if not 0.0 <= x <= 1.0:
        raise InputError(f"{what} must be a number in [0, 1], got {value!r}")
    return x


def parse_keys(items: Any, where: str, before_start: bool = False) -> list[EmotionKey]:
    """``[{"frame": f, "emotion": name, "intensity": x}, ...]`` -> keys (``intensity`` optional,
    1 by default). ``where`` starts every message ("keys file K.json", "emotion keys").
    ``before_start``: frames may be negative (Blender keys set before the sound starts)."""
    if not isinstance(items, (list, tuple)) or not items:
        raise InputError(f"{where} must hold a non-empty list of keys {{frame, emotion, intensity}}")
    keys = []
    for n, item in enumerate(items):
        if not isinstance(item, dict) or set(item) - {"frame", "emotion", "intensity"} or \
                not {"frame", "emotion"} <= set(item):
            raise InputError(f"{where}: key {n} must be an object with 'frame', 'emotion' "
                             "and optionally 'intensity'")
        frame = item["frame"]
        if isinstance(frame, bool) or not isinstance(frame, (int, float)) or not math.isfinite(frame) or \
                (frame < 0 and not before_start):
            raise InputError(f"{where}: key {n} has an invalid frame {frame!r}")
        if not isinstance(item["emotion"], str):
            raise InputError(f"{where}: key {n} has an invalid emotion {item['emotion']!r}")
        emotion = emotion_name(item["emotion"], f"{where}: key {n}: ")
        intensity = item.get("intensity", 1.0)
        if isinstance(intensity, bool) or not isinstance(intensity, (int, float)):
            raise InputError(f"{where}: key {n} has an invalid intensity {intensity!r}")
        keys.append(EmotionKey(float(frame), emotion, intensity_value(intensity)))
    return keys


@dataclass(frozen=True)
class EmotionSpec:
    """Where a performance's emotion comes from.

    ``constant``: one emotion and intensity throughout. ``keys``: the keys, interpolated;
    with ``fill_from_speech`` each key holds ``reach`` frames around it and the emotion
    heard in the speech fills the rest. ``speech``: the emotion heard in the speech.
    """

    mode: str = "speech"
    emotion: str = "neutral"
    intensity: float = 1.0
    keys: tuple[EmotionKey, ...] = ()
    fill_from_speech: bool = False
    reach: float = FILL_REACH_DEFAULT

    @classmethod
    def constant(cls, emotion: str, intensity: float = 1.0) -> "EmotionSpec":
        return cls("constant", emotion_name(emotion), intensity_value(intensity))

    @classmethod
    def keyed(cls, keys: list[EmotionKey], fill_from_speech: bool = False,
              reach: float = FILL_REACH_DEFAULT) -> "EmotionSpec":
        if not keys:
            raise InputError("no emotion keys given")
        return cls("keys", keys=tuple(keys), fill_from_speech=bool(fill_from_speech), reach=float(reach))

    @classmethod
    def speech(cls) -> "EmotionSpec":
        return cls("speech")

    def to_dict(self) -> dict:
        if self.mode == "constant":
            return {"mode": "constant", "emotion": self.emotion, "intensity": self.intensity}
        if self.mode == "keys":
            return {"mode": "keys", "keys": [k.to_dict() for k in self.keys],
                    "fill_from_speech": self.fill_from_speech, "reach": self.reach}
        return {"mode": "speech"}

    @classmethod
    def from_dict(cls, data: Any) -> "EmotionSpec":
        if data is None:
            return cls.speech()
        if not isinstance(data, dict):
            raise InputError(f"emotion must be an object, got {data!r}")
        mode = data.get("mode", "speech")
        if mode == "constant":
            return cls.constant(data.get("emotion", "neutral"), data.get("intensity", 1.0))
        if mode == "speech":
            return cls.speech()
        if mode != "keys":
            raise InputError(f"emotion mode must be constant, keys or speech, got {mode!r}")
        reach = _number(data.get("reach", FILL_REACH_DEFAULT), "emotion reach")
        return cls.keyed(parse_keys(data.get("keys"), "emotion keys", before_start=True),
                         bool(data.get("fill_from_speech")), reach)


@dataclass(frozen=True)
class CameraSpec:
    """A pinhole camera: K (9 numbers, row-major), world_to_camera (16, row-major, OpenCV axes:
    x right, y down, z forward), image size in pixels, clip distances in metres."""

    K: tuple[float, ...]
    world_to_camera: tuple[float, ...]
    width: int
    height: int
    near: float = 0.01
    far: float = BACKGROUND_DEPTH

    def to_dict(self) -> dict:
        return {"K": list(self.K), "world_to_camera": list(self.world_to_camera), "width": self.width,
                "height": self.height, "near": self.near, "far": self.far}

    @classmethod
    def from_dict(cls, data: Any, width: int | None = None, height: int | None = None) -> "CameraSpec":
        """From ``to_dict``'s form (matrices flat or nested); ``width``/``height`` stand in
        for absent fields."""
        if not isinstance(data, dict):
            raise InputError("a camera must be an object {K, world_to_camera, width, height}")
        for name in ("K", "world_to_camera"):
            if name not in data:
                raise InputError(f"the camera has no {name}")
        size = []
        for name, default in (("width", width), ("height", height)):
            value = data.get(name, default)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 16384:
                raise InputError(f"the camera's {name} must be a whole number of pixels in 1..16384, got {value!r}")
            size.append(value)
        if size[0] * size[1] > MAX_IMAGE_PIXELS:
            raise InputError(f"{size[0]}x{size[1]} pixels is more than this renderer supports")
        near = _number(data.get("near", 0.01), "the camera's near")
        far = _number(data.get("far", BACKGROUND_DEPTH), "the camera's far")
        if not 0.0 < near < far:
            raise InputError(f"the camera's clip range must satisfy 0 < near < far, got {near}, {far}")
        return cls(_numbers(data["K"], 9, "the camera's K"),
                   _numbers(data["world_to_camera"], 16, "the camera's world_to_camera"),
                   size[0], size[1], near, far)


@dataclass(frozen=True)
class PerformRequest:
    """``perform``: speech -> a performance of ``subject`` (a library name or bundle path)."""

    subject: str
    audio: str
    fps: tuple[int, int] | float      # [numerator, denominator], or a rate (NTSC rates are recognised)
    emotion: EmotionSpec = field(default_factory=EmotionSpec)
    library: tuple[str, ...] = ()
    device: str = "auto"
    encoder: str = ""
    cache_mb: int = 512
    return_vertices: bool = False
    debug_delay: float = 0.0          # testing aid: seconds a request waits after its features
    out_dir: str = ""

    def to_dict(self) -> dict:
        return {"subject": self.subject, "audio": self.audio, "fps": list(self.fps) if isinstance(self.fps, tuple) else self.fps,
                "emotion": self.emotion.to_dict(), "library": list(self.library), "device": self.device,
                "encoder": self.encoder, "cache_mb": self.cache_mb, "return_vertices": self.return_vertices,
                "debug_delay": self.debug_delay, **({"out_dir": self.out_dir} if self.out_dir else {})}

    @classmethod
    def from_dict(cls, data: dict) -> "PerformRequest":
        fps = data.get("fps", 30)
        if isinstance(fps, (list, tuple)) and len(fps) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                                   for v in fps) and fps[0] > 0 and fps[1] > 0:
            rate: tuple[int, int] | float = (int(fps[0]), int(fps[1]))
        elif isinstance(fps, (int, float)) and not isinstance(fps, bool) and math.isfinite(fps) and fps > 0:
            rate = float(fps)
        else:
            raise InputError(f"fps must be [numerator, denominator] or a positive number, got {fps!r}")
        cache_mb = data.get("cache_mb") or 512
        if isinstance(cache_mb, bool) or not isinstance(cache_mb, (int, float)) or cache_mb < 0:
            raise InputError(f"cache_mb must be a non-negative number, got {cache_mb!r}")
        return cls(str(data.get("subject", "")), str(data.get("audio", "")), rate,
                   EmotionSpec.from_dict(data.get("emotion")), parse_library(data.get("library")),
                   str(data.get("device") or "auto"), str(data.get("encoder") or ""), int(cache_mb),
                   bool(data.get("return_vertices")), float(_number(data.get("debug_delay", 0) or 0, "debug_delay")),
                   str(data.get("out_dir") or ""))


@dataclass(frozen=True)
class RenderFrameRequest:
    """``render_frame``: one frame of ``subject``'s head. ``vertices``: a .npy (V, 3) float32
    in subject space, metres (the template when empty); ``object_to_world``: 16 numbers,
    row-major; ``emotion``: 8 weights; ``rows`` "bottom_up" for Blender; ``colors``
    "linear" (sRGB decoded to linear light) or "srgb"."""

    subject: str
    camera: CameraSpec
    vertices: str = ""
    object_to_world: tuple[float, ...] | None = None
    emotion: tuple[float, ...] = (1.0,) + (0.0,) * 7
    intensity: float = 0.0
    library: tuple[str, ...] = ()
    device: str = "auto"
    rows: str = "top_down"
    colors: str = "srgb"
    out_dir: str = ""

    def to_dict(self) -> dict:
        out = {"subject": self.subject, "camera": self.camera.to_dict(), "vertices": self.vertices,
               "emotion": list(self.emotion), "intensity": self.intensity, "library": list(self.library),
               "device": self.device, "rows": self.rows, "colors": self.colors}
        if self.object_to_world is not None:
            out["object_to_world"] = list(self.object_to_world)
        if self.out_dir:
            out["out_dir"] = self.out_dir
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "RenderFrameRequest":
        camera = data.get("camera")
        if camera is None:
            raise InputError("render_frame needs a camera {K, world_to_camera, width, height}")
        matrix = data.get("object_to_world")
        emotion = data.get("emotion") or list(cls.emotion)
        rows, colors = str(data.get("rows") or "top_down"), str(data.get("colors") or "srgb")
        if rows not in ("top_down", "bottom_up") or colors not in ("srgb", "linear"):
            raise InputError(f"rows must be top_down or bottom_up and colors srgb or linear, got {rows!r}, {colors!r}")
        return cls(str(data.get("subject", "")), CameraSpec.from_dict(camera), str(data.get("vertices") or ""),
                   None if matrix is None else _numbers(matrix, 16, "object_to_world"),
                   _numbers(emotion, 8, "the emotion weights"),
                   _number(data.get("intensity", 0.0), "the intensity"), parse_library(data.get("library")),
                   str(data.get("device") or "auto"), rows, colors, str(data.get("out_dir") or ""))


def parse_library(value: Any) -> tuple[str, ...]:
    """Library folders from a request (a list of paths; none when absent)."""
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise InputError(f"library must be a list of folder paths, got {value!r}"[:300])
    return tuple(value)

