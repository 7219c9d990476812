"""Version shims for Blender 4.2 LTS - 5.0, by feature detection (never version numbers).

* Actions: 4.4 added slotted actions (slots, layers, keyframe strips, channelbags); 5.0
  removed the legacy ``action.fcurves`` / ``groups`` / ``id_root``.
* Sequencer: 4.4 renamed ``sequences`` to ``strips`` (5.0 has only ``strips``).
* Command-line commands (``register_cli_command``) exist from 4.2.
"""
from __future__ import annotations

import bpy


def has_slotted_actions() -> bool:
    props = bpy.types.Action.bl_rna.properties
    return "slots" in props and "layers" in props


def has_cli_commands() -> bool:
    return hasattr(bpy.utils, "register_cli_command")


def channelbag(action: bpy.types.Action, slot, ensure: bool = False):
    """The channelbag of ``slot`` in the action's first keyframe strip (4.4+), or None."""
    if slot is None:
        return None
    if ensure:
        layer = action.layers[0] if action.layers else action.layers.new("Layer")
        strip = layer.strips[0] if layer.strips else layer.strips.new(type='KEYFRAME')
        return strip.channelbag(slot, ensure=True)
    for layer in action.layers:
        for strip in layer.strips:
            bag = strip.channelbag(slot)
            if bag is not None:
                return bag
    return None


def action_fcurves(action: bpy.types.Action | None, slot=None):
    """The F-curves an ID animated by ``action`` (and ``slot``) sees; [] when none."""
    if action is None:
        return []
    if has_slotted_actions():
        if slot is None and len(action.slots) == 1:
            slot = action.slots[0]
        bag = channelbag(action, slot)
        if bag is not None:
            return bag.fcurves
        if hasattr(action, "fcurves") and slot is None:  # 4.4 - 4.5 legacy view
            return action.fcurves
        return []
    return action.fcurves


def id_fcurves(id_data):
    """F-curves of the action assigned to an ID (its active slot on 4.4+)."""
    ad = getattr(id_data, "animation_data", None)
    if ad is None or ad.action is None:
        return []
    slot = getattr(ad, "action_slot", None)
    return action_fcurves(ad.action, slot)


def find_fcurve(id_data, data_path: str, index: int = 0):
    for fc in id_fcurves(id_data):
        if fc.data_path == data_path and fc.array_index == index:
            return fc
    return None


def assign_action(id_data, action, slot) -> None:
    """Make ``action`` (and its ``slot`` on 4.4+) the active action of ``id_data``."""
    ad = id_data.animation_data or id_data.animation_data_create()
    ad.action = action
    if slot is not None and hasattr(ad, "action_slot"):
        ad.action_slot = slot


def nla_push(id_data, action, slot, frame_start: float, name: str):
    """A new NLA track holding ``action`` as one strip starting at ``frame_start``."""
    ad = id_data.animation_data or id_data.animation_data_create()
    track = ad.nla_tracks.new()
    track.name = name
    strip = track.strips.new(name, int(round(frame_start)), action)
    if slot is not None and hasattr(strip, "action_slot"):
        strip.action_slot = slot
    return track, strip


def strips_attr(sed) -> str:
    """Name of the all-strips collection of a sequence editor ("strips_all" or "sequences_all")."""
    return "strips_all" if hasattr(sed, "strips_all") else "sequences_all"


def top_strips(sed):
    """The top-level strip collection (``strips``; ``sequences`` before 4.4)."""
    return sed.strips if hasattr(sed, "strips") else sed.sequences


def all_strips(scene) -> list:
    sed = scene.sequence_editor
    if sed is None:
        return []
    return list(getattr(sed, strips_attr(sed)))


def extension_user_dir(package: str, create: bool = False) -> str | None:
    """The extension's user folder, or None when not installed as an extension."""
    try:
        return bpy.utils.extension_path_user(package, path="", create=create)
    except (ValueError, AttributeError):
        return None
