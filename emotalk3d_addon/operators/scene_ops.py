"""Small operators: key emotion, pick the active sound strip, add the head, subjects, libraries."""

import bpy
from bpy.props import IntProperty, StringProperty

from ..bridge import jobs, keys, mesh, placement


class EMOTALK3D_OT_key_emotion(bpy.types.Operator):
    """Key the current emotion and intensity at the current frame"""

    bl_idname = "emotalk3d.key_emotion"
    bl_label = "Key Emotion"
    bl_options = {'REGISTER', 'UNDO'}

    def execute(self, context):
        keys.insert_key(context.scene)
        s = context.scene.emotalk3d
        self.report({'INFO'}, f"EmoTalk3D: keyed {s.emotion} at {s.intensity:.2f} on frame {context.scene.frame_current}")
        return {'FINISHED'}


class EMOTALK3D_OT_clear_emotion_keys(bpy.types.Operator):
    """Remove every emotion and intensity key"""

    bl_idname = "emotalk3d.clear_emotion_keys"
    bl_label = "Clear Emotion Keys"
    bl_options = {'REGISTER', 'UNDO'}

    def execute(self, context):
        settings = context.scene.emotalk3d
        for path in ("emotion", "intensity"):
            fc = keys.emotion_curves(context.scene)[0 if path == "emotion" else 1]
            if fc is not None:
                for frame in sorted({kp.co[0] for kp in fc.keyframe_points}):
                    settings.keyframe_delete(path, frame=frame)
        return {'FINISHED'}


class EMOTALK3D_OT_use_active_strip(bpy.types.Operator):
    """Follow the active sound strip of the sequencer"""

    bl_idname = "emotalk3d.use_active_strip"
    bl_label = "Use Active Strip"
    bl_options = {'REGISTER', 'UNDO'}

    @classmethod
    def poll(cls, context):
        sed = context.scene.sequence_editor
        strip = getattr(sed, "active_strip", None) if sed else None
        return strip is not None and strip.type == 'SOUND'

    def execute(self, context):
        strip = context.scene.sequence_editor.active_strip
        s = context.scene.emotalk3d
        s.audio_source, s.strip = 'STRIP', strip.name
        return {'FINISHED'}


class EMOTALK3D_OT_add_head(bpy.types.Operator):
    """Add the chosen subject's head (mesh, UVs, motion basis as shape keys) at the 3D cursor,
    or clear of what is there, facing the camera"""

    bl_idname = "emotalk3d.add_head"
    bl_label = "Add Head"
    bl_options = {'REGISTER', 'UNDO'}

    def execute(self, context):
        from .. import preferences
        from ..bridge import subjects

        s = context.scene.emotalk3d
        settings = preferences.current_settings(context)
        bundle = subjects.resolve(s.subject, settings.library_dirs())
        if bundle is None:
            self.report({'ERROR'}, f"EmoTalk3D: subject {s.subject!r} not found")
            return {'CANCELLED'}
        try:
            python = settings.python_path()
        except Exception as exc:  # noqa: BLE001
            self.report({'ERROR'}, f"EmoTalk3D: {exc}")
            return {'CANCELLED'}
        job = jobs.SubjectJob(python, str(bundle)).run()
        if job.state != "done":
            self.report({'ERROR'}, f"EmoTalk3D: {job.error}")
            return {'CANCELLED'}
        info, arr = job.result, job.result["arrays"]
        collection = context.view_layer.active_layer_collection.collection if context.view_layer else \
            context.scene.collection
        head = mesh.build_head(info.get("name") or "EmoTalk3D head", collection, context.scene.cursor.location,
                               arr["template"], arr["triangles"], arr["uvs"], arr["components"])
        h = head.emotalk3d_head
        h.subject, h.subject_name, h.fingerprint = s.subject, str(info.get("name", "")), info["fingerprint"]
        h.num_components = int(info["num_components"])
        found = placement.place_new_head(head, context.scene, bundle)
        s.head = head
        hint = "adds a camera aimed" if context.scene.camera is None else "aims the camera"
        hint = f"; Frame Head {hint} at it"
        self.report({'INFO'}, f"EmoTalk3D: {placement.describe(head, found)}{hint}")
        return {'FINISHED'}


class EMOTALK3D_OT_refresh_subjects(bpy.types.Operator):
    """Scan the subject library folders again"""

    bl_idname = "emotalk3d.refresh_subjects"
    bl_label = "Refresh Subjects"

    def execute(self, context):
        from .. import properties

        properties._subject_items(context.scene.emotalk3d, context)
        for area in context.screen.areas if context.screen else []:
            area.tag_redraw()
        return {'FINISHED'}


class EMOTALK3D_OT_select_head(bpy.types.Operator):
    """Select the head object driven by the performance"""

    bl_idname = "emotalk3d.select_head"
    bl_label = "Select Head"

    @classmethod
    def poll(cls, context):
        head = context.scene.emotalk3d.head
        return head is not None and head.name in context.view_layer.objects

    def execute(self, context):
        head = context.scene.emotalk3d.head
        for ob in context.selected_objects:
            ob.select_set(False)
        head.select_set(True)
        context.view_layer.objects.active = head
        return {'FINISHED'}


class EMOTALK3D_OT_library_add(bpy.types.Operator):
    """Add a subject library folder"""

    bl_idname = "emotalk3d.library_add"
    bl_label = "Add Library Folder"

    directory: StringProperty(subtype='DIR_PATH')

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {'RUNNING_MODAL'}

    def execute(self, context):
        from ..preferences import get_prefs

        prefs = get_prefs(context)
        if not hasattr(prefs.libraries, "add"):
            self.report({'ERROR'}, "EmoTalk3D is not enabled as an add-on")
            return {'CANCELLED'}
        prefs.libraries.add().path = self.directory
        return {'FINISHED'}


class EMOTALK3D_OT_library_remove(bpy.types.Operator):
    """Remove this subject library folder"""

    bl_idname = "emotalk3d.library_remove"
    bl_label = "Remove Library Folder"

    index: IntProperty()

    def execute(self, context):
        from ..preferences import get_prefs

        prefs = get_prefs(context)
        if hasattr(prefs.libraries, "remove") and 0 <= self.index < len(prefs.libraries):
            prefs.libraries.remove(self.index)
        return {'FINISHED'}


CLASSES = (EMOTALK3D_OT_key_emotion, EMOTALK3D_OT_clear_emotion_keys, EMOTALK3D_OT_use_active_strip,
           EMOTALK3D_OT_add_head, EMOTALK3D_OT_refresh_subjects, EMOTALK3D_OT_select_head,
           EMOTALK3D_OT_library_add, EMOTALK3D_OT_library_remove)
