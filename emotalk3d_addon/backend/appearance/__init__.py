"""Appearance: canonical Gaussians + PLY, face binding, head completion, G2ANet, fusion (SPEC 2.4-2.6).

Modules, one concept each: ``constants`` (the paper's mm constants), ``gaussians``
(GaussianSet), ``ply`` (3DGS PLY I/O), ``binding`` (face Gaussians on the upsampled
mesh), ``completion`` (OTF points, their motion and fusion weight), ``g2anet`` (G2ANet),
``dynamic`` (one fused frame).
"""
from .binding import FaceBinding
from .completion import (CompletionConfig, OTFBinding, bind_otf, fusion_weight, nearest_face_point,
                         otf_motion, sample_completion)
from .constants import ALPHA_PER_MM, D0_MM, DTH_MM, MM_PER_M, NUM_OTF_POINTS
from .dynamic import AnimatedHead, FrameGaussians, compose_frame, static_weights
from .g2anet import G2AConfig, G2ANet, motion_offsets
from .gaussians import GaussianSet
from .ply import read_ply, write_ply

__all__ = [
    "ALPHA_PER_MM", "D0_MM", "DTH_MM", "MM_PER_M", "NUM_OTF_POINTS",
    "AnimatedHead", "CompletionConfig", "FaceBinding", "FrameGaussians", "G2AConfig", "G2ANet",
    "GaussianSet", "OTFBinding", "bind_otf", "compose_frame", "fusion_weight", "motion_offsets",
    "nearest_face_point", "otf_motion", "read_ply", "sample_completion", "static_weights", "write_ply",
]
