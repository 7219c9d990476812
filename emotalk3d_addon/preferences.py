"""Add-on preferences: backend interpreter, subject libraries, speech encoder, device, cache."""

from dataclasses import dataclass, field

import bpy
from bpy.props import BoolProperty, CollectionProperty, EnumProperty, IntProperty, StringProperty
from bpy.types import AddonPreferences, PropertyGroup

from .bridge import subjects
from .bridge.settings import ADDON_ID, Settings

DEVICE_ITEMS = [("auto", "Auto", "CUDA when the backend sees a GPU, else the CPU"),
                ("cpu", "CPU", "Always the CPU"),
                ("cuda", "CUDA", "An NVIDIA GPU (fails clearly when none is available)")]


class EMOTALK3D_PG_library(PropertyGroup):
    path: StringProperty(name="Folder", subtype='DIR_PATH',
                         description="A folder holding subject bundles (folders or .zip files)")


class EMOTALK3D_Preferences(AddonPreferences):
    bl_idname = ADDON_ID

    python: StringProperty(
        name="Backend Python", subtype='FILE_PATH',
        description="Interpreter with the backend's packages (torch, transformers, ...), or its environment "
                    "folder. Empty: the environment built by 'Install backend', else $EMOTALK3D_PYTHON")
    libraries: CollectionProperty(type=EMOTALK3D_PG_library)
    active_library: IntProperty()
    encoder: StringProperty(
        name="Speech Encoder",
        description="Override the subject's speech encoder: whisper:tiny.en, or a HuBERT folder or hub id "
                    "(e.g. facebook/hubert-base-ls960). Empty: the subject's own (a subject only works "
                    "with the encoder it was trained on)")
    device: EnumProperty(name="Device", items=DEVICE_ITEMS, default="auto")
    cache_mb: IntProperty(name="Feature Cache (MB)", default=512, min=16, soft_max=8192,
                          description="Memory the worker may use to keep speech features for fast re-generation")
    render_ahead: BoolProperty(
        name="Render Ahead", default=True,
        description="In animation renders, let the backend render the next frame while Blender composites and "
                    "saves this one; a frame rendered ahead is used only if its inputs turn out identical")

    def draw(self, context):
        from .bridge import install, jobs, worker_client

        layout = self.layout
        col = layout.column()
        col.label(text="Backend", icon='SCRIPT')
        row = col.row(align=True)
        row.prop(self, "python")
        box = col.box()
        try:
            python = Settings.from_prefs(self).python_path()
            box.label(text=f"Interpreter: {python}", icon='CHECKMARK')
        except worker_client.WorkerError as exc:
            box.label(text=str(exc)[:120], icon='ERROR')
        info = getattr(worker_client.current_client(), "info", None)
        if info:
            box.label(text=f"Worker running: torch {info.get('torch')}, CUDA {'yes' if info.get('cuda') else 'no'}")
        row = box.row(align=True)
        row.operator("emotalk3d.check_backend", icon='PLUGIN')
        row.operator("emotalk3d.restart_worker", icon='FILE_REFRESH')
        _draw_install_plan(box, self.device)
        row = box.row(align=True)
        row.operator("emotalk3d.install_backend", icon='IMPORT')
        if install.STATUS.get("running"):
            row.operator("emotalk3d.cancel_install", icon='CANCEL')
        status = install.STATUS.get("message")
        if status:
            box.label(text=status)
        job = jobs.active_job()
        if job is not None and job.kind == "check":
            box.label(text=f"{job.message}")

        col.separator()
        col.label(text="Subject Libraries", icon='FILE_FOLDER')
        for i, lib in enumerate(self.libraries):
            row = col.row(align=True)
            row.prop(lib, "path", text="")
            op = row.operator("emotalk3d.library_remove", text="", icon='X')
            op.index = i
        col.operator("emotalk3d.library_add", icon='ADD')
        sub = col.column()
        sub.enabled = False
        sub.label(text=f"Always listed: {subjects.BUNDLED_DIR} (bundled demo)")

        col.separator()
        col.prop(self, "encoder")
        col.prop(self, "device")
        col.prop(self, "cache_mb")
        col.prop(self, "render_ahead")


def _draw_install_plan(layout, device: str) -> None:
    """What Install Backend would download here (the NVIDIA driver probe is cached), and a
    Windows path-length problem before it is met."""
    from .bridge import install, install_plan
    from .bridge.settings import user_env_dir

    try:
        plan = install_plan.plan_for_this_machine(device)
    except install_plan.UnsupportedPlatform as exc:
        layout.label(text=str(exc)[:160], icon='ERROR')
        return
    layout.label(text=f"Install Backend downloads {plan.description}", icon='INFO')
    if plan.note:
        layout.label(text=plan.note, icon='ERROR')
    env_dir = user_env_dir()
    problem = install.long_path_problem(env_dir) if env_dir is not None else None
    if problem:
        layout.label(text=problem[:160], icon='ERROR')


@dataclass
class DefaultPreferences:
    """Stand-in when the package is registered without being an enabled add-on."""

    python: str = ""
    libraries: list = field(default_factory=list)
    encoder: str = ""
    device: str = "auto"
    cache_mb: int = 512
    render_ahead: bool = True


def get_prefs(context=None):
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    if addon is not None and addon.preferences is not None:
        return addon.preferences
    return DefaultPreferences()


def current_settings(context=None) -> Settings:
    """The preferences as plain values (``bridge.settings``), read now."""
    return Settings.from_prefs(get_prefs(context))


CLASSES = (EMOTALK3D_PG_library, EMOTALK3D_Preferences)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)


__all__ = ["current_settings", "get_prefs"]
