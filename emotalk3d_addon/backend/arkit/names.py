"""The 52 ARKit blendshape names, their orders, and matching them to an artist's shape keys.

Pure Python (no numpy, no torch): the Blender side imports it to map a character's keys.

``ARKIT_NAMES`` is Apple's order (ARFaceAnchor.BlendShapeLocation, grouped: left eye,
right eye, mouth and jaw, brows, cheeks, nose, tongue). Live Link Face writes its CSV
columns in ARKit's internal index order instead (``LIVE_LINK_ORDER``: JawRight before
JawLeft, MouthRight before MouthLeft), in PascalCase.

``match_shape_keys`` gives each ARKit name at most one of a character's keys;
``unused_keys`` says, in an artist's words, why each other key plays nothing (it differs
from the chosen one only in case, it means a name another key already plays, it is near an
ARKit name but not one, or it is no ARKit name at all).
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

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
_SIDED = {_key(n)[: -len(side)] for n in ARKIT_NAMES for side in ("left", "right") if _key(n).endswith(side)}


def _candidates(name: str) -> list[str]:
    """The name's key without its namespace, then without each leading export prefix in turn."""
    candidates = [_key(name.rsplit(":", 1)[-1].rsplit("|", 1)[-1])]
    while True:                              # "ARKit_blendShape.jawOpen": strip one prefix at a time
        key = candidates[-1]
        prefix = next((p for p in _PREFIXES if key.startswith(p) and len(key) > len(p)), None)
        if prefix is None:
            return candidates
        candidates.append(key[len(prefix):])


def arkit_name(name: str) -> str | None:
    """The ARKit name a shape-key name means, or None.

    Case and separators do not matter; a leading ``ARKit_``, ``blendShape.`` (and kin) or a
    namespace (``head:``, ``Face|``) is dropped; ``_L``/``.L``/``_l`` mean ``Left`` and
    ``_R``/``.R``/``_r`` mean ``Right``.
    """
    for key in _candidates(name):
        if key in _CANONICAL:
            return _CANONICAL[key]
        for short, side in _SIDE_SUFFIXES:
            if key.endswith(short) and key[: -len(short)] + side.lower() in _CANONICAL:
                return _CANONICAL[key[: -len(short)] + side.lower()]
    return None


def match_shape_keys(key_names: list[str]) -> dict[str, str | None]:
    """{ARKit name: the shape key that means it, or None} for a character's shape keys.

    Each key plays at most one name. An exact match beats one that differs only in case
    (``jawOpen`` beats ``JawOpen``), which beats a variant (``jaw_open``); among equals the
    first key wins. ``unused_keys`` says why each other key is left out.
    """
    found: dict[str, str | None] = {n: None for n in ARKIT_NAMES}
    for k in key_names:
        if k in found and found[k] is None:
            found[k] = k
    for k in key_names:
        canonical = _CANONICAL.get(k.lower())
        if canonical is not None and found[canonical] is None:
            found[canonical] = k
    used = {k for k in found.values() if k is not None}
    for k in key_names:
        meant = arkit_name(k)
        if meant is not None and found[meant] is None and k not in used:
            found[meant] = k
            used.add(k)
    return found


# why a shape key plays no ARKit name (``KeyNote.kind``); the bridge adds its own (reference, driven, muted)
CASE_DUPLICATE = "case_duplicate"    # differs only in case from the key that plays its name
DUPLICATE = "duplicate"              # means a name another key already plays
UNSET = "unset"                      # means a name the artist set by hand to no key (or to another one)
NEAR_MISS = "near_miss"              # close to an ARKit name, but not one
NO_MATCH = "no_match"                # not an ARKit name at all
NEAR_MISS_CUTOFF = 0.85              # difflib ratio above which a name reads as a misspelling


@dataclass(frozen=True)
class KeyNote:
    """A shape key the performance does not play (or cannot show), and why, in an artist's words."""

    key: str
    kind: str
    reason: str
    arkit: str | None = None         # the ARKit name it means or nearly means


def near_miss(name: str) -> tuple[str, str] | None:
    """(the ARKit name ``name`` nearly is, why it is not that name) or None.

    Catches one side of a name ARKit has no sides for (``jawOpen_L``), both sides in one key
    (``mouthSmile``), extra words (``jawOpenWide``) and misspellings (``mouthSmileLeftt``).
    """
    for key in _candidates(name):
        for short, side in _SIDE_SUFFIXES:
            base = key[: -len(short)]
            if key.endswith(short) and base in _CANONICAL:
                arkit = _CANONICAL[base]
                return arkit, (f"ARKit's {arkit} is one shape for both sides, so a {side.lower()}-side key "
                               "cannot play it (map it by hand to use it anyway)")
        if key in _SIDED:
            left, right = _CANONICAL[key + "left"], _CANONICAL[key + "right"]
            return left, (f"ARKit has a shape per side ({left}, {right}); one key for both sides cannot play "
                          "them (split it into a left and a right key, or map it by hand)")
        longest = max((c for c in _CANONICAL if key.startswith(c) and len(c) >= 6), key=len, default=None)
        if longest is not None:
            arkit = _CANONICAL[longest]
            return arkit, f"it starts with {arkit} but goes on; if it is that shape, rename it to {arkit} or map it by hand"
    for key in _candidates(name):
        close = difflib.get_close_matches(key, list(_CANONICAL), n=1, cutoff=NEAR_MISS_CUTOFF)
        if close:
            arkit = _CANONICAL[close[0]]
            return arkit, f"it is close to {arkit}: if it is misspelt, rename it to {arkit} or map it by hand"
    return None


def unused_keys(key_names: list[str], found: dict[str, str | None]) -> list[KeyNote]:
    """A note for each of ``key_names`` (in their order) that ``found`` ({ARKit name: key or
    None}, as ``match_shape_keys`` or the artist made it) gives no ARKit name."""
    used = {k for k in found.values() if k}
    notes: list[KeyNote] = []
    for k in key_names:
        if k in used:
            continue
        meant = arkit_name(k)
        player = found.get(meant) if meant is not None else None
        if meant is not None and player and player.lower() == k.lower():
            notes.append(KeyNote(k, CASE_DUPLICATE, f"'{k}' differs from '{player}' only in upper and lower case; "
                                 f"'{player}' plays {meant} (rename or delete one of them)", meant))
        elif meant is not None and player:
            notes.append(KeyNote(k, DUPLICATE, f"'{k}' also means {meant}, which '{player}' already plays "
                                 "(map it by hand to use it instead)", meant))
        elif meant is not None:
            notes.append(KeyNote(k, UNSET, f"'{k}' means {meant}, which the mapping leaves without a key", meant))
        elif (near := near_miss(k)) is not None:
            notes.append(KeyNote(k, NEAR_MISS, f"'{k}' is not an ARKit name: {near[1]}", near[0]))
        else:
            notes.append(KeyNote(k, NO_MATCH, f"'{k}' is not one of the 52 ARKit names (map it by hand if it plays one)"))
    return notes
