"""Compositing operators: layer the head's Gaussians over the scene, or take them out again."""

import bpy
from bpy.props import EnumProperty

from ..bridge import compositing, gaussian_frame
from ..bridge.errors import UserError


class EMOTALK3D_OT_setup_compositing(bpy.types.Operator):
    """Render the head's Gaussians in a second scene and layer them over this scene in the compositor
    (the head mesh then draws nothing of its own in this scene's render)"""

    bl_idname = "emotalk3d.setup_compositing"
    bl_label = "Set Up Compositing"
    bl_options = {'REGISTER', 'UNDO'}

    mode: EnumProperty(name="Layering", items=[
        ('ALPHA_OVER', "Alpha Over", "The head always in front of the scene"),
        ('Z_COMBINE', "Z Combine", "Head and scene sorted by depth (switches the scene's Z pass on)")],
        default='ALPHA_OVER')

    @classmethod
    def poll(cls, context):
        scene = context.scene
        return scene is not None and scene.emotalk3d.source_scene is None

    def invoke(self, context, event):
        self.mode = context.scene.emotalk3d.composite_mode
        return self.execute(context)

    def execute(self, context):
        scene = context.scene
        try:
            if scene.camera is None:
                raise UserError(f"Scene {scene.name!r} has no active camera: Frame Head (EmoTalk3D panel) adds one "
                                "aimed at the head, or add your own and make it active")
            head = gaussian_frame.find_head(scene)
            if scene.emotalk3d.head is None:
                scene.emotalk3d.head = head
            gscene = compositing.setup(scene, self.mode)
        except UserError as exc:
            self.report({'ERROR'}, str(exc))
            return {'CANCELLED'}
        shadow = "casts its shadow" if scene.emotalk3d.head_shadow else "casts no shadow"
        self.report({'INFO'}, f"EmoTalk3D: {head.name} renders in scene {gscene.name!r}, layered by "
                              f"{'Z Combine' if self.mode == 'Z_COMBINE' else 'Alpha Over'}; its mesh is hidden "
                              f"from this scene's render and {shadow}")
        return {'FINISHED'}


class EMOTALK3D_OT_remove_compositing(bpy.types.Operator):
    """Remove the Gaussian scene and the compositor nodes Set Up Compositing added; the head mesh
    renders as it did before"""

    bl_idname = "emotalk3d.remove_compositing"
    bl_label = "Remove Compositing"
    bl_options = {'REGISTER', 'UNDO'}

    @classmethod
    def poll(cls, context):
        return context.scene is not None and context.scene.emotalk3d.gaussian_scene is not None

    def execute(self, context):
        compositing.remove(context.scene)
        self.report({'INFO'}, "EmoTalk3D: compositing removed")
        return {'FINISHED'}


CLASSES = (EMOTALK3D_OT_setup_compositing, EMOTALK3D_OT_remove_compositing)
