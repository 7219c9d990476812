"""The checks of the files a manifest names, for ``_FolderChecker`` as a mixin:
safetensors files (names, shapes, dtypes, finite values), the bundled HuBERT encoder
(config.json + weights) and the optional appearance section."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..appearance.storage import load_appearance
from ..arkit.names import ARKIT_NAMES
from ..speech.encoder import hubert_state_name
from .format import (MANIFEST, MAX_ENCODER_HIDDEN, MAX_JSON_BYTES, MAX_MODEL_LAYERS, _FLOAT_DTYPES,
                     _first_line, _json_type, _listing, _within)
from .geometry import Geometry


class _FileChecks:
    """Mixin of ``_FolderChecker``: the tensor files, the bundled encoder, the appearance."""

    # ---- tensor files

    def read_tensors(self, path: Path, expected: dict[str, tuple[tuple, set[str]]] | None,
                     framework: str = "pt", keep: bool = True,
                     alias: Callable[[str], str] = lambda n: n) -> dict[str, Any] | None:
        """Check a safetensors file against ``expected`` (name -> (shape, dtypes); None in a
        shape matches any size; ``expected`` None: any names, float32 only) and read its
        tensors: every float tensor must be finite. Returns the tensors read (when ``keep``),
        or None when the file cannot be parsed."""
        from safetensors import safe_open

        rel = path.relative_to(self.root).as_posix()
        try:
            handle = safe_open(str(path), framework=framework)
        except Exception as exc:  # SafetensorError, OSError, ...: never anything executed
            self.add(f"{rel}: not a safetensors file ({_first_line(exc)})")
            return None
        out: dict[str, Any] = {}
        with handle as f:
            names = list(f.keys())
            if expected is not None:
                present = {alias(n) for n in names}
                missing = [n for n in expected if n not in present]
                unexpected = [n for n in names if alias(n) not in expected]
                if missing:
                    self.add(f"{rel}: missing tensor(s) {_listing(missing)}")
                if unexpected:
                    self.add(f"{rel}: unexpected tensor(s) {_listing(unexpected)}")
            for name in names:
                want = ((None,), {"F32"}) if expected is None else expected.get(alias(name))
                if want is None:
                    continue
                shape_want, dtypes = want
                try:
                    sl = f.get_slice(name)
                    shape, dtype = tuple(sl.get_shape()), sl.get_dtype()
                except Exception as exc:
                    self.add(f"{rel}: tensor {name!r} cannot be read ({_first_line(exc)})")
                    continue
                if dtype not in dtypes:
                    self.add(f"{rel}: tensor {name!r} has dtype {dtype}, expected {'/'.join(sorted(dtypes))}")
                    continue
                if shape_want != (None,) and (len(shape) != len(shape_want) or any(
                        w is not None and s != w for s, w in zip(shape, shape_want))):
                    self.add(f"{rel}: tensor {name!r} has shape {list(shape)}, expected "
                             f"{['*' if w is None else w for w in shape_want]}")
                    continue
                try:
                    tensor = f.get_tensor(name)
                except Exception as exc:
                    self.add(f"{rel}: tensor {name!r} cannot be read ({_first_line(exc)})")
                    continue
                if dtype in _FLOAT_DTYPES:
                    finite = _all_finite(tensor)
                    if not finite:
                        self.add(f"{rel}: tensor {name!r} contains NaN or Inf")
                        continue
                if keep:
                    out[alias(name)] = tensor.clone() if isinstance(tensor, torch.Tensor) else np.array(tensor)
        return out

    def check_geometry_file(self, path: Path) -> None:
        V, T = self.V, self.T
        expected = {"template_vertices": ((V, 3), {"F32"}), "triangles": ((T, 3), {"I32"}),
                    "uvs": ((V, 2), {"F32"}), "face_mask": ((V,), {"U8"})}
        got = self.read_tensors(path, expected, framework="np")
        if got is None:
            return
        rel = path.relative_to(self.root).as_posix()
        n = V if V is not None else next((a.shape[0] for k, a in got.items() if k != "triangles"), None)
        tri = got.get("triangles")
        if tri is not None and n is not None and tri.size and (tri.min() < 0 or tri.max() >= n):
            self.add(f"{rel}: triangles index vertices outside [0, {n}) "
                     f"(found indices from {int(tri.min())} to {int(tri.max())})")
        uvs = got.get("uvs")
        if uvs is not None and uvs.size and (uvs.min() < 0 or uvs.max() > 1):
            self.add(f"{rel}: uvs must lie in [0, 1], found values from {float(uvs.min()):g} to {float(uvs.max()):g}")
        mask = got.get("face_mask")
        if mask is not None:
            if not np.isin(mask, (0, 1)).all():
                self.add(f"{rel}: face_mask must hold only 0 and 1, found {sorted(set(np.unique(mask).tolist()))[:8]}")
            elif not mask.any():
                self.add(f"{rel}: face_mask is empty (selects no vertex)")
        self.tensors["geometry"] = got

    def check_basis_file(self, path: Path) -> None:
        got = self.read_tensors(path, {"components": ((None, self.V, 3), {"F32"})}, framework="np")
        if got is None:
            return
        comps = got.get("components")
        if comps is not None and self.K is not None and comps.shape[0] != self.K:
            rel = path.relative_to(self.root).as_posix()
            self.add(f"{rel}: components holds {comps.shape[0]} components, "
                     f"basis.num_components in {MANIFEST} says {self.K}")
        self.tensors["basis"] = got

    def check_arkit_file(self, path: Path) -> None:
        """arkit.safetensors: shapes (52, V, 3) float32, present (52,) uint8 0/1; an absent shape
        is all zero and the manifest's ``arkit.absent`` lists exactly the absent ones."""
        got = self.read_tensors(path, {"shapes": ((len(ARKIT_NAMES), self.V, 3), {"F32"}),
                                       "present": ((len(ARKIT_NAMES),), {"U8"})}, framework="np")
        if got is None or "shapes" not in got or "present" not in got:
            return
        rel = path.relative_to(self.root).as_posix()
        present = got["present"]
        if not np.isin(present, (0, 1)).all():
            self.add(f"{rel}: present must hold only 0 and 1")
            return
        faked = [n for n, p, s in zip(ARKIT_NAMES, present, got["shapes"]) if not p and np.abs(s).max() > 0]
        if faked:
            self.add(f"{rel}: absent ARKit shape(s) {_listing(faked)} must be all zero")
        absent = {n for n, p in zip(ARKIT_NAMES, present) if not p}
        listed = self.arkit_absent
        if listed is not None and listed != absent:
            self.add(f"{MANIFEST}: arkit.absent does not match {rel}'s present flags "
                     f"(differ in {_listing(sorted(listed ^ absent))})")
        self.tensors["arkit"] = got

    def check_model_file(self, path: Path, key: str, config: Any, build: Callable[[Any], torch.nn.Module]) -> None:
        expected = None
        if config is not None:
            try:
                with torch.device("meta"):
                    module = build(config)
                expected = {k: (tuple(v.shape), {"F32"}) for k, v in module.state_dict().items()}
            except Exception as exc:
                self.add(f"{MANIFEST}: {key}.config does not build a model: {_first_line(exc)}")
        got = self.read_tensors(path, expected, framework="pt")
        if got is not None:
            self.tensors[key] = got

    def check_encoder(self, folder: Path) -> None:
        rel = folder.relative_to(self.root).as_posix()
        cfg_path, weights = folder / "config.json", folder / "model.safetensors"
        config = None
        for p in (cfg_path, weights):
            if not p.is_file():
                self.add(f"{rel}/{p.name}: missing (the bundled speech encoder needs "
                         f"config.json and model.safetensors)")
            elif not _within(p.resolve(), self.root):
                return  # reported as a symbolic link out
        if cfg_path.is_file():
            config = self.read_encoder_config(cfg_path, f"{rel}/config.json")
        if not weights.is_file():
            return
        expected = None
        if config is not None:
            from transformers import HubertModel

            try:
                with torch.device("meta"):
                    model = HubertModel(config)
                expected = {k: (tuple(v.shape), {"F32", "F16", "BF16"}) for k, v in model.state_dict().items()}
            except Exception as exc:
                self.add(f"{rel}/config.json: does not build a HuBERT model: {_first_line(exc)}")
        if expected is None:
            self.read_tensors(weights, None, keep=False)  # still report unreadable / non-finite
            return
        self.read_tensors(weights, expected, keep=False, alias=hubert_state_name)

    def read_encoder_config(self, path: Path, rel: str) -> Any:
        try:
            if path.stat().st_size > MAX_JSON_BYTES:
                self.add(f"{rel}: too large")
                return None
            data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant,
                              parse_float=_finite_float)
        except (ValueError, OSError, RecursionError) as exc:
            self.add(f"{rel}: not valid JSON ({_first_line(exc)})")
            return None
        if not isinstance(data, dict):
            self.add(f"{rel}: the top level must be a JSON object, got {_json_type(data)}")
            return None
        if data.get("model_type") != "hubert":
            self.add(f"{rel}: model_type must be 'hubert', got {data.get('model_type')!r}")
            return None
        hidden = data.get("hidden_size")
        if not isinstance(hidden, int) or isinstance(hidden, bool) or hidden < 1:
            self.add(f"{rel}: hidden_size must be a positive integer, got {hidden!r}")
            return None
        if hidden > MAX_ENCODER_HIDDEN:
            self.add(f"{rel}: hidden_size must be at most {MAX_ENCODER_HIDDEN}, got {hidden}")
            return None
        layers, convs = data.get("num_hidden_layers", 12), data.get("conv_dim", ())
        if isinstance(layers, int) and layers > MAX_MODEL_LAYERS:
            self.add(f"{rel}: num_hidden_layers must be at most {MAX_MODEL_LAYERS}, got {layers}")
            return None
        if isinstance(convs, (list, tuple)) and len(convs) > MAX_MODEL_LAYERS:
            self.add(f"{rel}: conv_dim must list at most {MAX_MODEL_LAYERS} layers, got {len(convs)}")
            return None
        from transformers import HubertConfig

        try:
            config = HubertConfig(**data)
        except Exception as exc:
            self.add(f"{rel}: not a valid HubertConfig: {_first_line(exc)}")
            return None
        self.encoder_hidden = hidden
        return config

    def check_appearance(self, section: Any) -> None:
        """The optional appearance section (canonical Gaussians, bindings, G2ANet)."""
        geo = self.tensors.get("geometry")
        if not isinstance(section, dict):
            self.add(f"{MANIFEST}: appearance must be an object, got {_json_type(section)}")
            return
        ply = self.file(self.get(section, "appearance.canonical", "string"), "appearance.canonical")
        tensors = self.file(self.get(section, "appearance.file", "string"), "appearance.file")
        if geo is None:
            return   # the geometry must be readable before the appearance can be checked against it
        try:
            geometry = Geometry(template=geo["template_vertices"], triangles=geo["triangles"].astype(np.int64),
                                uvs=geo["uvs"], face_mask=geo["face_mask"].astype(bool))
            defects, self.appearance = load_appearance(section, ply, tensors, geometry)
        except Exception as exc:  # a broken geometry already has its own defect
            defects = [f"appearance: cannot be checked against the geometry ({_first_line(exc)})"]
        for d in defects:
            self.add(d)


def _all_finite(tensor: Any) -> bool:
    """True when a float array or tensor holds no NaN or Inf. numpy scans it where it can:
    one pass on one core, measured faster here than PyTorch's threaded kernel."""
    if isinstance(tensor, torch.Tensor):
        if tensor.dtype == torch.bfloat16:     # numpy has no bfloat16
            return bool(torch.isfinite(tensor).all())
        tensor = tensor.numpy()
    return bool(np.isfinite(tensor).all())


def _no_constant(name: str) -> Any:
    """json ``parse_constant``: NaN and Infinity are not JSON and have no place in a config."""
    raise ValueError(f"{name} is not allowed")


def _finite_float(text: str) -> float:
    """json ``parse_float`` refusing numbers that overflow to infinity (e.g. 1e999)."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value
