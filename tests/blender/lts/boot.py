"""The start every LTS scenario script shares: its arguments, Blender's user folder kept in
the work folder, the repository on the path and the extension enabled.

    from boot import start      # (the scripts' own folder is on sys.path)
    root, work, args, found = start()
"""
import os
import sys


def start() -> tuple[str, str, list[str], dict]:
    """(REPO_ROOT, WORK_DIR, the remaining arguments, the findings dict with the version)."""
    root, work, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    sys.path.insert(0, root)
    os.environ.setdefault("BLENDER_USER_RESOURCES", os.path.join(work, "user"))
    import bpy
    import addon_utils      # importable once bpy is (Blender's own modules)

    def fail(exc):
        raise exc

    addon_utils.enable("emotalk3d_addon", default_set=False, handle_error=fail)
    return root, work, args, {"version": bpy.app.version_string}
