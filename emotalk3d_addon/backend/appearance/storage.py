"""The appearance part of a subject bundle (the manifest's optional "appearance" section).

Files:
    canonical.ply            the canonical Gaussians (face first, then head completion, then
                             the rigid parts) as a standard 3DGS PLY, so other splat tools open them
    appearance.safetensors   otf.nearest (No,) int64, otf.distance (No,) float32 metres,
                             g2a.* the G2ANet weights; with rigid parts, rigid.part (Nr,) int64
                             and rigid.anchor.<name> (A,) int64 template-vertex indices; with
                             the 3D smoothing filter, smoothing.std (Nf + No + Nr,) float32
                             metres (``smoothing.py``; bundles without it render unfiltered)
Manifest section:
    {"canonical": "canonical.ply", "file": "appearance.safetensors", "num_face": Nf,
     "num_otf": No, "sh_degree": d, "g2a": {G2AConfig}, "view": {"target": [x, y, z],
     "distance": metres, "fov_x_deg": degrees, "width": px, "height": px},
     "num_rigid": Nr, "rigid_parts": [names],       (optional: 0 and [])
     "raster_mode": "classic" | "antialiased"}      (optional: classic)
``view`` is the default camera (from the training cameras) that ``render --view`` orbits;
``raster_mode`` is the rasteriser mode the head was trained with, and so must be drawn with
(``raster.projection``).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import InputError
from .binding import FaceBinding
from .completion import OTFBinding
from .dynamic import AnimatedHead
from .g2anet import G2AConfig, G2ANet
from .ply import read_ply, write_ply
from ..raster.projection import RASTER_MODES
from .rigid import RigidBinding

CANONICAL_PLY = "canonical.ply"
APPEARANCE_FILE = "appearance.safetensors"
SMOOTHING_KEY = "smoothing.std"


def write_appearance(head: AnimatedHead, folder: Path) -> None:
    """Write canonical.ply and appearance.safetensors into a bundle folder."""
    write_ply(head.canonical.detach(), folder / CANONICAL_PLY)
    tensors = {"otf.nearest": head.otf.nearest.to("cpu", torch.int64).contiguous(),
               "otf.distance": head.otf.distance.to("cpu", torch.float32).contiguous()}
    if head.rigid.num or head.rigid.names:
        tensors |= head.rigid.state_dict()
    if head.smoothing is not None:
        tensors[SMOOTHING_KEY] = head.smoothing.detach().to("cpu", torch.float32).contiguous()
    tensors |= {f"g2a.{k}": v.detach().to("cpu", torch.float32).contiguous().clone()
                for k, v in head.net.state_dict().items()}
    save_file(tensors, str(folder / APPEARANCE_FILE))


def appearance_section(head: AnimatedHead, view: dict) -> dict:
    """The manifest section describing ``head`` (file names, counts, G2ANet config, view)."""
    section = {"canonical": CANONICAL_PLY, "file": APPEARANCE_FILE, "num_face": head.binding.num,
               "num_otf": head.otf.num, "sh_degree": head.canonical.sh_degree,
               "g2a": head.net.config.to_dict(), "view": dict(view)}
    if head.rigid.num or head.rigid.names:
        section |= {"num_rigid": head.rigid.num, "rigid_parts": list(head.rigid.names)}
    if head.raster_mode != "classic":
        section["raster_mode"] = head.raster_mode
    return section


def _finite_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def check_view(view: Any) -> list[str]:
    """Defects of the section's default camera."""
    if not isinstance(view, dict):
        return ["appearance.view must be an object"]
    out = []
    target = view.get("target")
    if not (isinstance(target, list) and len(target) == 3 and all(_finite_number(v) for v in target)):
        out.append("appearance.view.target must be a list of 3 numbers (metres)")
    for key, lo, hi in (("distance", 1e-3, 1e3), ("fov_x_deg", 1.0, 170.0)):
        if not (_finite_number(view.get(key)) and lo <= view[key] <= hi):
            out.append(f"appearance.view.{key} must be a number in [{lo:g}, {hi:g}]")
    for key in ("width", "height"):
        if not (isinstance(view.get(key), int) and not isinstance(view.get(key), bool) and 1 <= view[key] <= 16384):
            out.append(f"appearance.view.{key} must be an integer in [1, 16384]")
    return out


def load_appearance(section: Any, ply_path: Path | None, tensor_path: Path | None,
                    geometry) -> tuple[list[str], AnimatedHead | None]:
    """Check and load the appearance part; (defects, head). Never raises for bad data."""
    if not isinstance(section, dict):
        return ["appearance must be an object"], None
    defects: list[str] = []
    nf, no, degree = section.get("num_face"), section.get("num_otf"), section.get("sh_degree")
    nr = section.get("num_rigid", 0)
    for key, value in (("num_face", nf), ("num_otf", no), ("sh_degree", degree), ("num_rigid", nr)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            defects.append(f"appearance.{key} must be a non-negative integer")
    defects += check_view(section.get("view"))
    raster_mode = section.get("raster_mode", "classic")
    if raster_mode not in RASTER_MODES:
        defects.append(f"appearance.raster_mode must be one of {', '.join(RASTER_MODES)}, got {raster_mode!r}")
    try:
        config = G2AConfig.from_dict(section.get("g2a"))
    except (TypeError, ValueError, AttributeError) as exc:
        defects.append(f"appearance.g2a is not a valid G2ANet config: {exc}")
        config = None
    if defects or ply_path is None or tensor_path is None:
        return defects, None
    if config.sh_degree != degree:
        defects.append(f"appearance.g2a.sh_degree {config.sh_degree} differs from appearance.sh_degree {degree}")
    binding = FaceBinding.from_geometry(geometry)
    if binding.num != nf:
        defects.append(f"appearance.num_face is {nf} but the geometry's upsampled face has {binding.num} vertices")
    try:
        canonical = read_ply(ply_path)
    except InputError as exc:
        return defects + [f"{ply_path.name}: {exc}"], None
    if canonical.num != nf + no + nr:
        defects.append(f"{ply_path.name} holds {canonical.num} Gaussians, the manifest says {nf} + {no}"
                       + (f" + {nr}" if nr else ""))
    if canonical.sh_degree != degree:
        defects.append(f"{ply_path.name} has SH degree {canonical.sh_degree}, the manifest says {degree}")
    try:
        with safe_open(str(tensor_path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # any malformed header: a defect, never a crash
        return defects + [f"{tensor_path.name}: not a valid safetensors file ({exc})"], None
    nearest, distance = tensors.pop("otf.nearest", None), tensors.pop("otf.distance", None)
    if nearest is None or nearest.shape != (no,) or nearest.dtype != torch.int64:
        defects.append(f"{tensor_path.name}: otf.nearest must be ({no},) int64")
    elif no and (int(nearest.min()) < 0 or int(nearest.max()) >= nf):
        defects.append(f"{tensor_path.name}: otf.nearest has indices outside [0, {nf})")
    if distance is None or distance.shape != (no,) or distance.dtype != torch.float32:
        defects.append(f"{tensor_path.name}: otf.distance must be ({no},) float32")
    elif not bool(torch.isfinite(distance).all()) or (no and float(distance.min()) < 0):
        defects.append(f"{tensor_path.name}: otf.distance must be finite and >= 0")
    smoothing = tensors.pop(SMOOTHING_KEY, None)
    total = nf + no + nr
    if smoothing is not None:
        if smoothing.shape != (total,) or smoothing.dtype != torch.float32:
            defects.append(f"{tensor_path.name}: {SMOOTHING_KEY} must be ({total},) float32")
        elif not bool(torch.isfinite(smoothing).all()) or (total and float(smoothing.min()) < 0):
            defects.append(f"{tensor_path.name}: {SMOOTHING_KEY} must be finite and >= 0 (metres)")
    rigid_defects, rigid = RigidBinding.from_state(section.get("rigid_parts", []), nr, tensors,
                                                   geometry.template, tensor_path.name)
    defects += rigid_defects
    state = {k[len("g2a."):]: v for k, v in tensors.items() if k.startswith("g2a.")}
    if len(state) != len(tensors):
        defects.append(f"{tensor_path.name}: unexpected tensors {sorted(set(tensors) - {'g2a.' + k for k in state})[:5]}")
    with torch.device("meta"):
        expected = {k: v.shape for k, v in G2ANet(config).state_dict().items()}
    if {k: v.shape for k, v in state.items()} != expected:
        defects.append(f"{tensor_path.name}: G2ANet weights do not match appearance.g2a")
    elif not all(bool(torch.isfinite(v).all()) for v in state.values()):
        defects.append(f"{tensor_path.name}: G2ANet weights contain NaN/Inf")
    if defects:
        return defects, None
    net = G2ANet(config)
    net.load_state_dict(state)
    head = AnimatedHead(canonical, binding, OTFBinding(nearest, distance), net.eval(), rigid, smoothing,
                        raster_mode)
    return [], head


def default_view(cameras: list[dict]) -> dict:
    """The default camera of ``render --view``: aimed where the training cameras look,
    at their mean distance and field of view. cameras: dicts with K, world_to_camera, width, height."""
    eyes, fovs = [], []
    for cam in cameras:
        w2c = np.asarray(cam["world_to_camera"], np.float64)
        eyes.append(-w2c[:3, :3].T @ w2c[:3, 3])
        fovs.append(math.degrees(2 * math.atan(cam["width"] / (2 * np.asarray(cam["K"])[0][0]))))
    eyes = np.asarray(eyes)
    # The point closest to every camera's optical axis (least squares).
    a, b = np.zeros((3, 3)), np.zeros(3)
    for cam, eye in zip(cameras, eyes):
        axis = np.asarray(cam["world_to_camera"], np.float64)[2, :3]
        p = np.eye(3) - np.outer(axis, axis)
        a += p
        b += p @ eye
    target = np.linalg.lstsq(a, b, rcond=None)[0]
    return {"target": [float(v) for v in target], "distance": float(np.linalg.norm(eyes - target, axis=1).mean()),
            "fov_x_deg": float(np.mean(fovs)), "width": int(cameras[0]["width"]),
            "height": int(cameras[0]["height"])}
