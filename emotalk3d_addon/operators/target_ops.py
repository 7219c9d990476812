"""Target-character operators: refresh the ARKit mapping, aim a camera at the face."""

import bpy
import numpy as np

from ..bridge import arkit_target


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
        lines = arkit_target.report_lines(arkit_target.map_notes(s, s.target))
        self.report({'WARNING'} if lines else {'INFO'},
                    f"EmoTalk3D: {matched} of 52 ARKit shapes mapped on '{s.target.name}'"
                    + (f"; {lines[0]}" if lines else ""))
        for line in lines[1:]:
            self.report({'INFO'}, line)
        return {'FINISHED'}


def _face_object(context):
    s = context.scene.emotalk3d
    for ob in (s.target, s.head, context.active_object):
        if ob is not None and ob.type == 'MESH' and ob.name in context.scene.objects:
            return ob
    return None


class EMOTALK3D_OT_frame_head(bpy.types.Operator):
    """Aim the active camera (a new one when the scene has none) at the face: the whole head
    in the frame, with room above the hair, at the render's aspect ratio"""

    bl_idname = "emotalk3d.frame_head"
    bl_label = "Frame Head"
    bl_options = {'REGISTER', 'UNDO'}

    @classmethod
    def poll(cls, context):
        return context.scene is not None and _face_object(context) is not None

    def execute(self, context):
        from mathutils import Matrix

        from ..bridge import framing, gaussian_frame, head_extent, mesh

        scene = context.scene
        ob = _face_object(context)
        cam = scene.camera
        if cam is not None and (cam.type != 'CAMERA' or cam.data.type != 'PERSP'):
            kind = {'ORTHO': "orthographic", 'PANO': "panoramic"}.get(cam.data.type, cam.data.type.lower()) \
                if cam.type == 'CAMERA' else f"a {cam.type.lower()} object"
            self.report({'ERROR'}, f"EmoTalk3D: the active camera {cam.name!r} is {kind}: Frame Head aims "
                                   "perspective cameras only")
            return {'CANCELLED'}
        local = mesh.evaluated_vertices(ob, context.evaluated_depsgraph_get()).astype(np.float64)
        bundle = head_extent.subject_bundle(ob, scene) if gaussian_frame.is_head(ob) else None
        local = head_extent.head_points(local, bundle)
        M = np.array(ob.matrix_world, np.float64)
        points = local @ M[:3, :3].T + M[:3, 3]
        forward = M[:3, :3] @ np.array([0.0, -1.0, 0.0])            # heads face -Y
        up = M[:3, :3] @ np.array([0.0, 0.0, 1.0])
        created = cam is None
        data = bpy.data.cameras.new("EmoTalk3D Camera") if created else cam.data
        try:
            K, width, height = framing.intrinsics_for(data, scene)
            found = framing.fit(points, forward, up, K, width, height)
        except ValueError as exc:
            if created:
                bpy.data.cameras.remove(data)
            self.report({'ERROR'}, f"EmoTalk3D: {exc}")
            return {'CANCELLED'}
        if created:
            cam = bpy.data.objects.new("EmoTalk3D Camera", data)
            scene.collection.objects.link(cam)
            scene.camera = cam
        cam.matrix_world = Matrix(found.matrix_world.tolist())
        data.clip_start = min(data.clip_start, found.nearest / 2)
        data.clip_end = max(data.clip_end, found.farthest * 2)
        what = "a new camera" if created else repr(cam.name)
        self.report({'INFO'}, f"EmoTalk3D: {what} frames {ob.name!r} from {found.distance:.2f} m")
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
