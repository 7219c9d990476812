"""The ``generate`` and ``render`` commands without the UI.

    blender -b --command emotalk3d generate --subject S --audio FILE
            [--emotion N --intensity X | --keys KEYS.json] [--fps F] --save OUT.blend
    blender -b --command emotalk3d render FILE.blend [--frames A-B] --out DIR
    python -m emotalk3d_addon generate|render ...   (bpy from PyPI, no Blender install)

``render`` renders the file's scene through its compositor (so the head's Gaussian passes
are layered as Set Up Compositing arranged them) and writes one PNG per frame,
``DIR/frame_0001.png`` ..., exactly as ``blender -b FILE.blend -s A -e B -a`` would, without
changing the file.

It fills the scene's EmoTalk3D settings (``--keys`` become real emotion keys on the
timeline, so the saved file can be re-generated in the UI), runs the same job as the
Generate button synchronously (which also fits the scene's frame range to the performance;
in a file given with ``--open`` the range is only widened) and saves.
Exit codes: 0 done, 2 bad input (one ``error: ...`` line on stderr), 1 other failures.
"""
from __future__ import annotations

import argparse
import os
import sys

import bpy

EXIT_INPUT = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        raise ValueError(f"{self.prog}: {message}")


def build_parser(prog: str = "emotalk3d") -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description="EmoTalk3D for Blender: speech -> facial performance in a .blend")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    g = sub.add_parser("generate", help="audio (+ emotion) -> head with a shape-key action, saved as .blend")
    g.add_argument("--subject", required=True, help="subject name (library folders, bundled demo) or bundle path")
    g.add_argument("--audio", required=True, help="speech: an audio file (WAV, FLAC, OGG, MP3, M4A/AAC, Opus, AIFF) or a video's sound (MP4, MOV, MKV, WebM)")
    g.add_argument("--save", required=True, help="the .blend to write")
    g.add_argument("--emotion", help="one emotion for the whole clip")
    g.add_argument("--intensity", type=float, default=1.0, help="0..1 (mild 0.5, strong 1.0)")
    g.add_argument("--keys", help="KEYS.json: [{frame, emotion, intensity}], frames 0-based from the audio start")
    g.add_argument("--fps", help="scene frame rate (24, 25, 29.97, 30, ...); default: the scene's")
    g.add_argument("--start-frame", type=int, default=1, help="scene frame where the audio starts (default 1)")
    g.add_argument("--fill-from-speech", action="store_true",
                   help="with --keys: the emotion heard in the speech fills the gaps between keys")
    g.add_argument("--push-to-nla", action="store_true", help="put the performance on an NLA track")
    g.add_argument("--open", help="a .blend to open first (the file with your character)")
    g.add_argument("--target", help="a mesh object with ARKit-named shape keys to drive instead of the subject's head")
    g.add_argument("--blinks", action="store_true", help="with --target: add natural blinks as keys")
    g.add_argument("--python", help="backend interpreter (default: preferences, $EMOTALK3D_PYTHON, ...)")
    g.add_argument("--library", action="append", default=[], help="extra subject library folder (repeatable)")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), help="backend device (default: preferences)")
    g.add_argument("--encoder", help="speech encoder override (folder or hub id)")
    r = sub.add_parser("render", help="render a .blend through its compositor, one PNG per frame")
    r.add_argument("file", help="the .blend to render (it is not modified)")
    r.add_argument("--out", required=True, help="folder for frame_####.png")
    r.add_argument("--frames", help="A-B or N (default: the scene's frame range)")
    r.add_argument("--scene", help="scene name (default: the file's active scene)")
    r.add_argument("--python", help="backend interpreter (default: preferences, $EMOTALK3D_PYTHON, ...)")
    r.add_argument("--library", action="append", default=[], help="extra subject library folder (repeatable)")
    r.add_argument("--device", choices=("auto", "cpu", "cuda"), help="backend device (default: preferences)")
    return parser


def main(argv: list[str]) -> int:
    from ..backend.errors import InputError
    from . import worker_client
    from .errors import UserError

    try:
        args = build_parser().parse_args(argv)
        return _render(args) if args.command == "render" else _generate(args)
    except (ValueError, UserError, InputError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_INPUT
    finally:
        worker_client.shutdown_client()


def _settings(args):
    from .. import preferences
    from .settings import Settings

    prefs = preferences.current_settings()
    return Settings(python=args.python or prefs.python, libraries=tuple(args.library) + prefs.libraries,
                    encoder=args.encoder if args.encoder is not None else prefs.encoder,
                    device=args.device or prefs.device, cache_mb=prefs.cache_mb)


def _generate(args) -> int:
    from ..backend.performance.emotion_track import read_keys_json
    from ..backend.emotions import EMOTIONS, check_intensity, emotion_index
    from ..operators.generate import GenerateSession
    from . import jobs, keys, timing

    if args.emotion and args.keys:
        raise ValueError("give either --emotion/--intensity or --keys, not both")
    if not os.path.isfile(args.audio):
        raise ValueError(f"audio file not found: {args.audio}")
    if args.open:
        if not os.path.isfile(args.open):
            raise ValueError(f".blend file not found: {args.open}")
        bpy.ops.wm.open_mainfile(filepath=os.path.abspath(args.open))
    scene = bpy.context.scene
    if args.target:
        from . import arkit_target

        target = scene.objects.get(args.target)
        if target is None or not arkit_target.is_character(target):
            raise ValueError(f"no mesh object with shape keys named {args.target!r} in scene {scene.name!r}")
        scene.emotalk3d.target = target
        scene.emotalk3d.blinks = bool(args.blinks)
    if args.fps:
        fps, base = timing.scene_rate_settings(timing.parse_rate(args.fps))
        scene.render.fps, scene.render.fps_base = fps, base
    s = scene.emotalk3d
    s.subject = os.path.abspath(args.subject) if os.path.exists(args.subject) else args.subject
    s.audio_source, s.audio_file, s.audio_start = 'FILE', os.path.abspath(args.audio), int(args.start_frame)
    s.push_to_nla = bool(args.push_to_nla)
    if args.emotion:
        s.emotion = EMOTIONS[emotion_index(args.emotion)]
        s.intensity = check_intensity(args.intensity)
    elif args.keys:
        for key in read_keys_json(args.keys):
            s.emotion, s.intensity = key.emotion, key.intensity
            keys.insert_key(scene, frame=args.start_frame + key.frame)
        s.fill_from_speech = bool(args.fill_from_speech)
    else:
        s.fill_from_speech = True                  # no emotion given: heard in the speech

    # the range: exactly the performance's in a new scene, only widened in the artist's file (--open)
    session = GenerateSession(jobs.build_request(scene, _settings(args), exact_frame_range=not args.open))
    print(f"EmoTalk3D: generating from {args.audio} with subject {args.subject} ...", file=sys.stderr)
    session.run()
    result, level, message = session.finish(bpy.context)
    if 'FINISHED' not in result:
        print(f"error: {message.removeprefix('EmoTalk3D: ')}", file=sys.stderr)
        return EXIT_INPUT if session.job.error_kind in ("input", "missing") else 1
    applied = session.applied
    scene.frame_set(scene.frame_start)
    out = os.path.abspath(args.save)
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=out, compress=True)
    if _relative_paths(scene, applied.head):     # portable to a render farm: paths relative to the file
        bpy.ops.wm.save_mainfile(compress=True)
    print(message)
    print(f"saved {out}")
    return 0


def _relative_paths(scene, head) -> bool:
    """Store the subject (when given as a path) and the file paths relative to the saved .blend."""
    changed = False
    for owner in (scene.emotalk3d, head.emotalk3d_head):
        ref = owner.subject
        if ref and os.path.isabs(ref):
            try:
                owner.subject = bpy.path.relpath(ref)
                changed = True
            except ValueError:                  # another drive (Windows): keep it absolute
                pass
    try:
        bpy.ops.file.make_paths_relative()
        changed = True
    except RuntimeError:
        pass
    return changed


def parse_frames(text: str | None, default: tuple[int, int]) -> tuple[int, int]:
    """"A-B" or "N" -> (first, last); ValueError for anything else."""
    if not text:
        return default
    parts = text.split("-") if not text.startswith("-") else [text]
    try:
        first, last = (int(parts[0]), int(parts[-1])) if len(parts) in (1, 2) else (None, None)
    except ValueError:
        first = last = None
    if first is None or last is None or last < first:
        raise ValueError(f"--frames must be A-B with A <= B, or one frame N; got {text!r}")
    return first, last


def _render(args) -> int:
    from .. import engine, preferences

    path = os.path.abspath(args.file)
    if not os.path.isfile(path):
        raise ValueError(f"blend file not found: {args.file}")
    try:
        bpy.ops.wm.open_mainfile(filepath=path, load_ui=False)
    except RuntimeError as exc:
        raise ValueError(f"could not open {args.file}: {' '.join(str(exc).split())}") from None
    scene = bpy.data.scenes.get(args.scene) if args.scene else bpy.context.scene
    if scene is None:
        raise ValueError(f"no scene named {args.scene!r} in {args.file}")
    prefs = preferences.get_prefs()
    if args.python:
        prefs.python = args.python
    if args.device:
        prefs.device = args.device
    for folder in args.library:
        if hasattr(prefs.libraries, "add"):
            prefs.libraries.add().path = os.path.abspath(folder)
        else:
            prefs.libraries.append(os.path.abspath(folder))
    first, last = parse_frames(args.frames, (scene.frame_start, scene.frame_end))
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    scene.frame_start, scene.frame_end = first, last
    scene.render.filepath = os.path.join(out, "frame_")
    scene.render.use_file_extension = True
    scene.render.image_settings.file_format = 'PNG'
    scene.render.image_settings.color_mode = 'RGBA'
    engine.ERRORS.clear()
    try:
        bpy.ops.render.render(animation=True, scene=scene.name)
    except RuntimeError as exc:
        raise ValueError(f"render failed: {' '.join(str(exc).split())}") from None
    if engine.ERRORS:
        raise ValueError(engine.ERRORS[0])
    written = [scene.render.frame_path(frame=f) for f in range(first, last + 1, max(1, scene.frame_step))]
    missing = [p for p in written if not os.path.isfile(p)]
    if missing:
        print(f"error: {len(missing)} frame(s) were not written, first {missing[0]}", file=sys.stderr)
        return 1
    print(f"rendered {len(written)} frame(s) of {scene.name!r} into {out}")
    return 0


def cli_command(argv) -> int:
    """Entry point for ``blender --command emotalk3d ...`` (bpy.utils.register_cli_command)."""
    return main(list(argv))
