"""The 52 ARKit blendshape names, their orders, and matching them to an artist's shape keys.

Pure Python (no numpy, no torch): the Blender side imports it to map a character's keys.

``ARKIT_NAMES`` is Apple's order (ARFaceAnchor.BlendShapeLocation, grouped: left eye,
right eye, mouth and jaw, brows, cheeks, nose, tongue). Live Link Face writes its CSV
columns in ARKit's internal index order instead (``LIVE_LINK_ORDER``: JawRight before
JawLeft, MouthRight before MouthLeft), in PascalCase.
"""
from __future__ import annotations

import re

_EYE = ("eyeBlink{s}", "eyeLookDown{s}", "eyeLookIn{s}", "eyeLookOut{s}", "eyeLookUp{s}", "eyeSquint{s}", "eyeWide{s}")
ARKIT_NAMES: tuple[str, ...] = (
    *(n.format(s="Left") for n in _EYE), *(n.format(s="Right") for n in _EYE),
    "jawForward", "jawLeft", "jawRight", "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft",
    "mouthRight", "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight", "mouthDimpleLeft",
    "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight", "mouthRollLower", "mouthRollUpper",
    "mouthShrugLower", "mouthShrugUpper", "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft",
    "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft", "noseSneerRight", "tongueOut",
)
NUM_ARKIT = len(ARKIT_NAMES)
assert NUM_ARKIT == 52

LIVE_LINK_ORDER: tuple[str, ...] = tuple(
    n if n not in ("jawLeft", "jawRight", "mouthLeft", "mouthRight") else
    {"jawLeft": "jawRight", "jawRight": "jawLeft", "mouthLeft": "mouthRight", "mouthRight": "mouthLeft"}[n]
    for n in ARKIT_NAMES)
LIVE_LINK_EXTRA = ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
                   "RightEyeYaw", "RightEyePitch", "RightEyeRoll")

# what stands before the name in common exports (Ready Player Me, VRoid, Faceit, MetaHuman, Maya)
_PREFIXES = ("arkit", "blendshape1", "blendshape", "bs", "shapes", "facs")
_SIDE_SUFFIXES = (("left", "Left"), ("right", "Right"), ("l", "Left"), ("r", "Right"))


def _key(name: str) -> str:
    """Lower case with every separator removed: 'Mouth_Smile.L' -> 'mouthsmilel'."""
    return re.sub(r"[\s_.\-:|]+", "", name).lower()


_CANONICAL = {_key(n): n for n in ARKIT_NAMES}
_LOWER = {n.lower() for n in ARKIT_NAMES}


def arkit_name(name: str) -> str | None:
    """The ARKit name a shape-key name means, or None.

    Case and separators do not matter; a leading ``ARKit_``, ``blendShape.`` (and kin) or a
    namespace (``head:``, ``Face|``) is dropped; ``_L``/``.L``/``_l`` mean ``Left`` and
    ``_R``/``.R``/``_r`` mean ``Right``.
    """
    candidates = [_key(name.rsplit(":", 1)[-1].rsplit("|", 1)[-1])]
    while True:                              # "ARKit_blendShape.jawOpen": strip one prefix at a time
        key = candidates[-1]
        prefix = next((p for p in _PREFIXES if key.startswith(p) and len(key) > len(p)), None)
        if prefix is None:
            break
        candidates.append(key[len(prefix):])
    for key in candidates:
        if key in _CANONICAL:
            return _CANONICAL[key]
        for short, side in _SIDE_SUFFIXES:
            if key.endswith(short) and key[: -len(short)] + side.lower() in _CANONICAL:
                return _CANONICAL[key[: -len(short)] + side.lower()]
    return None


def match_shape_keys(key_names: list[str]) -> dict[str, str | None]:
    """{ARKit name: the shape key that means it, or None} for a character's shape keys.

    The first key that means a name wins; an exact (case-insensitive) match beats a variant.
    """
    found: dict[str, str | None] = {n: None for n in ARKIT_NAMES}
    exact: dict[str, str] = {}
    for k in key_names:
        if k.lower() in _LOWER:
            exact.setdefault(k.lower(), k)
    for name in ARKIT_NAMES:
        if name.lower() in exact:
            found[name] = exact[name.lower()]
    for k in key_names:
        meant = arkit_name(k)
        if meant is not None and found[meant] is None and k not in found.values():
            found[meant] = k
    return found
