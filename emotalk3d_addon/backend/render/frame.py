"""Geometry -> Appearance: the one frame renderer.

``render_head`` is the only path from a mesh frame to pixels. Training (with gradients),
``evaluate`` and ``FrameRenderer`` (Blender's engine through the worker, ``emotalk3d
render`` and the demo) all call it. Its output is the rasteriser's ``RasterOutput``:
rgb premultiplied (H, W, 3), alpha (H, W), depth (H, W) expected camera z in metres (0
where nothing), and the face matte in ``extra[..., 0]`` (the splatted dynamic share 1 - W).
Conversion to what a compositor or an image file expects (straight alpha, Blender's
background depth) happens only at the edge, in ``layers.frame_layers``.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from ..appearance.dynamic import AnimatedHead
from ..appearance.placement import apply_linear, split_object_matrix
from ..device import render_device
from ..emotions import condition
from ..errors import InputError
from ..raster import Camera, RasterOutput, rasterize
from ..subject import Subject


def emotion_input(weights: np.ndarray, intensity: float) -> torch.Tensor:
    """(8,) float32 G2ANet input: the emotion weights (8,) blended toward neutral by intensity."""
    return torch.from_numpy(condition(np.asarray(weights, np.float32).reshape(1, -1),
                                      np.array([intensity], np.float32))[0, :8])


def render_head(head: AnimatedHead, vertices: torch.Tensor, emotion: torch.Tensor, camera: Camera,
                object_to_world: np.ndarray | None = None, sh_degree: int | None = None,
                backend: str = "auto") -> RasterOutput:
    """One frame of the animated head: vertices (V, 3) metres in subject space, emotion (8,)
    (``emotion_input``), ``object_to_world`` (4, 4) placing the head in the camera's world
    (identity when None), ``sh_degree`` capped at the head's (training's warm-up). Drawn in the
    head's ``raster_mode``, the one it was trained in, by the rasteriser ``backend`` (``raster.rasterize``)."""
    frame = head.frame(vertices, emotion)
    means, quats, scales = frame.means, frame.quats, frame.scales
    if object_to_world is not None:
        try:
            placement = split_object_matrix(object_to_world)
        except ValueError as exc:
            raise InputError(f"the head object's transform cannot be rendered: {exc}") from None
        means, quats, scales = apply_linear(means, quats, scales, placement)
        w2c = camera.world_to_camera.double() @ torch.as_tensor(placement.rigid, dtype=torch.float64)
        camera = Camera(camera.K, w2c.to(camera.K.dtype), camera.width, camera.height, camera.near, camera.far)
    degree = frame.sh_degree if sh_degree is None else min(sh_degree, frame.sh_degree)
    return rasterize(means, quats, scales, frame.opacities, frame.sh[:, : (degree + 1) ** 2],
                     camera.to(means.device), sh_degree=degree, extra=frame.matte[:, None], mode=head.raster_mode,
                     backend=backend)


class FrameRenderer:
    """A subject's head on one device, rendering frames from numpy inputs (inference only).

    The subject is not changed: the renderer keeps its own copy of the Gaussians and
    G2ANet on ``device``: CUDA or the CPU (an Apple GPU, "mps", draws on the CPU: the
    rasteriser has no Metal backend; ``device.render_device``).
    """

    def __init__(self, subject: Subject, device: torch.device | str = "cpu"):
        if subject.appearance is None:
            raise InputError(f"subject {subject.name!r} has no appearance (Gaussians); "
                             "train one with `emotalk3d train`")
        self.device = render_device(torch.device(device))
        self.head = subject.appearance.to(self.device)
        self.num_vertices = subject.geometry.num_vertices
        self.view_defaults = dict(subject.manifest["appearance"]["view"])

    @torch.inference_mode()
    def render(self, vertices: np.ndarray, weights: np.ndarray, intensity: float, camera: Camera,
               object_to_world: np.ndarray | None = None, timings: dict[str, float] | None = None) -> RasterOutput:
        """``render_head`` for vertices (V, 3) metres in subject space, weights (8,) emotion,
        intensity in [0, 1]. ``timings`` (if given) receives seconds for "raster" (G2ANet,
        fusion and rasterisation, the device synchronised)."""
        vertices = np.asarray(vertices, np.float32)
        if vertices.shape != (self.num_vertices, 3):
            raise InputError(f"the head mesh has {vertices.shape[0] if vertices.ndim == 2 else '?'} vertices, "
                             f"the subject {self.num_vertices}: a modifier or an edit changed its vertex count")
        if not np.isfinite(vertices).all():
            raise InputError("the head mesh has NaN or infinite vertex positions")
        clock = time.perf_counter()
        out = render_head(self.head, torch.from_numpy(vertices).to(self.device),
                          emotion_input(weights, intensity).to(self.device), camera, object_to_world)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        if timings is not None:
            timings["raster"] = time.perf_counter() - clock
        return out

