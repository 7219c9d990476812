"""The per-section manifest checks of ``_FolderChecker`` (geometry, basis, s2g, emotion
extractor, speech encoder, ARKit shapes), as a mixin: each reads ``self.manifest``'s section through
``self.get`` / ``self.file`` and keeps what later checks need (V, T, K, the configs)."""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

from ..arkit.names import ARKIT_NAMES
from ..emotions import CONDITION_DIM
from ..geometry.s2gnet import S2GConfig
from ..speech.emotion import EmotionConfig
from ..speech.encoder import EncoderSpec
from .format import (MANIFEST, MAX_EMOTION_WINDOW, REQUIRED_LANDMARKS, _first_line,
                     _json_type, _listing)


class _SectionChecks:
    """Mixin of ``_FolderChecker``: the manifest's sections."""

    def check_geometry_section(self, m: dict) -> Path | None:
        geo = self.get(m, "geometry", "object")
        if geo is None:
            return None
        path = self.file(self.get(geo, "geometry.file", "string"), "geometry.file")
        v = self.get(geo, "geometry.num_vertices", "integer")
        if v is not None:
            if v < 3:
                self.add(f"{MANIFEST}: geometry.num_vertices must be at least 3, got {v}")
            else:
                self.V = v
        t = self.get(geo, "geometry.num_triangles", "integer")
        if t is not None:
            if t < 1:
                self.add(f"{MANIFEST}: geometry.num_triangles must be at least 1, got {t}")
            else:
                self.T = t
        marks = self.get(geo, "geometry.landmarks", "object")
        if marks is not None:
            missing = [n for n in REQUIRED_LANDMARKS if n not in marks]
            if missing:
                self.add(f"{MANIFEST}: geometry.landmarks lacks required landmark(s) {_listing(missing)}")
            for key, index in marks.items():
                if not isinstance(index, int) or isinstance(index, bool):
                    self.add(f"{MANIFEST}: geometry.landmarks.{key} must be an integer vertex index, "
                             f"got {_json_type(index)}")
                elif self.V is not None and not 0 <= index < self.V:
                    self.add(f"{MANIFEST}: geometry.landmarks.{key} = {index} is not a vertex index "
                             f"in [0, {self.V})")
                else:
                    self.landmarks[key] = index
        return path

    def check_basis_section(self, m: dict) -> Path | None:
        basis = self.get(m, "basis", "object")
        if basis is None:
            return None
        path = self.file(self.get(basis, "basis.file", "string"), "basis.file")
        k = self.get(basis, "basis.num_components", "integer")
        if k is not None:
            if k < 1:
                self.add(f"{MANIFEST}: basis.num_components must be at least 1, got {k}")
            else:
                self.K = k
        for key in ("rms_mm", "max_mm"):
            value = self.get(basis, f"basis.{key}", "number")
            if value is not None and value < 0:
                self.add(f"{MANIFEST}: basis.{key} must not be negative, got {value!r}")
        return path

    def check_arkit_section(self, m: dict) -> Path | None:
        """The optional ``arkit`` section: {file, names (Apple's 52, in order), absent}."""
        if "arkit" not in m:
            return None
        arkit = self.get(m, "arkit", "object")
        if arkit is None:
            return None
        path = self.file(self.get(arkit, "arkit.file", "string"), "arkit.file")
        names = self.get(arkit, "arkit.names", "array")
        if names is not None and list(names) != list(ARKIT_NAMES):
            self.add(f"{MANIFEST}: arkit.names must list Apple's 52 ARKit names in Apple's order "
                     f"(eyeBlinkLeft ... tongueOut)")
        absent = self.get(arkit, "arkit.absent", "array")
        if absent is not None:
            unknown = [a for a in absent if a not in ARKIT_NAMES]
            if unknown:
                self.add(f"{MANIFEST}: arkit.absent names unknown ARKit shape(s) {_listing([str(u) for u in unknown])}")
            else:
                self.arkit_absent = set(absent)
        return path

    def check_config(self, cls: type, data: dict, key: str) -> Any:
        """A config dataclass from a manifest object; None (and defects) when it does not fit."""
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        ok = True
        unknown = [k for k in data if k not in fields]
        if unknown:
            self.add(f"{MANIFEST}: {key} has unknown field(s) {_listing(unknown)}")
            ok = False
        for name, f in fields.items():
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if name not in data:
                if required:
                    self.add(f"{MANIFEST}: missing key '{key}.{name}'")
                    ok = False
                continue
            value, hint = data[name], hints[name]
            kind = {int: "integer", float: "number", bool: "boolean", str: "string"}.get(hint)
            if kind is None:  # pragma: no cover - configs only hold scalars
                continue
            if self.get(data, f"{key}.{name}", kind) is None:
                ok = False
                continue
            limit, span = f.metadata.get("max"), f.metadata.get("range")       # the config's own bounds
            if kind == "integer" and value < 1:
                self.add(f"{MANIFEST}: {key}.{name} must be a positive integer, got {value}")
                ok = False
            elif kind == "integer" and limit is not None and value > limit:
                self.add(f"{MANIFEST}: {key}.{name} must be at most {limit}, got {value}")
                ok = False
            if kind == "number" and span is not None and not span[0] <= value < span[1]:
                self.add(f"{MANIFEST}: {key}.{name} must be in [{span[0]:g}, {span[1]:g}), got {value!r}")
                ok = False
        if not ok:
            return None
        try:
            return cls.from_dict(dict(data))
        except Exception as exc:
            self.add(f"{MANIFEST}: {key} is not a valid {cls.__name__}: {_first_line(exc)}")
            return None

    def check_s2g_section(self, m: dict) -> Path | None:
        s2g = self.get(m, "s2g", "object")
        if s2g is None:
            return None
        path = self.file(self.get(s2g, "s2g.file", "string"), "s2g.file")
        data = self.get(s2g, "s2g.config", "object")
        if data is not None:
            cfg = self.check_config(S2GConfig, data, "s2g.config")
            if cfg is not None and cfg.condition_dim != CONDITION_DIM:
                self.add(f"{MANIFEST}: s2g.config.condition_dim must be {CONDITION_DIM} "
                         f"(8 emotion weights + intensity), got {cfg.condition_dim}")
                cfg = None
            self.s2g_config = cfg
        return path

    def check_emotion_section(self, m: dict) -> Path | None:
        section = self.get(m, "emotion_extractor", "object")
        if section is None:
            return None
        path = self.file(self.get(section, "emotion_extractor.file", "string"), "emotion_extractor.file")
        data = self.get(section, "emotion_extractor.config", "object")
        if data is not None:
            cfg = self.check_config(EmotionConfig, data, "emotion_extractor.config")
            if cfg is not None and not 2 <= cfg.window <= MAX_EMOTION_WINDOW:
                self.add(f"{MANIFEST}: emotion_extractor.config.window must be 2..{MAX_EMOTION_WINDOW} frames "
                         f"(attention memory grows with its square), got {cfg.window}")
                cfg = None
            self.emotion_config = cfg
        return path

    def check_encoder_section(self, m: dict) -> Path | None:
        enc = self.get(m, "encoder", "object")
        if enc is None:
            return None
        kind = self.get(enc, "encoder.kind", "string")
        if kind == "pretrained":
            source = self.get(enc, "encoder.source", "string")
            if source is not None:
                if not source.strip():
                    self.add(f"{MANIFEST}: encoder.source must name a hub model or a folder")
                else:
                    self.encoder_spec = EncoderSpec("pretrained", source)
            return None
        if kind == "bundled":
            rel = self.get(enc, "encoder.path", "string")
            path = self.file(rel, "encoder.path", want_dir=True)
            if path is not None:
                self.encoder_spec = EncoderSpec("bundled", str(path))
            return path
        if kind == "whisper":
            self.check_whisper_section(enc)
            return None
        if kind is not None:
            self.add(f"{MANIFEST}: encoder.kind must be 'whisper', 'pretrained' or 'bundled', got {kind!r}")
        return None

    def check_whisper_section(self, enc: dict) -> None:
        """A Whisper encoder is named by model and pinned by the sha256 of its weights file."""
        from ..speech.whisper import KNOWN_WEIGHTS

        model = self.get(enc, "encoder.model", "string")
        digest = self.get(enc, "encoder.sha256", "string")
        if model is None or digest is None:
            return
        weights = KNOWN_WEIGHTS.get(model)
        if weights is None:
            self.add(f"{MANIFEST}: encoder.model {model[:40]!r} is not a Whisper model this backend knows "
                     f"({', '.join(KNOWN_WEIGHTS)})")
        elif digest != weights.sha256:
            self.add(f"{MANIFEST}: encoder.sha256 {digest[:16]!r}... is not the weights this backend pins for "
                     f"Whisper {model} ({weights.requirement}, {weights.sha256[:16]}...)")
        else:
            self.encoder_spec = EncoderSpec("whisper", model, digest)
            self.encoder_hidden = weights.d_model
