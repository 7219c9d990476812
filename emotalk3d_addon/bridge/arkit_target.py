"""A target character: the performance as ARKit-52 weights on the artist's own shape keys.

The character is any mesh object with shape keys. Its keys are matched to the 52 ARKit
names (``backend.arkit.names``: case, separators and the common prefixes and side
suffixes do not matter); the scene keeps the mapping (``scene.emotalk3d.arkit_map``) and
the artist may change any entry (it is then kept when the mapping is refreshed).
Keys set by a driver are left out of the automatic match (the driver would override the
performance). Every key the mapping leaves unused, and every mapped key that cannot show
the performance (driven, muted), gets a note saying why (``map_notes``), kept on the scene
(``scene.emotalk3d.arkit_notes``) for the panel.

Generate writes a new Action on the character's shape keys: one linear F-curve per
matched key the performance moves, its values the solved weight times the strength of the key's group (jaw,
lips, brows and eyes, cheeks and nose). The emotion strength blends between the clip
performed neutral (0: speech only) and as keyed (1), or beyond it. Both unscaled weight
sets are stored on the Action, so changing a strength re-writes the keys without the backend. Optional procedural
blinks are sparse keys (0, 1, 0) on ``eyeBlinkLeft``/``eyeBlinkRight`` that the artist can
move like any key.
"""
from __future__ import annotations

import bpy
import numpy as np

from ..backend.arkit.names import ARKIT_NAMES, KeyNote, arkit_name, match_shape_keys, unused_keys
from . import action as action_mod
from . import compat, mesh
from .errors import UserError

RAW_PROP = "emotalk3d_arkit"            # the Action's unscaled (F * 52) weights
NEUTRAL_PROP = "emotalk3d_arkit_neutral"  # the same clip performed neutral (F * 52): the emotion strength's base
GROUPS = (("jaw", ("jaw",)), ("lips", ("mouth",)), ("brows_eyes", ("brow", "eye")),
          ("cheeks_nose", ("cheek", "nose", "tongue")))
BLINK_NAMES = ("eyeBlinkLeft", "eyeBlinkRight")
BLINK_HALF_S = 0.09                     # closing (and opening) time of a blink, seconds
BLINK_INTERVAL_S = (2.5, 5.5)           # seconds between blinks (uniform), a resting adult's rate
NOTES_PROP = "arkit_notes"              # the scene settings' collection of notes (key, kind, reason, arkit)
# the notes' kinds the Blender side adds to those of ``backend.arkit.names``
REFERENCE, DRIVEN, MUTED = "reference", "driven", "muted"


def is_character(ob) -> bool:
    """A mesh with shape keys beyond its reference key that is not an EmoTalk3D head."""
    if ob is None or ob.type != 'MESH' or ob.data.shape_keys is None:
        return False
    info = getattr(ob, "emotalk3d_head", None)
    return len(ob.data.shape_keys.key_blocks) > 1 and not (info is not None and info.fingerprint)


def key_names(ob) -> list[str]:
    key = ob.data.shape_keys
    reference = key.reference_key
    return [kb.name for kb in key.key_blocks if kb != reference]


def driven_keys(ob) -> set[str]:
    """Names of ``ob``'s shape keys whose value an active driver sets."""
    key = ob.data.shape_keys
    anim = key.animation_data if key is not None else None
    if anim is None:
        return set()
    paths = {fc.data_path for fc in anim.drivers if not fc.mute}
    return {kb.name for kb in key.key_blocks
            if f'key_blocks["{bpy.utils.escape_identifier(kb.name)}"].value' in paths}


def refresh_map(settings, target) -> dict[str, str | None]:
    """Fill ``settings.arkit_map`` with one entry per ARKit name: the artist's own choices
    (still present on the target) first, the automatic match elsewhere (driven keys left
    out); the notes on unused keys are refreshed too (``update_notes``)."""
    names = key_names(target)
    driven = driven_keys(target)
    kept = {item.arkit: item.key for item in settings.arkit_map if item.manual and (not item.key or item.key in names)}
    auto = match_shape_keys([n for n in names if n not in kept.values() and n not in driven])
    settings.arkit_map.clear()
    found = {}
    for arkit in ARKIT_NAMES:
        item = settings.arkit_map.add()
        item.arkit = arkit
        if arkit in kept:
            item.key, item.manual = kept[arkit], True
        else:
            item.key, item.manual = auto[arkit] or "", False
        found[arkit] = item.key or None
    update_notes(settings, target)
    return found


def map_notes(settings, target) -> list[KeyNote]:
    """A note for each of ``target``'s shape keys (in their order) that the mapping in
    ``settings.arkit_map`` leaves unused or that cannot show the performance, and why: the
    reference key, a key set by a driver, a muted mapped key, and ``names.unused_keys``' kinds
    (case duplicate, duplicate, near miss, no ARKit name)."""
    key = target.data.shape_keys
    if key is None:
        return []
    reference = key.reference_key
    names = key_names(target)
    driven = driven_keys(target)
    found = {item.arkit: item.key or None for item in settings.arkit_map if item.arkit in ARKIT_NAMES}
    plays: dict[str, str] = {}
    for arkit, name in found.items():
        if name:
            plays.setdefault(name, arkit)
    by_key = {n.key: n for n in unused_keys([n for n in names if n not in driven], found)}
    for name in names:
        if name in driven:
            arkit = plays.get(name)
            by_key[name] = KeyNote(name, DRIVEN, (
                f"'{name}' plays {arkit}, but a driver sets its value, so the performance will not show on it "
                "(remove the driver)") if arkit else (
                f"'{name}' is set by a driver, which would override the performance, so it is left unmapped "
                "(remove the driver, or map it by hand)"), arkit or arkit_name(name))
        elif name in plays and key.key_blocks[name].mute:
            by_key[name] = KeyNote(name, MUTED, f"'{name}' plays {plays[name]} but is muted in the Shape Keys "
                                   "list, so the performance will not show on it until it is unmuted", plays[name])
    notes = [KeyNote(reference.name, REFERENCE, f"'{reference.name}' is the reference key, the rest shape the others "
                     "are relative to: it is never animated", arkit_name(reference.name))]
    return notes + [by_key[n] for n in names if n in by_key]


def update_notes(settings, target) -> list[KeyNote]:
    """Recompute ``map_notes`` and keep them in ``settings.arkit_notes`` for the panel."""
    notes = map_notes(settings, target)
    store = getattr(settings, NOTES_PROP, None)
    if store is not None:
        store.clear()
        for note in notes:
            item = store.add()
            item.key, item.kind, item.reason, item.arkit = note.key, note.kind, note.reason, note.arkit or ""
    return notes


def report_lines(notes: list[KeyNote], limit: int = 8) -> list[str]:
    """Lines for a report: one per note (the reference key only where its name means an
    ARKit shape), at most ``limit`` and then how many more."""
    shown = [n.reason for n in notes if n.kind != REFERENCE or n.arkit]
    if not shown:
        return []
    head = f"{len(shown)} shape key{'s play' if len(shown) > 1 else ' plays'} no part in the performance:"
    more = [f"... and {len(shown) - limit} more"] if len(shown) > limit else []
    return [head, *shown[:limit], *more]


def mapping(settings, target) -> dict[str, str]:
    """{ARKit name: shape key} of the entries that name a key the target has."""
    names = set(key_names(target))
    if len(settings.arkit_map) != len(ARKIT_NAMES):
        refresh_map(settings, target)
    return {item.arkit: item.key for item in settings.arkit_map if item.key and item.key in names}


def strength(settings, arkit: str) -> float:
    for group, prefixes in GROUPS:
        if arkit.startswith(prefixes):
            return float(getattr(settings, f"strength_{group}"))
    return 1.0


def moved_shapes(raw: np.ndarray, neutral: np.ndarray | None = None) -> list[str]:
    """The ARKit names the performance moves at some emotion strength (raw or neutral)."""
    peak = np.abs(raw).max(axis=0, initial=0.0)
    if neutral is not None and neutral.shape == raw.shape:
        peak = np.maximum(peak, np.abs(neutral).max(axis=0, initial=0.0))
    return [a for a, p in zip(ARKIT_NAMES, peak) if p > 1e-4]


def shown_weights(weights: np.ndarray, neutral: np.ndarray | None, settings) -> np.ndarray:
    """(F, 52) weights with the emotion strength applied: neutral + e (weights - neutral)."""
    if neutral is None or neutral.shape != weights.shape:
        return weights
    e = float(settings.strength_emotion)
    return (neutral + e * (weights - neutral)).astype(np.float32)


def _curves(weights: np.ndarray, found: dict[str, str], settings) -> tuple[list[str], np.ndarray]:
    arkits = [a for a in ARKIT_NAMES if a in found]
    cols = [weights[:, ARKIT_NAMES.index(a)] * strength(settings, a) for a in arkits]
    values = np.stack(cols, axis=1) if cols else np.zeros((weights.shape[0], 0), np.float32)
    return [found[a] for a in arkits], values.astype(np.float32)


def blink_frames(num_frames: int, fps: float, seed: int = 0) -> list[float]:
    """Centre frames of natural blinks over a performance (a fixed seed: the same each time)."""
    rng = np.random.default_rng(seed)
    out, t = [], rng.uniform(0.5, BLINK_INTERVAL_S[0])
    while t * fps < num_frames - 1:
        out.append(t * fps)
        t += rng.uniform(*BLINK_INTERVAL_S)
    return out


def _blink_keys(fc, centres: list[float], fps: float, frame_start: float) -> None:
    """Replace ``fc``'s keys with sparse blink keys: 0 before, 1 at the centre, 0 after."""
    half = max(1.0, BLINK_HALF_S * fps)
    co = [(frame_start + c + d, v) for c in centres for d, v in ((-half, 0.0), (0.0, 1.0), (half, 0.0))]
    points = fc.keyframe_points
    points.clear()
    if not co:
        return
    points.add(len(co))
    points.foreach_set("co", np.asarray(co, np.float32).ravel())
    points.foreach_set("interpolation", np.full(len(co), action_mod.LINEAR, np.int32))
    fc.update()


def write_target_action(target, weights: np.ndarray, frame_start: float, fps: float, settings,
                        name: str, neutral: np.ndarray | None = None) -> tuple[bpy.types.Action, object, list[str]]:
    """A new Action on ``target``'s shape keys from (F, 52) weights (and the clip's neutral
    weights, the emotion strength's base); returns (action, slot, the ARKit names the
    performance moves that have no shape key on the target)."""
    weights = np.ascontiguousarray(weights, np.float32)
    raw = weights
    weights = shown_weights(raw, neutral, settings)
    found = mapping(settings, target)
    if not found:
        raise UserError(f"None of {target.name!r}'s shape keys is an ARKit shape (jawOpen, mouthSmileLeft, ...): "
                        "map them in the EmoTalk3D panel's ARKit mapping")
    moved = moved_shapes(raw, neutral)
    unmatched = [a for a in moved if a not in found]
    # the shapes the performance moves get a key per frame; the mapped ones it leaves still
    # get one key at 0, so the Action defines every shape it maps (no value left over from
    # another Action) and playback skips them (Blender mixes no shape key at 0)
    names, values = _curves(weights, {a: k for a, k in found.items() if a in moved}, settings)
    if not names:
        raise UserError(f"The performance moves no shape that {target.name!r} has a key for "
                        f"({', '.join(unmatched[:6])}): map them in the EmoTalk3D panel's ARKit mapping")
    key = target.data.shape_keys
    mesh.widen_sliders(key, names, values)            # strengths above 1 must not be clamped by the sliders
    act, slot = action_mod.new_shape_key_action(key, name, names, values, frame_start)
    for arkit in ARKIT_NAMES:
        if arkit in found and arkit not in moved and not (settings.blinks and arkit in BLINK_NAMES):
            _hold_at_zero(_new_curve(act, slot, action_mod.data_path(found[arkit])), frame_start)
    act[RAW_PROP] = raw.ravel().tolist()
    if neutral is not None and neutral.shape == raw.shape:
        act[NEUTRAL_PROP] = np.ascontiguousarray(neutral, np.float32).ravel().tolist()
    if settings.blinks:
        curves = {fc.data_path: fc for fc in compat.action_fcurves(act, slot)}
        centres = blink_frames(weights.shape[0], fps)
        for arkit in BLINK_NAMES:
            if arkit in found:
                path = action_mod.data_path(found[arkit])
                fc = curves.get(path)
                if fc is None:
                    fc = _new_curve(act, slot, path)
                _blink_keys(fc, centres, fps, frame_start)
    return act, slot, unmatched


def _hold_at_zero(fc, frame_start: float) -> None:
    """One constant key at 0: the shape stays at rest for the whole performance."""
    fc.keyframe_points.add(1)
    point = fc.keyframe_points[0]
    point.co = (float(frame_start), 0.0)
    point.interpolation = 'CONSTANT'
    fc.update()


def _new_curve(act, slot, path: str):
    if slot is not None:
        return compat.channelbag(act, slot, ensure=True).fcurves.new(path, index=0)
    return act.fcurves.new(path, index=0, action_group=action_mod.GROUP)


def apply_strengths(act, settings, target) -> bool:
    """Re-write a target Action's keys from its stored weights with the current strengths
    (blink keys are left as they are); False when ``act`` holds no weights."""
    raw = act.get(RAW_PROP)
    if raw is None:
        return False
    weights = np.asarray(raw, np.float32).reshape(-1, len(ARKIT_NAMES))
    neutral = act.get(NEUTRAL_PROP)
    if neutral is not None:
        weights = shown_weights(weights, np.asarray(neutral, np.float32).reshape(weights.shape), settings)
    found = mapping(settings, target)
    slot = act.slots[0] if compat.has_slotted_actions() and len(act.slots) else None
    curves = {fc.data_path: fc for fc in compat.action_fcurves(act, slot)}
    moved = set(moved_shapes(np.asarray(raw, np.float32).reshape(weights.shape),
                             None if neutral is None else np.asarray(neutral, np.float32).reshape(weights.shape)))
    names, values = _curves(weights, found, settings)
    mesh.widen_sliders(target.data.shape_keys, names, values)
    blinking = {action_mod.data_path(found[a]) for a in BLINK_NAMES if a in found} if settings.blinks else set()
    arkits = [a for a in ARKIT_NAMES if a in found]
    for k, key_name in enumerate(names):
        fc = curves.get(action_mod.data_path(key_name))
        if fc is None or fc.data_path in blinking:
            continue
        if arkits[k] not in moved and len(fc.keyframe_points) <= 1:
            continue                                  # still: its one key at 0 holds
        action_mod.fill_curve(fc, values[:, k], act.emotalk3d.frame_start)
    return True


def reuse(act, weights: np.ndarray, settings, target, neutral: np.ndarray | None = None) -> bool:
    """Auto-update: put new weights of the same clip into ``act`` in place; False if they do not fit."""
    raw = act.get(RAW_PROP)
    if raw is None or len(raw) != weights.size:
        return False
    slot = act.slots[0] if compat.has_slotted_actions() and len(act.slots) else None
    curves = {fc.data_path for fc in compat.action_fcurves(act, slot)}
    found = mapping(settings, target)
    if any(a in found and action_mod.data_path(found[a]) not in curves for a in moved_shapes(weights, neutral)):
        return False                                  # a shape that now moves has no curve: write a new Action
    act[RAW_PROP] = np.ascontiguousarray(weights, np.float32).ravel().tolist()
    if neutral is not None and neutral.shape == weights.shape:
        act[NEUTRAL_PROP] = np.ascontiguousarray(neutral, np.float32).ravel().tolist()
    return apply_strengths(act, settings, target)
