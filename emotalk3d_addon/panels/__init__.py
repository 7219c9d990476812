"""N-panels: the 3D viewport's EmoTalk3D tab and a compact one in the Sequencer."""
from __future__ import annotations

import bpy

from ..bridge import checks, compat, jobs, sequencer, subjects

_previews = None


def _preview_icon(path) -> int:
    """Icon id of a bundle's preview image (bpy.utils.previews), 0 when none."""
    global _previews
    if path is None:
        return 0
    if _previews is None:
        from bpy.utils import previews

        _previews = previews.new()
    key = str(path)
    if key not in _previews:
        _previews.load(key, key, 'IMAGE')
    return _previews[key].icon_id


def _entry(context):
    from .. import preferences

    s = context.scene.emotalk3d
    if not s.subject:
        return None
    dirs = preferences.current_settings(context).library_dirs()
    return subjects.describe(s.subject, dirs)


def _draw_progress(layout, job) -> bool:
    if job is None or job.finished:
        return False
    row = layout.row(align=True)
    if hasattr(row, "progress"):
        row.progress(factor=job.fraction, type='BAR', text=job.message or "Working")
    else:
        row.label(text=f"{job.message} ({int(job.fraction * 100)}%)")
    row.operator("emotalk3d.cancel", text="", icon='CANCEL')
    layout.label(text="Esc cancels", icon='INFO')
    return True


def _draw_subject(layout, context, compact: bool) -> None:
    s = context.scene.emotalk3d
    row = layout.row(align=True)
    row.prop(s, "subject_choice", text="" if compact else "Subject")
    row.operator("emotalk3d.refresh_subjects", text="", icon='FILE_REFRESH')
    if not s.subject:
        return
    entry = _entry(context)
    if entry is None:
        layout.label(text=f"Subject '{s.subject}' not found", icon='ERROR')
        return
    if compact:
        return
    box = layout.box()
    icon = _preview_icon(entry.preview)
    if icon:
        box.template_icon(icon_value=icon, scale=5.0)
    col = box.column(align=True)
    col.label(text=entry.name, icon='USER')
    if entry.manifest.get("description"):
        col.label(text=str(entry.manifest["description"])[:80])
    col.label(text=f"{entry.num_vertices} vertices, {entry.num_components} shape keys, "
                   f"trained at {entry.manifest.get('fps', '?')} fps")
    emotions = entry.emotions
    if emotions:
        flow = col.grid_flow(columns=4, align=True)
        for e in emotions:
            flow.label(text=e.capitalize())
    row = box.row(align=True)
    row.operator("emotalk3d.add_head", icon='MESH_MONKEY')
    row.operator("emotalk3d.select_head", icon='RESTRICT_SELECT_OFF')


def _draw_audio(layout, context, compact: bool) -> None:
    s = context.scene.emotalk3d
    scene = context.scene
    layout.row().prop(s, "audio_source", expand=True)
    if s.audio_source == 'FILE':
        layout.prop(s, "audio_file", text="")
        layout.prop(s, "audio_start")
    else:
        sed = scene.sequence_editor
        if sed is not None:
            layout.prop_search(s, "strip", sed, compat.strips_attr(sed), text="", icon='SOUND')
        else:
            layout.label(text="No sequencer strips in this scene", icon='INFO')
        layout.operator("emotalk3d.use_active_strip", icon='EYEDROPPER')
        strip = sequencer.find_strip(scene, s.strip)
        if strip is not None and not compact:
            layout.label(text=f"Frames {strip.frame_final_start}-{strip.frame_final_end - 1} "
                              f"at {scene.render.fps / scene.render.fps_base:.3f} fps")


def _draw_emotion(layout, context, compact: bool) -> None:
    from ..bridge import keys

    s = context.scene.emotalk3d
    row = layout.row(align=True)
    row.prop(s, "emotion", text="")
    row.prop(s, "intensity", slider=True)
    row = layout.row(align=True)
    row.operator("emotalk3d.key_emotion", icon='KEY_HLT')
    if not compact:
        row.operator("emotalk3d.clear_emotion_keys", text="", icon='KEY_DEHLT')
        n = len(keys.key_frames(context.scene))
        layout.label(text=f"{n} emotion key{'s' if n != 1 else ''}" if n else "No keys: one emotion for the clip")
    row = layout.row(align=True)
    row.prop(s, "fill_from_speech")
    if s.fill_from_speech and not compact:
        row.prop(s, "fill_reach", text="Reach")


def _draw_target(layout, context, compact: bool) -> None:
    """The character the performance drives: the subject's head (empty) or an ARKit rig."""
    s = context.scene.emotalk3d
    row = layout.row(align=True)
    row.prop(s, "target", text="")
    if s.target is None or compact:
        return
    matched = sum(1 for item in s.arkit_map if item.key)
    row = layout.row(align=True)
    row.label(text=f"{matched} of 52 ARKit shapes mapped", icon='SHAPEKEY_DATA')
    row.operator("emotalk3d.refresh_arkit_map", text="", icon='FILE_REFRESH')
    layout.template_list("EMOTALK3D_UL_arkit_map", "", s, "arkit_map", s, "arkit_map_index", rows=4)
    _draw_unused_keys(layout, s)
    col = layout.column(align=True)
    for name in ("strength_emotion", "strength_jaw", "strength_lips", "strength_brows_eyes", "strength_cheeks_nose"):
        col.prop(s, name, slider=True)
    layout.prop(s, "blinks")


def _draw_unused_keys(layout, s) -> None:
    """The shape keys the ARKit map leaves unused, each with its reason (the first six)."""
    notes = [n for n in s.arkit_notes if n.kind != "reference" or n.arkit]
    if not notes:
        return
    box = layout.box()
    box.label(text=f"{len(notes)} shape key{'s' if len(notes) > 1 else ''} unused", icon='INFO')
    for note in notes[:6]:
        box.label(text=note.reason, icon='ERROR' if note.kind in ("driven", "muted", "case_duplicate") else 'DOT')
    if len(notes) > 6:
        box.label(text=f"... and {len(notes) - 6} more (Refresh lists them all in the Info editor)")


def _draw_generate(layout, context, compact: bool) -> None:
    from ..operators.generate import LAST_REPORT

    s = context.scene.emotalk3d
    if not _draw_progress(layout, jobs.active_job()):
        row = layout.row()
        row.scale_y = 1.4
        row.operator("emotalk3d.generate", icon='PLAY_SOUND')
    if not compact:
        layout.operator("emotalk3d.frame_head", icon='CAMERA_DATA')
    row = layout.row(align=True)
    row.prop(s, "auto_update")
    row.prop(s, "push_to_nla")
    if compact:
        return
    act = s.last_action
    if act is not None:
        box = layout.box()
        box.label(text=f"Last: {act.name}", icon='ACTION')
        box.label(text=f"{act.emotalk3d.num_frames} frames from {act.emotalk3d.frame_start:g}, "
                       f"basis error {act.emotalk3d.basis_max_mm:.2f} mm")
    if LAST_REPORT.get("level") == 'ERROR':
        layout.label(text=LAST_REPORT["message"][:100], icon='ERROR')
    for text in checks.for_scene(context.scene):
        layout.label(text=text[:100], icon='ERROR')


def _draw_render(layout, context) -> None:
    """Compositing: the Gaussian scene and how it is layered."""
    from ..engine import ENGINE_ID, LAST_RENDER

    scene = context.scene
    s = scene.emotalk3d
    if s.source_scene is not None:
        layout.label(text=f"Gaussians for scene '{s.source_scene.name}'", icon='NODE_COMPOSITING')
        return
    row = layout.row(align=True)
    row.prop(s, "composite_mode", text="")
    if s.gaussian_scene is None:
        row.operator("emotalk3d.setup_compositing", text="Set Up Compositing", icon='NODE_COMPOSITING')
    else:
        row.operator("emotalk3d.setup_compositing", text="Update", icon='FILE_REFRESH')
        row.operator("emotalk3d.remove_compositing", text="", icon='X')
        layout.label(text=f"Gaussians render in '{s.gaussian_scene.name}'", icon='SCENE_DATA')
    layout.prop(s, "head_shadow")
    if scene.camera is None:
        layout.label(text="No active camera: Frame Head adds one", icon='ERROR')
        layout.operator("emotalk3d.frame_head", text="Frame Head (adds a camera)", icon='CAMERA_DATA')
    if LAST_RENDER.get("error") and LAST_RENDER.get("scene") in (scene.name, getattr(s.gaussian_scene, "name", "")):
        layout.label(text=str(LAST_RENDER["error"])[:100], icon='ERROR')
    if scene.render.engine == ENGINE_ID:
        layout.label(text="Viewport: Rendered shading draws the Gaussians", icon='SHADING_RENDERED')


class EMOTALK3D_PT_view3d(bpy.types.Panel):
    bl_label = "EmoTalk3D"
    bl_idname = "EMOTALK3D_PT_view3d"
    bl_space_type = 'VIEW_3D'
    bl_region_type = 'UI'
    bl_category = "EmoTalk3D"

    @classmethod
    def poll(cls, context):
        return context.scene is not None and hasattr(context.scene, "emotalk3d")

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = False
        col = layout.column()
        col.label(text="Subject", icon='USER')
        _draw_subject(col, context, compact=False)
        col.separator()
        col.label(text="Audio", icon='SOUND')
        _draw_audio(col, context, compact=False)
        col.separator()
        col.label(text="Emotion", icon='SHADERFX')
        _draw_emotion(col, context, compact=False)
        col.separator()
        col.label(text="Target", icon='ARMATURE_DATA')
        _draw_target(col, context, compact=False)
        col.separator()
        _draw_generate(col, context, compact=False)
        col.separator()
        col.label(text="Render", icon='RENDER_STILL')
        _draw_render(col, context)


class EMOTALK3D_PT_sequencer(bpy.types.Panel):
    bl_label = "EmoTalk3D"
    bl_idname = "EMOTALK3D_PT_sequencer"
    bl_space_type = 'SEQUENCE_EDITOR'
    bl_region_type = 'UI'
    bl_category = "EmoTalk3D"

    @classmethod
    def poll(cls, context):
        return context.scene is not None and hasattr(context.scene, "emotalk3d")

    def draw(self, context):
        col = self.layout.column()
        _draw_subject(col, context, compact=True)
        _draw_audio(col, context, compact=True)
        _draw_emotion(col, context, compact=True)
        _draw_generate(col, context, compact=True)


CLASSES: tuple[type, ...] = (EMOTALK3D_PT_view3d, EMOTALK3D_PT_sequencer)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    global _previews
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
    if _previews is not None:
        from bpy.utils import previews

        previews.remove(_previews)
        _previews = None
