"""A performance as the subject's motion basis holds it: what Blender's shape keys show.

Blender stores a performance as one shape key per basis component (the template plus
that component) and keys their values with the coefficients, so every frame it shows is
``template + basis.expand(coefficients)``. That mix is the performance: the track
``emotalk3d predict`` writes, what renders, what the ARKit weights are solved from. S2GNet's
own vertices are only its input (projected onto the basis); their basis error says how much
of them the shape keys cannot show.
"""
from __future__ import annotations

import numpy as np

from ..geometry.basis import BasisError
from ..subject import Subject

MAX_ERROR_FRAMES = 600      # the reported basis error is measured on at most this many frames (evenly spread)
_EXPAND_BLOCK = 256         # frames expanded at a time into a caller's buffer


def project_track(subject: Subject, vertices: np.ndarray) -> np.ndarray:
    """(F, V, 3) float32 vertices in metres (subject space) -> (F, K) float32 coefficients."""
    return subject.basis.project(np.asarray(vertices, np.float32) - subject.geometry.template[None])


def shape_key_vertices(subject: Subject, coefficients: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """(F, K) coefficients -> (F, V, 3) float32 vertices in metres, the template plus the basis mix.
    ``out``: an (F, V, 3) float32 buffer to write into (a long track is gigabytes)."""
    c = np.asarray(coefficients)
    if out is None:
        out = subject.basis.expand(c)
        out += subject.geometry.template[None]
        return out
    if out.shape != (c.shape[0], subject.geometry.num_vertices, 3) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 of shape ({c.shape[0]}, {subject.geometry.num_vertices}, 3)")
    for r in range(0, c.shape[0], _EXPAND_BLOCK):
        block = subject.basis.expand(c[r:r + _EXPAND_BLOCK])
        block += subject.geometry.template[None]
        out[r:r + _EXPAND_BLOCK] = block
    return out


def error_sample(vertices: np.ndarray, max_frames: int = MAX_ERROR_FRAMES) -> np.ndarray:
    """At most ``max_frames`` evenly spread frames of (F, V, 3) vertices (a copy)."""
    vertices = np.asarray(vertices, np.float32)
    stride = max(1, -(-vertices.shape[0] // max_frames))
    return vertices[::stride].copy()


def basis_error(subject: Subject, vertices: np.ndarray, max_frames: int = MAX_ERROR_FRAMES) -> tuple[BasisError, int]:
    """The basis error (mm) of (F, V, 3) vertices, measured on at most ``max_frames`` evenly
    spread frames; returns (error, frames measured)."""
    vertices = np.asarray(vertices, np.float32)
    if vertices.shape[0] == 0:
        return BasisError(0.0, 0.0), 0
    sample = error_sample(vertices, max_frames) - subject.geometry.template[None]
    return subject.basis.reconstruction_error(sample), int(sample.shape[0])


def basis_vertices(subject: Subject, vertices: np.ndarray) -> tuple[np.ndarray, BasisError]:
    """(F, V, 3) vertices -> their basis reconstruction (F, V, 3) float32 and its error
    (a track ``predict`` wrote is its own reconstruction: error 0 up to rounding)."""
    error, _ = basis_error(subject, vertices, max_frames=max(1, len(vertices)))
    return shape_key_vertices(subject, project_track(subject, vertices)), error
