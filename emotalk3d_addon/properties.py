"""Saved state: the scene's performance settings, the head's subject, each generated Action.

``Scene.emotalk3d``: subject reference, audio (file or sound strip), emotion and
intensity (keyframable: "Key emotion" keys them at the current frame), emotion from
speech, auto-update, NLA option, the head object and the last generated action.
``Object.emotalk3d_head``: which subject a head object was built from.
``Action.emotalk3d``: what a generated action was made from.
In Blender 5.0 these live in system properties: always use attribute access.
"""

import bpy
from bpy.props import (BoolProperty, CollectionProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty,
                       StringProperty)
from bpy.types import PropertyGroup

from .backend.emotions import EMOTIONS
from .bridge import subjects

EMOTION_ICONS = {"neutral": 'MESH_CIRCLE', "angry": 'COLORSET_01_VEC', "contempt": 'COLORSET_09_VEC',
                 "disgusted": 'COLORSET_03_VEC', "fear": 'COLORSET_06_VEC', "happy": 'COLORSET_02_VEC',
                 "sad": 'COLORSET_04_VEC', "surprised": 'COLORSET_05_VEC'}
EMOTION_ITEMS = [(name, name.capitalize(), f"{name.capitalize()} expression", EMOTION_ICONS[name], i)
                 for i, name in enumerate(EMOTIONS)]

# Enum item lists handed to Blender must stay alive while it uses them.
_SUBJECT_ITEMS: list[tuple] = []
_SUBJECT_REFS: list[str] = []


def _library_dirs(context=None):
    from .preferences import current_settings

    return current_settings(context).library_dirs()


def subject_entries(context=None) -> list[subjects.SubjectEntry]:
    return subjects.scan(_library_dirs(context))


def _subject_items(self, context):
    global _SUBJECT_ITEMS, _SUBJECT_REFS
    entries = subject_entries(context)
    refs = [e.ref for e in entries]
    items = [(f"S{i}", e.name, str(e.path), 'USER', i + 1) for i, e in enumerate(entries)]
    if self.subject and self.subject not in refs:       # a stored path outside the libraries
        refs.append(self.subject)
        items.append((f"S{len(items)}", subjects.label(self.subject), self.subject, 'FILE_FOLDER', len(items) + 1))
    items.insert(0, ("NONE", "Choose a subject", "No subject chosen", 'BLANK1', 0))
    _SUBJECT_ITEMS, _SUBJECT_REFS = items, refs
    return _SUBJECT_ITEMS


def _subject_get(self):
    if not self.subject:
        return 0
    if self.subject not in _SUBJECT_REFS:
        _subject_items(self, bpy.context)
    return _SUBJECT_REFS.index(self.subject) + 1 if self.subject in _SUBJECT_REFS else 0


def _subject_set(self, value):
    if value <= 0:
        self.subject = ""
    elif value - 1 < len(_SUBJECT_REFS):
        self.subject = _SUBJECT_REFS[value - 1]


def _auto_update_changed(self, context):
    from .bridge import auto

    auto.reset(context.scene if context else None)


def _target_poll(self, ob) -> bool:
    from .bridge import arkit_target

    return arkit_target.is_character(ob)


def _target_changed(self, context) -> None:
    from .bridge import arkit_target

    if self.target is not None and arkit_target.is_character(self.target):
        arkit_target.refresh_map(self, self.target)


def _strength_changed(self, context) -> None:
    from .bridge import arkit_target

    act = self.last_action
    if act is not None and self.target is not None and act.emotalk3d.target == self.target.name:
        arkit_target.apply_strengths(act, self, self.target)


def _head_shadow_changed(self, context) -> None:
    from .bridge import head_visibility

    head_visibility.refresh(self.id_data)


def _map_key_changed(self, context) -> None:
    self.manual = True
    from .backend.arkit.names import ARKIT_NAMES
    from .bridge import arkit_target

    s = context.scene.emotalk3d if context and context.scene else None
    # (refresh_map's 52 assignments arrive while the map is being rebuilt: notes follow it once)
    if s is not None and len(s.arkit_map) == len(ARKIT_NAMES) and s.target is not None \
            and arkit_target.is_character(s.target):
        arkit_target.update_notes(s, s.target)


class EMOTALK3D_PG_arkit_note(PropertyGroup):
    """A shape key the ARKit mapping leaves unused, and why (``backend.arkit.names.KeyNote``)."""

    key: StringProperty(name="Shape Key")
    kind: StringProperty(name="Kind")
    reason: StringProperty(name="Why Unused")
    arkit: StringProperty(name="ARKit Shape")


class EMOTALK3D_PG_arkit_map_item(PropertyGroup):
    arkit: StringProperty(name="ARKit Shape")
    key: StringProperty(name="Shape Key", update=_map_key_changed,
                        description="The target's shape key that plays this ARKit shape (empty: none)")
    manual: BoolProperty(name="Set by Hand", description="Kept when the mapping is refreshed")


def _strength(name: str, what: str):
    return FloatProperty(name=name, default=1.0, min=0.0, soft_max=2.0, max=10.0, update=_strength_changed,
                         description=f"Scales the {what} weights on the target (re-writes the keys; no backend run)")


class EMOTALK3D_PG_scene(PropertyGroup):
    subject: StringProperty(name="Subject", description="Subject name in a library folder, or a bundle's path")
    subject_choice: EnumProperty(name="Subject", items=_subject_items, get=_subject_get, set=_subject_set,
                                 description="Trained subject to perform with (library folders in Preferences)")
    audio_source: EnumProperty(name="Audio", items=[
        ("FILE", "File", "An audio or video file; Generate adds its sound strip at the start frame "
                         "(in place of the previous take's)"),
        ("STRIP", "Sound Strip", "A sound strip already in the sequencer")], default="FILE")
    audio_file: StringProperty(name="Audio File", subtype='FILE_PATH',
                               description="Speech: an audio file (WAV, FLAC, OGG, MP3, M4A/AAC, Opus, AIFF) "
                                           "or a video whose sound is the dialogue (MP4, MOV, MKV, WebM)")
    audio_start: IntProperty(name="Start Frame", default=1,
                             description="Scene frame where the audio (and the performance) starts")
    strip: StringProperty(name="Sound Strip", description="The sound strip the performance follows")
    emotion: EnumProperty(name="Emotion", items=EMOTION_ITEMS, default="neutral", options={'ANIMATABLE'},
                          description="Emotion (key it over time with Key Emotion)")
    intensity: FloatProperty(name="Intensity", default=1.0, min=0.0, max=1.0, subtype='FACTOR',
                             options={'ANIMATABLE'}, description="0 neutral, 0.5 mild, 1 strong")
    fill_from_speech: BoolProperty(
        name="Emotion from Speech", default=False,
        description="Fill the gaps between emotion keys (or the whole clip when there are none) with the "
                    "emotion the backend hears in the speech")
    fill_reach: FloatProperty(name="Key Reach", default=12.0, min=1.0, soft_max=120.0,
                              description="Frames over which a key's emotion fades into the one from speech")
    auto_update: BoolProperty(name="Auto Update", default=False, update=_auto_update_changed,
                              description="Re-generate shortly after emotion keys change (rewrites the last action)")
    push_to_nla: BoolProperty(name="Push to NLA", default=False,
                              description="Put each new performance on its own NLA track instead of the active action")
    head: PointerProperty(name="Head", type=bpy.types.Object,
                          description="The head object the performance drives (created on first Generate)")
    last_action: PointerProperty(name="Last Performance", type=bpy.types.Action)
    target: PointerProperty(name="Target", type=bpy.types.Object, poll=_target_poll, update=_target_changed,
                            description="A character with ARKit-named shape keys to drive (empty: the subject's "
                                        "own head)")
    arkit_map: CollectionProperty(type=EMOTALK3D_PG_arkit_map_item)
    arkit_notes: CollectionProperty(type=EMOTALK3D_PG_arkit_note)
    arkit_map_index: IntProperty(options={'HIDDEN'})
    strength_jaw: _strength("Jaw", "jaw")
    strength_lips: _strength("Lips", "mouth and lip")
    strength_brows_eyes: _strength("Brows & Eyes", "brow and eye")
    strength_cheeks_nose: _strength("Cheeks & Nose", "cheek, nose and tongue")
    strength_emotion: FloatProperty(name="Emotion", default=1.0, min=0.0, soft_max=1.5, max=3.0,
                                    update=_strength_changed,
                                    description="0: the speech alone (the clip performed neutral), 1: the emotion "
                                                "as keyed, more exaggerates it (re-writes the keys; no backend run)")
    blinks: BoolProperty(name="Blinks", default=False,
                         description="Add natural blinks on eyeBlinkLeft/Right, as keys you can move")
    # compositing (bridge/compositing.py)
    gaussian_scene: PointerProperty(name="Gaussian Scene", type=bpy.types.Scene,
                                    description="The scene that renders the head's Gaussians for this scene's compositor")
    source_scene: PointerProperty(name="Source Scene", type=bpy.types.Scene,
                                  description="The scene whose compositor this Gaussian scene feeds")
    composite_mode: EnumProperty(name="Layering", items=[
        ('ALPHA_OVER', "Alpha Over", "The head always in front of the scene"),
        ('Z_COMBINE', "Z Combine", "Head and scene sorted by depth (the scene's Z pass is switched on)")],
        default='ALPHA_OVER')
    comp_made_tree: BoolProperty(options={'HIDDEN'})
    comp_prev_pass_z: BoolProperty(options={'HIDDEN'})
    comp_bg_node: StringProperty(options={'HIDDEN'})
    comp_bg_socket: StringProperty(options={'HIDDEN'})
    head_shadow: BoolProperty(name="Head Casts Shadow", default=False, update=_head_shadow_changed,
                              description="With compositing set up, the head mesh (hidden from this scene's "
                                          "render) still casts its shadow on the scene (Cycles and EEVEE)")


class EMOTALK3D_PG_head(PropertyGroup):
    subject: StringProperty(name="Subject")
    subject_name: StringProperty(name="Subject Name")
    fingerprint: StringProperty(name="Fingerprint", description="Identifies the subject's mesh and motion basis")
    num_components: IntProperty(name="Shape Keys")


class EMOTALK3D_PG_action(PropertyGroup):
    generated: BoolProperty(name="Generated by EmoTalk3D")
    subject: StringProperty(name="Subject")
    fingerprint: StringProperty(name="Fingerprint")
    audio: StringProperty(name="Audio", subtype='FILE_PATH')
    strip: StringProperty(name="Sound Strip")
    fps_num: IntProperty(name="FPS numerator")
    fps_den: IntProperty(name="FPS denominator", default=1)
    frame_start: FloatProperty(name="Start Frame")
    num_frames: IntProperty(name="Frames")
    emotion_mode: StringProperty(name="Emotion")
    basis_max_mm: FloatProperty(name="Basis Error (mm)")
    target: StringProperty(name="Target", description="The character the performance drives (empty: a head)")
    arkit_rms_mm: FloatProperty(name="ARKit Fit (mm)")


CLASSES = (EMOTALK3D_PG_arkit_map_item, EMOTALK3D_PG_arkit_note, EMOTALK3D_PG_scene, EMOTALK3D_PG_head, EMOTALK3D_PG_action)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.emotalk3d = PointerProperty(type=EMOTALK3D_PG_scene)
    bpy.types.Object.emotalk3d_head = PointerProperty(type=EMOTALK3D_PG_head)
    bpy.types.Action.emotalk3d = PointerProperty(type=EMOTALK3D_PG_action)


def unregister() -> None:
    del bpy.types.Action.emotalk3d
    del bpy.types.Object.emotalk3d_head
    del bpy.types.Scene.emotalk3d
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
