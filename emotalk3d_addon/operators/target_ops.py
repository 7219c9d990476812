"""Target-character operators: refresh the ARKit mapping, aim a camera at the face."""

import math

import bpy
from mathutils import Vector

from ..bridge import arkit_target

PORTRAIT_FILL = 0.6          # share of the frame's height the head fills


class EMOTALK3D_OT_refresh_arkit_map(bpy.types.Operator):
    """Match the target's shape keys to the 52 ARKit names again (entries set by hand are kept)"""

    bl_idname = "emotalk3d.refresh_arkit_map"
    bl_label = "Refresh ARKit Mapping"
    bl_options = {'REGISTER', 'UNDO'}

    @classmethod
    def poll(cls, context):
        s = context.scene.emotalk3d
        return s.target is not None and arkit_target.is_character(s.target)

    def execute(self, context):
        s = context.scene.emotalk3d
        found = arkit_target.refresh_map(s, s.target)
        matched = sum(1 for v in found.values() if v)
        self.report({'INFO'}, f"EmoTalk3D: {matched} of 52 ARKit shapes mapped on '{s.target.name}'")
        return {'FINISHED'}


def _face_object(context):
    s = context.scene.emotalk3d
    for ob in (s.target, s.head, context.active_object):
        if ob is not None and ob.type == 'MESH' and ob.name in context.scene.objects:
            return ob
    return None


class EMOTALK3D_OT_frame_head(bpy.types.Operator):
    """Aim the active camera (a new one when the scene has none) at the face, at a portrait distance"""

    bl_idname = "emotalk3d.frame_head"
    bl_label = "Frame Head"
    bl_options = {'REGISTER', 'UNDO'}

    @classmethod
    def poll(cls, context):
        return context.scene is not None and _face_object(context) is not None

    def execute(self, context):
        scene = context.scene
        ob = _face_object(context)
        corners = [ob.matrix_world @ Vector(c) for c in ob.bound_box]
        lo = Vector(tuple(min(c[i] for c in corners) for i in range(3)))
        hi = Vector(tuple(max(c[i] for c in corners) for i in range(3)))
        centre, height = (lo + hi) / 2, max(hi.z - lo.z, 1e-3)
        forward = (ob.matrix_world.to_3x3() @ Vector((0.0, -1.0, 0.0))).normalized()   # heads face -Y
        cam = scene.camera
        if cam is None:
            cam = bpy.data.objects.new("EmoTalk3D Camera", bpy.data.cameras.new("EmoTalk3D Camera"))
            scene.collection.objects.link(cam)
            scene.camera = cam
        fov = cam.data.angle_y if cam.data.sensor_fit != 'HORIZONTAL' else cam.data.angle
        distance = (height / PORTRAIT_FILL) / 2 / math.tan(fov / 2)
        cam.location = centre + forward * distance
        cam.rotation_euler = (centre - cam.location).to_track_quat('-Z', 'Y').to_euler()
        cam.data.clip_start = min(cam.data.clip_start, distance / 10)
        self.report({'INFO'}, f"EmoTalk3D: '{cam.name}' frames '{ob.name}' from {distance:.2f} m")
        return {'FINISHED'}


class EMOTALK3D_UL_arkit_map(bpy.types.UIList):
    """One row per ARKit name: its shape key on the target (or none)."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):
        target = context.scene.emotalk3d.target
        row = layout.row(align=True)
        row.label(text=item.arkit, icon='CHECKMARK' if item.key else 'BLANK1')
        if target is not None and target.data.shape_keys is not None:
            row.prop_search(item, "key", target.data.shape_keys, "key_blocks", text="")
        else:
            row.prop(item, "key", text="")


CLASSES = (EMOTALK3D_OT_refresh_arkit_map, EMOTALK3D_OT_frame_head, EMOTALK3D_UL_arkit_map)
