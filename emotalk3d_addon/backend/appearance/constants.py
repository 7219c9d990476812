"""The paper's appearance constants (SPEC 2.4-2.5), stated in its units.

EmoTalk3D gives its distances in millimetres; subject space is in metres. Every
conversion goes through ``MM_PER_M`` so the unit change is explicit at the call site.
"""
from __future__ import annotations

MM_PER_M: float = 1000.0
"""Millimetres per metre: ``d_mm = d_m * MM_PER_M``."""

ALPHA_PER_MM: float = 0.1
"""OTF motion decay rate alpha, per millimetre: ``delta_otf = delta_f * exp(-alpha * d_mm)``."""

D0_MM: float = 5.0
"""Fusion weight W_p: fully dynamic (W = 0) closer than d0 to the face, millimetres."""

DTH_MM: float = 10.0
"""Fusion weight W_p: linear 0 -> 1 over d_th beyond d0, millimetres."""

NUM_OTF_POINTS: int = 85_500
"""Head-completion ("outside the face") points added around the head (paper's count)."""
