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


def test_the_exact_spelling_beats_one_that_differs_only_in_case_wherever_it_stands():
    assert match_shape_keys(["JawOpen", "jawOpen"])["jawOpen"] == "jawOpen"
    assert match_shape_keys(["JAW_OPEN", "JawOpen"])["jawOpen"] == "JawOpen"      # case-only beats a variant


@pytest.mark.parametrize("name, arkit, words", [
    ("jawopen_L", "jawOpen", "one shape for both sides"),          # a side of a sideless shape
    ("ARKit_mouthClose.R", "mouthClose", "one shape for both sides"),
    ("mouthSmile", "mouthSmileLeft", "a shape per side"),           # both sides in one key
    ("eye_blink", "eyeBlinkLeft", "a shape per side"),
    ("jawOpenWide", "jawOpen", "starts with jawOpen"),              # extra words
    ("mouthSmileRihgt", "mouthSmileRight", "close to mouthSmileRight"),   # a misspelling
    ("bs_browInnerUpp", "browInnerUp", "browInnerUp"),
])
def test_a_near_miss_names_the_arkit_shape_it_nearly_is(name, arkit, words):
    from emotalk3d_addon.backend.arkit.names import near_miss

    assert arkit_name(name) is None
    meant, why = near_miss(name)
    assert meant == arkit and words in why


@pytest.mark.parametrize("name", ["Fcl_MTH_A", "smile", "Basis", "Key 1", "frown"])
def test_a_name_far_from_every_arkit_name_is_no_near_miss(name):
    from emotalk3d_addon.backend.arkit.names import near_miss

    assert near_miss(name) is None


def test_every_key_the_mapping_leaves_out_is_reported_with_its_reason():
    from emotalk3d_addon.backend.arkit import names

    keys = ["jawOpen", "JawOpen", "mouthSmileLeft", "mouthSmile_L", "jawopen_L", "Fcl_MTH_A", "eyeBlink_L", "cheekPuff"]
    found = match_shape_keys(keys)
    found["cheekPuff"] = None                                     # the artist cleared it by hand
    notes = {n.key: n for n in names.unused_keys(keys, found)}
    assert list(notes) == ["JawOpen", "mouthSmile_L", "jawopen_L", "Fcl_MTH_A", "cheekPuff"]   # in key order
    assert notes["JawOpen"].kind == names.CASE_DUPLICATE and notes["JawOpen"].arkit == "jawOpen"
    assert "only in upper and lower case" in notes["JawOpen"].reason and "'jawOpen'" in notes["JawOpen"].reason
    assert notes["mouthSmile_L"].kind == names.DUPLICATE and "'mouthSmileLeft' already plays" in notes["mouthSmile_L"].reason
    assert notes["jawopen_L"].kind == names.NEAR_MISS and notes["jawopen_L"].arkit == "jawOpen"
    assert notes["Fcl_MTH_A"].kind == names.NO_MATCH and notes["Fcl_MTH_A"].arkit is None
    assert notes["cheekPuff"].kind == names.UNSET and "without a key" in notes["cheekPuff"].reason
    # a key the artist chose by hand for another name is in use, not a duplicate
    found["jawOpen"] = "JawOpen"
    assert "JawOpen" not in {n.key for n in names.unused_keys(keys, found)}
    assert names.unused_keys(keys, found)[0].key == "jawOpen" and names.unused_keys(keys, found)[0].kind == names.CASE_DUPLICATE
