"""Limits on the models a subject bundle's configs may describe. Validation builds them on the
meta device; a hostile count of layers would take hours to build, and HuBERT allocates one
real (hidden_size,) tensor even there. The configs name their own bounds with these
(dataclass field metadata ``max`` / ``range``), and the bundle checks read them from there."""
from __future__ import annotations

MAX_MODEL_LAYERS = 256
MAX_ENCODER_HIDDEN = 16_384
MAX_EMOTION_WINDOW = 4_096      # frames (80 s at 50 Hz) per emotion-extractor attention window
