"""Typed messages of the worker protocol, shared by the worker and the Blender side.

Requests: ``PerformRequest`` and ``RenderFrameRequest`` with their parts (``EmotionSpec`` and
its ``EmotionKey`` list, ``CameraSpec``). Replies: ``PerformReply`` (with the
``SubjectSummary`` that ``load_subject`` also returns) and ``RenderFrameReply``; arrays
travel as paths of ``.npy`` files. ``to_dict`` gives the wire form (JSON), ``from_dict``
validates it (``InputError`` naming the field; a reply that fails is a protocol bug). ``parse_keys`` is the one parser of
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
    rows = value if isinstance(value, (list, tuple)) else None
    if rows and all(isinstance(r, (list, tuple)) for r in rows):       # a matrix of equal rows
        if len({len(r) for r in rows}) == 1:
            flat = [x for r in rows for x in r]
    elif rows is not None:
        flat = list(rows)
    if not isinstance(value, (list, tuple)) or len(flat) != count or \
            any(isinstance(x, (list, tuple)) for x in flat):
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
    arkit_neutral: bool = False       # also the clip's ARKit weights performed neutral (arrays["arkit_neutral"])

    def to_dict(self) -> dict:
        return {"subject": self.subject, "audio": self.audio, "fps": list(self.fps) if isinstance(self.fps, tuple) else self.fps,
                "emotion": self.emotion.to_dict(), "library": list(self.library), "device": self.device,
                "encoder": self.encoder, "cache_mb": self.cache_mb, "return_vertices": self.return_vertices,
                "debug_delay": self.debug_delay, "arkit_neutral": self.arkit_neutral,
                **({"out_dir": self.out_dir} if self.out_dir else {})}

    @classmethod
    def from_dict(cls, data: dict) -> "PerformRequest":
        data = _fields(data, "a perform request", ())
        fps = data.get("fps", 30)
        if isinstance(fps, (list, tuple)) and len(fps) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                                   for v in fps) and fps[0] > 0 and fps[1] > 0:
            rate: tuple[int, int] | float = (int(fps[0]), int(fps[1]))
        elif isinstance(fps, (int, float)) and not isinstance(fps, bool) and math.isfinite(fps) and fps > 0:
            rate = float(fps)
        else:
            raise InputError(f"fps must be [numerator, denominator] or a positive number, got {fps!r}")
        cache_mb = _number(data.get("cache_mb", 512), "cache_mb")
        if cache_mb < 0:
            raise InputError(f"cache_mb must be a non-negative number, got {cache_mb!r}")
        return cls(str(data.get("subject", "")), str(data.get("audio", "")), rate,
                   EmotionSpec.from_dict(data.get("emotion")), parse_library(data.get("library")),
                   str(data.get("device") or "auto"), str(data.get("encoder") or ""), int(cache_mb),
                   bool(data.get("return_vertices")), float(_number(data.get("debug_delay", 0) or 0, "debug_delay")),
                   str(data.get("out_dir") or ""), bool(data.get("arkit_neutral")))


@dataclass(frozen=True)
class RenderFrameRequest:
    """``render_frame``: one frame of ``subject``'s head, its passes written into the
    ``passes`` buffer (``backend/io/passes_buffer.py``: a mapped file the caller made for
    the camera's size). ``vertices``: a .npy (V, 3) float32 in subject space, metres (the
    template when empty); ``object_to_world``: 16 numbers, row-major; ``emotion``: 8
    weights; ``rows`` "bottom_up" for Blender; ``colors`` "linear" (sRGB decoded to linear
    light) or "srgb"."""

    subject: str
    camera: CameraSpec
    passes: str
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
        out = {"subject": self.subject, "camera": self.camera.to_dict(), "passes": self.passes, "vertices": self.vertices,
               "emotion": list(self.emotion), "intensity": self.intensity, "library": list(self.library),
               "device": self.device, "rows": self.rows, "colors": self.colors}
        if self.object_to_world is not None:
            out["object_to_world"] = list(self.object_to_world)
        if self.out_dir:
            out["out_dir"] = self.out_dir
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "RenderFrameRequest":
        data = _fields(data, "a render_frame request", ())
        camera = data.get("camera")
        if camera is None:
            raise InputError("render_frame needs a camera {K, world_to_camera, width, height}")
        passes = data.get("passes")
        if not isinstance(passes, str) or not passes:
            raise InputError("render_frame needs passes: the path of a passes buffer for the camera's size")
        matrix = data.get("object_to_world")
        emotion = data.get("emotion", list(cls.emotion))
        rows, colors = str(data.get("rows") or "top_down"), str(data.get("colors") or "srgb")
        if rows not in ("top_down", "bottom_up") or colors not in ("srgb", "linear"):
            raise InputError(f"rows must be top_down or bottom_up and colors srgb or linear, got {rows!r}, {colors!r}")
        return cls(str(data.get("subject", "")), CameraSpec.from_dict(camera), passes, str(data.get("vertices") or ""),
                   None if matrix is None else _numbers(matrix, 16, "object_to_world"),
                   _numbers(emotion, 8, "the emotion weights"),
                   intensity_value(data.get("intensity", 0.0), "the intensity"), parse_library(data.get("library")),
                   str(data.get("device") or "auto"), rows, colors, str(data.get("out_dir") or ""))


def parse_library(value: Any) -> tuple[str, ...]:
    """Library folders from a request (a list of paths; none when absent)."""
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise InputError(f"library must be a list of folder paths, got {value!r}"[:300])
    return tuple(value)



def _fields(data: Any, what: str, names: tuple[str, ...]) -> dict:
    if not isinstance(data, dict):
        raise InputError(f"{what} must be an object, got {type(data).__name__}")
    missing = [n for n in names if n not in data]
    if missing:
        raise InputError(f"{what} lacks {', '.join(missing)}")
    return data


def _paths(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InputError(f"{what} must map array names to .npy paths")
    return dict(value)


@dataclass(frozen=True)
class SubjectSummary:
    """A subject as the worker describes it; ``arrays``: template (V, 3) f32, triangles
    (T, 3) i32, uvs (V, 2) f32, components (K, V, 3) f32, as .npy paths."""

    name: str
    root: str
    fingerprint: str
    manifest: dict
    num_vertices: int
    num_triangles: int
    num_components: int
    arrays: dict[str, str]

    def to_dict(self) -> dict:
        return {"name": self.name, "root": self.root, "fingerprint": self.fingerprint, "manifest": self.manifest,
                "num_vertices": self.num_vertices, "num_triangles": self.num_triangles,
                "num_components": self.num_components, "arrays": dict(self.arrays)}

    @classmethod
    def from_dict(cls, data: Any) -> "SubjectSummary":
        d = _fields(data, "a subject summary", ("fingerprint", "num_vertices", "num_components", "arrays"))
        return cls(str(d.get("name", "")), str(d.get("root", "")), str(d["fingerprint"]), dict(d.get("manifest") or {}),
                   int(d["num_vertices"]), int(d.get("num_triangles", 0)), int(d["num_components"]),
                   _paths(d["arrays"], "a subject summary's arrays"))


@dataclass(frozen=True)
class PerformReply:
    """``perform``'s result. ``arrays``: coefficients (F, K) f32 (the basis projection of the
    S2GNet track), emotion (F, 8) f32, intensity (F,) f32, arkit (F, 52) f32 when the subject
    has ARKit shapes and, when asked, arkit_neutral (F, 52) f32 (the same clip performed
    neutral) and vertices (F, V, 3) f32. The basis error (mm) is measured on ``basis_error_frames`` evenly spread frames."""

    num_frames: int
    num_components: int
    fps: tuple[int, int]
    emotion_names: tuple[str, ...]
    basis_rms_mm: float
    basis_max_mm: float
    basis_error_frames: int
    features_cached: bool
    device: str
    warnings: tuple[str, ...]
    arrays: dict[str, str]
    subject: SubjectSummary
    timings: dict[str, float] = field(default_factory=dict)
    arkit_rms_mm: float | None = None     # the ARKit fit residual (arrays["arkit"] (F, 52) f32), if solved
    arkit_max_mm: float | None = None

    def to_dict(self) -> dict:
        return {"arkit_rms_mm": self.arkit_rms_mm, "arkit_max_mm": self.arkit_max_mm,
                "num_frames": self.num_frames, "num_components": self.num_components, "fps": list(self.fps),
                "emotion_names": list(self.emotion_names), "basis_rms_mm": self.basis_rms_mm,
                "basis_max_mm": self.basis_max_mm, "basis_error_frames": self.basis_error_frames,
                "features_cached": self.features_cached, "device": self.device, "warnings": list(self.warnings),
                "arrays": dict(self.arrays), "subject": self.subject.to_dict(), "timings": dict(self.timings)}

    @classmethod
    def from_dict(cls, data: Any) -> "PerformReply":
        d = _fields(data, "a perform reply", ("num_frames", "num_components", "fps", "arrays", "subject"))
        fps = d["fps"]
        return cls(int(d["num_frames"]), int(d["num_components"]), (int(fps[0]), int(fps[1])),
                   tuple(d.get("emotion_names") or EMOTIONS), float(d.get("basis_rms_mm", 0.0)),
                   float(d.get("basis_max_mm", 0.0)), int(d.get("basis_error_frames", 0)),
                   bool(d.get("features_cached")), str(d.get("device", "")), tuple(d.get("warnings") or ()),
                   _paths(d["arrays"], "a perform reply's arrays"), SubjectSummary.from_dict(d["subject"]),
                   {str(k): float(v) for k, v in (d.get("timings") or {}).items()},
                   None if d.get("arkit_rms_mm") is None else float(d["arkit_rms_mm"]),
                   None if d.get("arkit_max_mm") is None else float(d["arkit_max_mm"]))

    def info(self) -> dict:
        """The reply's figures without its arrays and subject (for reports)."""
        out = self.to_dict()
        del out["arrays"], out["subject"]
        return out


@dataclass(frozen=True)
class RenderFrameReply:
    """``render_frame``'s result: the ``passes`` buffer now holds combined (H, W, 4) f32
    straight RGBA, depth (H, W) f32 camera z in metres (``BACKGROUND_DEPTH`` where empty)
    and face_matte (H, W) f32."""

    passes: str
    width: int
    height: int
    device: str = ""
    warnings: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"passes": self.passes, "width": self.width, "height": self.height, "device": self.device,
                "warnings": list(self.warnings), "timings": dict(self.timings)}

    @classmethod
    def from_dict(cls, data: Any) -> "RenderFrameReply":
        d = _fields(data, "a render_frame reply", ("passes", "width", "height"))
        return cls(str(d["passes"]), int(d["width"]), int(d["height"]), str(d.get("device", "")),
                   tuple(d.get("warnings") or ()), {str(k): float(v) for k, v in (d.get("timings") or {}).items()})
