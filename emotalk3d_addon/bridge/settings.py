"""The add-on preferences as plain values, read once per action.

``Settings.from_prefs`` turns the AddonPreferences (or the headless stand-in) into a frozen
value that the bridge passes around; nothing below it reads preferences again. The backend
interpreter is resolved here too: the preference, else the environment 'Install backend'
built in the extension's user folder, else $EMOTALK3D_PYTHON.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import subjects

ADDON_ID = __package__.rpartition(".")[0]


@dataclass(frozen=True)
class Settings:
    python: str = ""                     # the Backend Python preference (interpreter or environment folder)
    libraries: tuple[str, ...] = ()      # subject library folders the artist added
    encoder: str = ""                    # speech encoder override ("" = the subject's own)
    device: str = "auto"                 # auto | cpu | cuda
    cache_mb: int = 512                  # the worker's feature cache
    render_ahead: bool = True            # animation renders: the worker renders the next frame meanwhile

    @classmethod
    def from_prefs(cls, prefs) -> "Settings":
        libraries = tuple(lib.path if hasattr(lib, "path") else str(lib) for lib in prefs.libraries
                          if (getattr(lib, "path", lib) or "").strip())
        return cls(python=prefs.python, libraries=libraries, encoder=prefs.encoder, device=prefs.device,
                   cache_mb=int(prefs.cache_mb), render_ahead=bool(prefs.render_ahead))

    def library_dirs(self) -> list[Path]:
        """Folders searched for subjects: the artist's, $EMOTALK3D_SUBJECT_PATH's, the bundled one."""
        return subjects.library_dirs(self.libraries)

    def python_path(self) -> str:
        """The backend interpreter; WorkerError saying how to set one when none is usable."""
        import bpy

        from . import worker_client

        module_mode = not bpy.app.binary_path   # bpy from PyPI: this interpreter is a normal Python
        return worker_client.resolve_python(self.python, user_env_dir(), module_mode)


def user_env_dir() -> Path | None:
    """The folder 'Install backend' builds its environment in (None when not an installed extension)."""
    from . import compat, worker_client

    base = compat.extension_user_dir(ADDON_ID, create=False)
    if base is None:
        return None
    return Path(base) / worker_client.BACKEND_ENV_DIRNAME
