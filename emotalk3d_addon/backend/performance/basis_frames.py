"""A performance as the subject's motion basis holds it: what Blender's shape keys show.

Blender stores a performance as one shape key per basis component (the template plus
that component) and keys their values with the coefficients, so every frame it shows is
``template + basis.expand(coefficients)``. Everything that renders a predicted track
renders these vertices, with the basis error of the raw S2GNet vertices reported.
"""
from __future__ import annotations

import numpy as np

from ..geometry.basis import BasisError
from ..subject import Subject

MAX_ERROR_FRAMES = 600      # the reported basis error is measured on at most this many frames (evenly spread)


def project_track(subject: Subject, vertices: np.ndarray) -> np.ndarray:
    """(F, V, 3) float32 vertices in metres (subject space) -> (F, K) float32 coefficients."""
    return subject.basis.project(np.asarray(vertices, np.float32) - subject.geometry.template[None])


def shape_key_vertices(subject: Subject, coefficients: np.ndarray) -> np.ndarray:
    """(F, K) coefficients -> (F, V, 3) float32 vertices in metres, the template plus the basis mix."""
    out = subject.basis.expand(coefficients)
    out += subject.geometry.template[None]
    return out


def basis_error(subject: Subject, vertices: np.ndarray, max_frames: int = MAX_ERROR_FRAMES) -> tuple[BasisError, int]:
    """The basis error (mm) of (F, V, 3) vertices, measured on at most ``max_frames`` evenly
    spread frames; returns (error, frames measured)."""
    vertices = np.asarray(vertices, np.float32)
    if vertices.shape[0] == 0:
        return BasisError(0.0, 0.0), 0
    stride = max(1, -(-vertices.shape[0] // max_frames))
    sample = vertices[::stride] - subject.geometry.template[None]
    return subject.basis.reconstruction_error(sample), int(sample.shape[0])


def basis_vertices(subject: Subject, vertices: np.ndarray) -> tuple[np.ndarray, BasisError]:
    """(F, V, 3) vertices -> their basis reconstruction (F, V, 3) float32 and its error."""
    error, _ = basis_error(subject, vertices, max_frames=max(1, len(vertices)))
    return shape_key_vertices(subject, project_track(subject, vertices)), error
