"""Backend operators: check it, restart the worker, install the backend environment."""

import sys
from pathlib import Path

import bpy

from ..bridge import install, install_plan, jobs, worker_client


class EMOTALK3D_OT_check_backend(bpy.types.Operator):
    """Start the backend worker and report what it runs on"""

    bl_idname = "emotalk3d.check_backend"
    bl_label = "Check Backend"

    def execute(self, context):
        from ..preferences import current_settings

        try:
            python = current_settings(context).python_path()
        except worker_client.WorkerError as exc:
            self.report({'ERROR'}, f"EmoTalk3D: {exc}")
            return {'CANCELLED'}
        job = jobs.CheckJob(python).run()
        if job.state != "done":
            self.report({'ERROR'}, f"EmoTalk3D: {job.error}")
            return {'CANCELLED'}
        info = job.result
        self.report({'INFO'}, f"EmoTalk3D backend: Python {info['python']}, torch {info['torch']}, "
                              f"CUDA {'available' if info['cuda'] else 'not available'} ({python})")
        return {'FINISHED'}


class EMOTALK3D_OT_restart_worker(bpy.types.Operator):
    """Stop the backend worker (it starts again on the next Generate; frees its memory)"""

    bl_idname = "emotalk3d.restart_worker"
    bl_label = "Stop Worker"

    def execute(self, context):
        job = jobs.active_job()
        if job is not None and not job.finished:
            job.cancel()
        worker_client.shutdown_client()
        return {'FINISHED'}


class EMOTALK3D_OT_install_backend(bpy.types.Operator):
    """Build a Python environment with the backend's pinned packages in the extension's user folder (0.35 to 3.3 GB, as Preferences shows); the current backend stays until it is done"""

    bl_idname = "emotalk3d.install_backend"
    bl_label = "Install Backend"

    _timer = None

    def invoke(self, context, event):
        from ..preferences import current_settings

        try:
            message = "Downloads " + install_plan.plan_for_this_machine(current_settings(context).device).description
        except install_plan.UnsupportedPlatform as exc:
            message = str(exc)
        try:        # Blender 4.1+: the confirmation says what will be downloaded
            return context.window_manager.invoke_confirm(self, event, message=message[:200])
        except TypeError:
            return context.window_manager.invoke_confirm(self, event)

    def execute(self, context):
        from ..bridge.settings import user_env_dir
        from ..preferences import current_settings

        if not getattr(bpy.app, "online_access", True):
            self.report({'ERROR'}, "EmoTalk3D: online access is disabled (Preferences > System > Network); "
                                   "install the backend's packages yourself and set the Backend Python")
            return {'CANCELLED'}
        if install.STATUS.get("running"):
            self.report({'WARNING'}, "EmoTalk3D: the backend install is already running")
            return {'CANCELLED'}
        env_dir = user_env_dir()
        if env_dir is None:
            self.report({'ERROR'}, "EmoTalk3D: Install Backend needs the extension installed from its zip; "
                                   "set the Backend Python instead")
            return {'CANCELLED'}
        try:
            plan = install_plan.plan_for_this_machine(current_settings(context).device)
        except install_plan.UnsupportedPlatform as exc:
            self.report({'ERROR'}, f"EmoTalk3D: {exc}")
            return {'CANCELLED'}
        problem = install.long_path_problem(Path(env_dir))
        if problem:
            self.report({'ERROR'}, f"EmoTalk3D: {problem}")
            return {'CANCELLED'}
        env_dir.parent.mkdir(parents=True, exist_ok=True)
        commands = install.install_commands(sys.executable, Path(env_dir), plan)
        self.report({'INFO'}, f"EmoTalk3D: installing the backend: {plan.description}")
        install.start_install(commands, Path(env_dir).parent / "install.log", Path(env_dir),
                              before_replace=worker_client.shutdown_client)
        if context.window is not None:
            self._timer = context.window_manager.event_timer_add(0.5, window=context.window)
            context.window_manager.modal_handler_add(self)
            return {'RUNNING_MODAL'}
        return {'FINISHED'}

    def modal(self, context, event):
        if event.type == 'TIMER':
            for area in context.screen.areas if context.screen else []:
                area.tag_redraw()
            if not install.STATUS.get("running"):
                context.window_manager.event_timer_remove(self._timer)
                ok = install.STATUS.get("ok")
                self.report({'INFO' if ok else 'ERROR'}, f"EmoTalk3D: {install.STATUS.get('message')}")
                return {'FINISHED'}
        return {'PASS_THROUGH'}


class EMOTALK3D_OT_cancel_install(bpy.types.Operator):
    """Stop the backend install; the previous backend stays as it was"""

    bl_idname = "emotalk3d.cancel_install"
    bl_label = "Cancel Install"

    @classmethod
    def poll(cls, context):
        return bool(install.STATUS.get("running"))

    def execute(self, context):
        install.cancel()
        return {'FINISHED'}


CLASSES = (EMOTALK3D_OT_check_backend, EMOTALK3D_OT_restart_worker, EMOTALK3D_OT_install_backend,
           EMOTALK3D_OT_cancel_install)
