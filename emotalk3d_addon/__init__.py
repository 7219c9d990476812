"""EmoTalk3D for Blender: register()/unregister() only.

Importing this package never imports bpy or torch, so the backend
(``emotalk3d_addon.backend``) stays usable on machines without Blender, and the worker
process (``python -m <package>.backend.tools.worker``) can import it. Inside Blender, torch is
never loaded: the backend runs in that worker.
"""
from __future__ import annotations

_cli_handle = None


def register() -> None:
    import bpy

    from . import engine, operators, panels, preferences, properties
    from .bridge import auto, checks, compat, compositing, headless

    global _cli_handle
    preferences.register()
    properties.register()
    engine.register()
    operators.register()
    panels.register()
    auto.register()
    checks.register()
    compositing.register()
    if compat.has_cli_commands() and _cli_handle is None:
        _cli_handle = bpy.utils.register_cli_command("emotalk3d", headless.cli_command)


def unregister() -> None:
    import bpy

    from . import engine, operators, panels, preferences, properties
    from .bridge import auto, checks, compositing, jobs, worker_client

    global _cli_handle
    job = jobs.active_job()
    if job is not None and not job.finished:
        job.cancel()
    worker_client.shutdown_client()
    if _cli_handle is not None:
        bpy.utils.unregister_cli_command(_cli_handle)
        _cli_handle = None
    compositing.unregister()
    checks.unregister()
    auto.unregister()
    panels.unregister()
    operators.unregister()
    engine.unregister()
    properties.unregister()
    preferences.unregister()
