"""``python -m emotalk3d_addon``: the extension's commands without a Blender install.

    python -m emotalk3d_addon generate --subject S --audio FILE [...] --save OUT.blend
        the same as ``blender -b --command emotalk3d generate ...``, with bpy from PyPI
    python -m emotalk3d_addon render FILE.blend [--frames A-B] --out DIR
        render through the compositor, one PNG per frame (as ``blender -b FILE -s A -e B -a``)
    python -m emotalk3d_addon build [--out DIR]
        build the extension zip with Blender's own ``extension build`` (bl_pkg)
    python -m emotalk3d_addon backend-plan [--platform P] [--gpu nvidia|none] [--device D] [--json]
        what Preferences > Install Backend downloads on that machine (default: this one)
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def blender_ext_script() -> Path:
    """Blender's extension CLI (``blender --command extension ...``) inside bpy."""
    import bpy

    return Path(bpy.utils.system_resource('SCRIPTS')) / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"


def build(out_dir: str | Path, source_dir: Path = PACKAGE_DIR) -> Path:
    """Validate and build the extension zip into ``out_dir``; returns the zip's path."""
    script = blender_ext_script()
    out = Path(out_dir).absolute()
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, str(script), "build", "--source-dir", str(source_dir),
                    "--output-dir", str(out)], check=True)
    import tomllib

    manifest = tomllib.loads((source_dir / "blender_manifest.toml").read_text(encoding="utf-8"))
    return out / f"{manifest['id']}-{manifest['version']}.zip"


def backend_plan(argv: list[str]) -> int:
    """Print Install Backend's plan for a machine: a short text, or JSON with --json."""
    import argparse
    import json

    from .bridge import install_plan as ip

    parser = argparse.ArgumentParser(
        prog="python -m emotalk3d_addon backend-plan",
        description="What Preferences > Install Backend downloads on a machine. JSON keys: torch_variant "
                    "(cuda, cpu or mps), index (where torch and torchaudio come from), commands and "
                    "optional_commands (each an argument list that follows the new environment's Python, "
                    "starting '-m pip install'; optional ones may fail without failing the install), "
                    "size_mb (approximate download), description, note, platform.")
    parser.add_argument("--platform", default=None,
                        help=f"{', '.join(ip.PLATFORMS)} (others are not supported); default: this machine")
    parser.add_argument("--gpu", choices=("nvidia", "none"), default=None,
                        help="whether an NVIDIA driver is present; default: probed on this machine")
    parser.add_argument("--device", choices=ip.DEVICES, default="auto",
                        help="the Device preference (auto: the GPU when there is one)")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    args = parser.parse_args(argv)
    nvidia = ip.nvidia_driver_present() if args.gpu is None else args.gpu == "nvidia"
    try:
        plan = ip.plan_for(args.platform or ip.current_platform(), nvidia, args.device)
    except ip.UnsupportedPlatform as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
        return 0
    print(f"{plan.platform}: {plan.description} (torch: {plan.torch_variant}, from {plan.index})")
    if plan.note:
        print(f"note: {plan.note}")
    for command in plan.commands:
        print("  python " + " ".join(command))
    for command in plan.optional_commands:
        print("  python " + " ".join(command) + "   (optional)")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["backend-plan"]:
        return backend_plan(argv[1:])
    if argv[:1] == ["build"]:
        out = argv[argv.index("--out") + 1] if "--out" in argv else "dist"
        print(build(out))
        return 0
    if argv[:1] not in (["generate"], ["render"]):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    import bpy  # noqa: F401 - makes Blender's own modules (addon_utils) importable

    import addon_utils as au

    package = __package__ or "emotalk3d_addon"
    module = sys.modules.get(package)
    if module is not None and getattr(module, "__file__", None):   # already imported (we run from it):
        import os                                                # don't let addon_utils reload it

        module.__time__ = os.path.getmtime(module.__file__)
    au.enable(package, default_set=False, handle_error=_raise)
    from .bridge import headless

    try:
        return headless.main(argv)
    finally:
        au.disable(package, default_set=False)


def _raise(exc: BaseException) -> None:
    raise exc


if __name__ == "__main__":
    sys.exit(main())
