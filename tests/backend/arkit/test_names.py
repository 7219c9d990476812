"""ARKit names: Apple's 52 in order, Live Link Face's column order, and matching a
character's shape-key names whatever their spelling."""
from __future__ import annotations

import pytest

from emotalk3d_addon.backend.arkit.names import ARKIT_NAMES, LIVE_LINK_ORDER, arkit_name, match_shape_keys


def test_the_52_names_in_apples_groups_and_live_links_order():
    assert len(ARKIT_NAMES) == len(set(ARKIT_NAMES)) == 52
    assert ARKIT_NAMES[:2] == ("eyeBlinkLeft", "eyeLookDownLeft") and ARKIT_NAMES[7] == "eyeBlinkRight"
    assert ARKIT_NAMES[14:18] == ("jawForward", "jawLeft", "jawRight", "jawOpen") and ARKIT_NAMES[-1] == "tongueOut"
    assert sorted(LIVE_LINK_ORDER) == sorted(ARKIT_NAMES)
    assert LIVE_LINK_ORDER[14:18] == ("jawForward", "jawRight", "jawLeft", "jawOpen")
    assert LIVE_LINK_ORDER[21:23] == ("mouthRight", "mouthLeft")


@pytest.mark.parametrize("name, meant", [
    ("jawOpen", "jawOpen"), ("JawOpen", "jawOpen"), ("jaw_open", "jawOpen"), ("ARKit_jawOpen", "jawOpen"),
    ("blendShape.mouthSmileLeft", "mouthSmileLeft"), ("blendShape1.mouthSmile_L", "mouthSmileLeft"),
    ("mouthSmile_R", "mouthSmileRight"), ("Mouth_Smile.L", "mouthSmileLeft"), ("eyeBlink_l", "eyeBlinkLeft"),
    ("head:mouthClose", "mouthClose"), ("Face|browInnerUp", "browInnerUp"), ("TONGUE-OUT", "tongueOut"),
    ("bs_cheekSquint_R", "cheekSquintRight"), ("ARKit_blendShape.noseSneerLeft", "noseSneerLeft"),
    ("Fcl_MTH_A", None), ("Basis", None), ("smile", None), ("jawOpenWide", None),
])
def test_a_shape_key_name_means_one_arkit_name_or_none(name, meant):
    assert arkit_name(name) == meant


def test_matching_prefers_the_exact_name_and_uses_each_key_once():
    keys = ["Basis", "mouthSmile_L", "mouthSmileLeft", "JAWOPEN", "jaw_open", "eyeBlink_R"]
    found = match_shape_keys(keys)
    assert found["mouthSmileLeft"] == "mouthSmileLeft"           # exact beats the variant
    assert found["jawOpen"] == "JAWOPEN" and found["eyeBlinkRight"] == "eyeBlink_R"
    assert found["tongueOut"] is None and len(found) == 52
    assert match_shape_keys(["jawOpen", "JAWOPEN"])["jawOpen"] == "jawOpen"      # the first of two exact ones
    assert sum(v is not None for v in found.values()) == 3
