"""The ``emotalk3d`` command: the backend's outside contract.

Bad input of any kind: exit code 2 and one line ``error: ...`` on stderr (``--debug``
shows the traceback). ``validate`` exits 1 for an invalid bundle and lists its defects.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path
from typing import NoReturn

from ..errors import InputError

EXIT_INPUT = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, as for any bad input
        raise InputError(f"{self.prog}: {message}")


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="audio (+ emotion) -> TRACK.npz vertex track (the shape keys' mix)")
    p.add_argument("--subject", required=True, help="subject name (e.g. demo) or path to a bundle")
    p.add_argument("--audio", required=True, help="speech: an audio file, or a video with sound (any format FFmpeg reads)")
    p.add_argument("--out", required=True, help="TRACK.npz to write")
    p.add_argument("--fps", default="30", help="frame rate (23.976, 24, 25, 29.97, 30, 50, 60, ...)")
    p.add_argument("--emotion", help="one emotion for the whole clip (else keys or from speech)")
    p.add_argument("--intensity", type=float, default=1.0, help="0..1 (mild 0.5, strong 1.0)")
    p.add_argument("--keys", help="KEYS.json: [{frame, emotion, intensity}, ...] (0-based frames)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"),
                   help="auto: a CUDA GPU, else an Apple Silicon GPU (mps), else the CPU")
    p.add_argument("--encoder", help="override the subject's speech encoder (whisper:tiny.en, or a HuBERT hub id or folder)")


def _cmd_predict(args: argparse.Namespace) -> int:
    from ..performance.emotion_track import read_keys_json
    from ..performance.service import Performance
    from ..protocol.messages import EmotionSpec, PerformRequest
    from ..timebase import parse_fps

    if args.emotion and args.keys:
        raise InputError("give either --emotion/--intensity or --keys, not both")
    fps = parse_fps(args.fps)
    if args.emotion:
        emotion = EmotionSpec.constant(args.emotion, args.intensity)
    elif args.keys:
        emotion = EmotionSpec.keyed(read_keys_json(args.keys))
    else:
        emotion = EmotionSpec.speech()
    request = PerformRequest(args.subject, args.audio, (fps.numerator, fps.denominator), emotion,
                             device=args.device, encoder=args.encoder or "")
    result = Performance().perform(request)
    track, arkit = result.track, result.arkit()      # the one performance: the shape keys' mix
    track.coefficients = result.coefficients
    if arkit is not None:
        track.arkit = arkit.weights
    track.save_npz(args.out)
    solved = "" if arkit is None else f", ARKit weights (fit residual {arkit.rms_mm:.2f} mm RMS)"
    closed = int((result.mouth_gate < 1).sum())
    print(f"wrote {args.out}: {track.num_frames} frames at {float(fps):g} fps, "
          f"{track.vertices.shape[1]} vertices, {track.coefficients.shape[1]} shape keys{solved}; "
          f"mouth closed toward rest in {closed} frames of silence")
    return 0


def _cmd_export_arkit(args: argparse.Namespace) -> int:
    from ..arkit.live_link import write_csv
    from ..io.track import VertexTrack

    track = VertexTrack.load_npz(args.track)
    if track.arkit is None:
        raise InputError(f"{args.track} holds no ARKit weights: predict it with a subject that has ARKit shapes "
                         "(`emotalk3d info` lists an \"arkit\" section)")
    path = write_csv(track.arkit, track.fps, args.out)
    print(f"wrote {path}: {track.num_frames} frames of 52 ARKit weights at {float(track.fps):g} fps (Live Link Face CSV)")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from ..subject import load_subject, resolve_subject

    subject = load_subject(resolve_subject(args.subject))
    info = dict(subject.manifest)
    info["landmarks"] = dict(subject.geometry.landmarks)
    info["path"] = str(subject.root)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"{subject.name}: {subject.geometry.num_vertices} vertices, "
              f"{subject.basis.num_components} shape keys, encoder {subject.encoder.kind} "
              f"({subject.encoder.source}), trained at {subject.fps:g} fps")
        print("emotions: " + ", ".join(info["emotions"]))
        print("landmarks: " + ", ".join(f"{k}={v}" for k, v in info["landmarks"].items()))
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from ..subject import validate_subject

    defects = validate_subject(args.path)
    if defects:
        print(f"{args.path}: invalid subject bundle ({len(defects)} defects)")
        for d in defects:
            print(f"  - {d}")
        return 1
    print(f"{args.path}: valid subject bundle")
    return 0


def _cmd_render(args: argparse.Namespace) -> int:
    from ..device import resolve_device
    from ..performance.basis_frames import basis_vertices
    from ..render.files import parse_frames, write_layers
    from ..render.frame import FrameRenderer
    from ..render.layers import frame_layers
    from ..render.views import orbit_camera, parse_view
    from ..subject import load_subject, resolve_subject
    from ..io.track import VertexTrack

    parse_view(args.view)
    device = resolve_device(args.device)
    track = VertexTrack.load_npz(args.track)
    frames = parse_frames(args.frames, track.num_frames)
    subject = load_subject(resolve_subject(args.subject))
    if track.vertices.shape[1] != subject.geometry.num_vertices:
        raise InputError(f"the track has {track.vertices.shape[1]} vertices but subject {subject.name!r} has "
                         f"{subject.geometry.num_vertices}: it was predicted for another subject")
    renderer = FrameRenderer(subject, device)
    camera = orbit_camera(renderer.view_defaults, args.view, args.width, args.height)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    worst = 0.0
    for f in frames:
        # what Blender's shape keys show (a track predict wrote is that mix already: error 0)
        vertices, error = basis_vertices(subject, track.vertices[f:f + 1])
        worst = max(worst, error.max_mm)
        write_layers(frame_layers(renderer.render(vertices[0], track.emotion[f], float(track.intensity[f]), camera)),
                     out, f)
    print(f"wrote {len(frames)} frames ({camera.width}x{camera.height}, view {args.view}) to {out}; "
          f"motion-basis error at most {worst:.2f} mm")
    return 0


def _cmd_render_ply(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ..appearance.ply import read_ply
    from ..device import resolve_device
    from ..protocol.messages import CameraSpec
    from ..raster import rasterize
    from ..render.views import raster_camera

    device = resolve_device(args.device)
    try:
        camera = raster_camera(CameraSpec.from_dict(json.loads(Path(args.camera).read_text(encoding="utf-8")),
                                                    args.width, args.height))
    except FileNotFoundError:
        raise InputError(f"camera file not found: {args.camera}") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{args.camera} must hold {{\"K\": 3x3, \"world_to_camera\": 4x4}}: {exc}") from None
    except InputError as exc:
        raise InputError(f"{args.camera}: {exc}") from None
    gs = read_ply(args.ply).to(device)
    with torch.inference_mode():
        out = rasterize(gs.means, gs.unit_quats, gs.scales, gs.opacities, gs.sh, camera.to(device),
                        sh_degree=gs.sh_degree)
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, rgb=out.rgb.float().cpu().numpy(), alpha=out.alpha.float().cpu().numpy(),
             depth=out.depth.float().cpu().numpy())
    print(f"wrote {path}: {gs.num} Gaussians at {args.width}x{args.height}")
    return 0


def _cmd_train_s2g(args: argparse.Namespace) -> int:
    from ..device import resolve_device
    from ..train.s2g import S2GTrainConfig, train_s2g

    device = resolve_device(args.device)
    cfg = S2GTrainConfig(steps=args.steps, batch=args.batch, crop_frames=args.crop_frames, lr=args.lr,
                         encoder=None if args.bundled_encoder else args.encoder,
                         bundled_encoder=args.bundled_encoder or "small", hidden=args.hidden, seed=args.seed,
                         checkpoint_every=args.checkpoint_every, corpus=args.corpus,
                         min_crop_frames=args.min_crop_frames, exclude_engines=tuple(args.exclude_engine),
                         exclude_languages=tuple(args.exclude_language),
                         lip_weight=args.lip_weight, closure_weight=args.closure_weight, lip_on_mix=args.lip_on_mix,
                         closure_window=args.closure_window, feature_dropout=args.feature_dropout, ema_decay=args.ema_decay)
    train_s2g(args.data, args.out, cfg, resume=args.resume, name=args.name, device=device)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from ..device import resolve_device
    from ..train.appearance import AppearanceTrainConfig
    from ..train.full import FullTrainConfig, train_subject
    from ..train.s2g import S2GTrainConfig

    device = resolve_device(args.device)
    cfg = FullTrainConfig(
        S2GTrainConfig(steps=args.s2g_steps, batch=args.batch, encoder=None if args.bundled_encoder else args.encoder,
                       bundled_encoder=args.bundled_encoder or "small", seed=args.seed, corpus=args.corpus),
        AppearanceTrainConfig(canonical_steps=args.canonical_steps, g2a_steps=args.g2a_steps,
                              num_otf=args.completion_points, sh_degree=args.sh_degree, seed=args.seed,
                              rigid_parts=not args.no_rigid_parts,
                              g2a_finetune_canonical=not args.freeze_canonical))
    train_subject(args.data, args.out, cfg, resume=args.resume, name=args.name, device=device)
    return 0


def _cmd_train_appearance(args: argparse.Namespace) -> int:
    from ..device import resolve_device
    from ..train.appearance import AppearanceTrainConfig
    from ..train.full import canonical_into_bundle, g2a_into_bundle

    device = resolve_device(args.device)
    cfg = AppearanceTrainConfig(canonical_steps=getattr(args, "steps", 3000), g2a_steps=getattr(args, "steps", 3000),
                                num_otf=getattr(args, "completion_points", 85_500),
                                sh_degree=getattr(args, "sh_degree", 3), seed=args.seed,
                                rigid_parts=not getattr(args, "no_rigid_parts", False),
                                g2a_finetune_canonical=not getattr(args, "freeze_canonical", False))
    stage = canonical_into_bundle if args.command == "train-canonical" else g2a_into_bundle
    print(f"wrote {stage(args.data, args.subject, cfg, device=device)}")
    return 0


def _cmd_limit_observed(args: argparse.Namespace) -> int:
    from ..train.full import observed_into_bundle

    if args.views < 1 or not args.band > 0:
        raise InputError(f"--views must be >= 1 and --band > 0, got {args.views} and {args.band}")
    print(f"wrote {observed_into_bundle(args.data, args.subject, args.views, args.band)}")
    return 0


def _cmd_make_dataset(args: argparse.Namespace) -> int:
    from ..datasets.synthetic import make_dataset

    out = make_dataset(Path(args.out), preset=args.preset, seed=args.seed, overwrite=args.overwrite,
                       image_size=args.image_size, render_splits=tuple(args.render_split or ("train", "test")))
    print(f"wrote the {args.preset} dataset to {out}")
    return 0


def _add_appearance_flags(p: argparse.ArgumentParser, rigid: bool, freeze: bool) -> None:
    if rigid:
        p.add_argument("--no-rigid-parts", action="store_true",
                       help="no Gaussians for the dataset's rigid parts (eyeballs, teeth), even if it has them")
    if freeze:
        p.add_argument("--freeze-canonical", action="store_true",
                       help="the G2ANet stage trains only G2ANet (and rigid parts), as the paper does; "
                            "by default it fine-tunes the canonical Gaussians too")


def _add_train_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where to train: auto (a CUDA GPU if PyTorch sees one, else the CPU), cpu or cuda; "
                        "under torchrun on CUDA each process takes the GPU of its LOCAL_RANK")


def _add_encoder_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--encoder", default="whisper:tiny.en",
                   help="frozen speech encoder: whisper:tiny.en (default, from its pinned package), "
                        "or a pretrained HuBERT hub id or folder")
    p.add_argument("--bundled-encoder", choices=("tiny", "small"),
                   help="instead: train a small HuBERT of this size with the subject (tests)")


def _cmd_make_corpus(args: argparse.Namespace) -> int:
    from ..datasets.speech_corpus.build import make_corpus
    from ..datasets.speech_corpus.layout import load_corpus

    out = make_corpus(args.out, args.preset, args.seed, args.workers)
    corpus = load_corpus(out)
    print(f"corpus {out}: {len(corpus.recordings)} recordings, {corpus.hours('train'):.2f} h train, "
          f"{corpus.hours('test'):.2f} h held out")
    return 0


def _cmd_evaluate_lipsync(args: argparse.Namespace) -> int:
    from .evaluate_lipsync import evaluate_corpus, evaluate_recordings, format_report
    from .evaluate import write_report
    from ..protocol.messages import EmotionSpec
    from ..subject import load_subject, resolve_subject

    if len(args.audio) != len(args.phones):
        raise InputError("give one --phones file for each --audio file")
    if not args.corpus and not args.audio:
        raise InputError("give --corpus, or --audio with --phones")
    if args.own_speech and not args.audio:
        raise InputError("--own-speech compares recordings (--audio with --phones) with the subject's own speech")
    subject = load_subject(resolve_subject(args.subject))
    own = None
    if args.own_speech:                 # read before the long scoring, so a bad folder fails at once
        from ..datasets.layout import load_dataset
        from .own_speech import own_speech_gaps
        own = own_speech_gaps(load_dataset(args.own_speech))
    report = {}
    if args.corpus:
        report["corpus"] = evaluate_corpus(subject, args.corpus, args.split, args.max_recordings)
        print(format_report(report["corpus"]))
    if args.audio:
        emotion = EmotionSpec.constant(args.emotion) if args.emotion else None
        report["recordings"] = evaluate_recordings(subject, list(zip(args.audio, args.phones)), emotion=emotion,
                                                   own_speech=own)
        print(format_report(report["recordings"]))
    if args.json:
        write_report(report, args.json)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate, write_report
    from ..subject import load_subject, resolve_subject

    result = evaluate(load_subject(resolve_subject(args.subject)), args.data, args.split, args.max_images,
                      sheet=args.sheet)
    print(json.dumps(result, indent=2))
    if args.json:
        write_report(result, args.json)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="emotalk3d", description="EmoTalk3D backend: speech -> 3D talking head")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_predict(sub)
    p = sub.add_parser("export-arkit", help="TRACK.npz ARKit weights -> a Live Link Face CSV (Unreal, Maya, iClone)")
    p.add_argument("--track", required=True, help="a TRACK.npz predicted for a subject with ARKit shapes")
    p.add_argument("--out", required=True, help="FILE.csv")
    p = sub.add_parser("info", help="print a subject's manifest")
    p.add_argument("--subject", required=True)
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("validate", help="check a subject bundle; exit 1 listing its defects")
    p.add_argument("path")
    p = sub.add_parser("render", help="TRACK.npz -> per-frame rgba/depth/matte passes")
    p.add_argument("--subject", required=True)
    p.add_argument("--track", required=True)
    p.add_argument("--out", required=True, help="folder for rgba_NNNN.png, depth_NNNN.npy, matte_NNNN.png")
    p.add_argument("--frames", help="A-B (0-based, inclusive)")
    p.add_argument("--width", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--view", default="front", help="front | left | right | yaw:DEG")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p = sub.add_parser("render-ply", help="render any standard 3DGS PLY")
    p.add_argument("--ply", required=True)
    p.add_argument("--camera", required=True, help='CAM.json: {"K": 3x3, "world_to_camera": 4x4} (OpenCV)')
    p.add_argument("--width", type=int, required=True)
    p.add_argument("--height", type=int, required=True)
    p.add_argument("--out", required=True, help="OUT.npz with rgb, alpha, depth")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p = sub.add_parser("train-s2g", help="train S2GNet + emotion extractor into a subject bundle")
    p.add_argument("--data", required=True, help="dataset subject folder (README: dataset layout)")
    p.add_argument("--out", required=True, help="subject bundle folder (or .zip) to write")
    p.add_argument("--name", help="subject name (default: the dataset's)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop-frames", type=int, default=90)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lip-weight", type=float, default=0.0,
                   help="weight of the lip-gap error beside the vertex error (0: off)")
    p.add_argument("--closure-weight", type=float, default=0.0,
                   help="weight of the lips left open on p/b/m frames of the synthesiser's phones "
                        "(0: off; the demo subject: 0.05)")
    p.add_argument("--closure-window", type=int, default=0,
                   help="frames either side of a p/b/m frame where the closure term looks for the lips shut "
                        "(0: that frame only; the demo subject: 1, as the lip-sync score counts a closure)")
    p.add_argument("--feature-dropout", type=float, default=0.0, help="dropout on the speech features in training")
    p.add_argument("--lip-on-mix", action="store_true",
                   help="measure the lip and closure terms on the shape keys' mix (what the artist sees)")
    p.add_argument("--ema-decay", type=float, default=0.0,
                   help="> 0: the bundle keeps this exponential moving average of the weights "
                        "(0: off; the demo subject: 0.998)")
    p.add_argument("--hidden", type=int, default=256)
    _add_encoder_args(p)
    p.add_argument("--corpus", help="a speech corpus (make-corpus) to train on beside the dataset")
    p.add_argument("--min-crop-frames", type=int, help="shortest training crop (default: --crop-frames)")
    p.add_argument("--exclude-engine", action="append", default=[], choices=("espeak-ng", "flite", "festival", "piper"),
                   help="leave this engine's corpus recordings out of training (an ablation); repeatable")
    p.add_argument("--exclude-language", action="append", default=[], metavar="CODE",
                   help="leave this language's corpus recordings out of training (an ablation, e.g. it); "
                        "repeatable")
    p.add_argument("--checkpoint-every", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from OUT.checkpoints/")
    _add_train_device(p)
    p = sub.add_parser("train", help="train a complete subject (speech->geometry and appearance)")
    p.add_argument("--data", required=True, help="dataset subject folder with cameras and images")
    p.add_argument("--out", required=True, help="subject bundle folder (or .zip) to write")
    p.add_argument("--name")
    p.add_argument("--s2g-steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--canonical-steps", type=int, default=3000)
    p.add_argument("--g2a-steps", type=int, default=3000)
    p.add_argument("--completion-points", type=int, default=85_500, help="head-completion (OTF) points")
    p.add_argument("--sh-degree", type=int, default=3, choices=(0, 1, 2, 3))
    _add_appearance_flags(p, rigid=True, freeze=True)
    _add_encoder_args(p)
    p.add_argument("--corpus", help="a speech corpus (make-corpus) for the speech-to-geometry stage")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true")
    _add_train_device(p)
    p = sub.add_parser("train-canonical", help="canonical Gaussians (3DGS) into an existing subject bundle")
    p.add_argument("--data", required=True)
    p.add_argument("--subject", required=True, help="bundle folder written by train-s2g")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--completion-points", type=int, default=85_500)
    p.add_argument("--sh-degree", type=int, default=3, choices=(0, 1, 2, 3))
    _add_appearance_flags(p, rigid=True, freeze=False)
    p.add_argument("--seed", type=int, default=0)
    _add_train_device(p)
    p = sub.add_parser("train-g2a", help="train the bundle's G2ANet on multi-view frames with their meshes")
    p.add_argument("--data", required=True)
    p.add_argument("--subject", required=True)
    p.add_argument("--steps", type=int, default=3000)
    _add_appearance_flags(p, rigid=False, freeze=True)
    p.add_argument("--seed", type=int, default=0)
    _add_train_device(p)
    p = sub.add_parser("limit-observed", help="keep a bundle's head-completion Gaussians to what its dataset's "
                                              "cameras saw (soft edge, no fog or specks below the shoulders)")
    p.add_argument("--data", required=True, help="the dataset folder the subject was trained on (its cameras.json)")
    p.add_argument("--subject", required=True)
    p.add_argument("--views", type=int, default=1, help="cameras that must have a Gaussian's centre in their image "
                                                         "(default 1)")
    p.add_argument("--band", type=float, default=0.03, help="width of the soft edge, metres (default 0.03)")
    p = sub.add_parser("make-corpus", help="build a multi-engine, multi-voice speech corpus for S2GNet")
    p.add_argument("--out", required=True, help="corpus folder (rerun with the same folder to resume)")
    p.add_argument("--preset", default="demo", help="demo (2 h), small (15 min) or tiny (tests)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, help="parallel processes (default: up to 2)")
    p = sub.add_parser("evaluate-lipsync", help="does the mouth follow the phones? (held-out corpus voices, "
                                                "or recordings with a phone alignment)")
    p.add_argument("--subject", required=True)
    p.add_argument("--corpus", help="score this corpus's split")
    p.add_argument("--split", default="test", choices=("train", "test"))
    p.add_argument("--max-recordings", type=int)
    p.add_argument("--audio", action="append", default=[], help="a recording (with --phones); repeatable")
    p.add_argument("--phones", action="append", default=[],
                   help="its phones: Praat TextGrid or 'start end phone' lines (ARPAbet or IPA)")
    p.add_argument("--emotion", help="key this emotion on the --audio recordings (default: heard in the speech)")
    p.add_argument("--own-speech", metavar="DATASET",
                   help="set the recordings' lip gap beside the subject's own neutral training speech in "
                        "this dataset (per phone class, and at the recordings' phone mix)")
    p.add_argument("--json", help="also write the scores to this file")
    p = sub.add_parser("make-dataset", help="generate the synthetic multi-view emotional dataset")
    p.add_argument("--out", required=True)
    p.add_argument("--preset", default="demo", choices=("demo", "tiny"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace a dataset this generator made")
    p.add_argument("--image-size", type=int, help="square image size in pixels (default: the preset's; "
                                                  "the same cameras and sequences at every size)")
    p.add_argument("--render-split", action="append", choices=("train", "test"),
                   help="render images of this split only (repeatable; default: both)")
    p = sub.add_parser("evaluate", help="lip vertex error, landmark distance, PSNR/SSIM on unseen sequences")
    p.add_argument("--subject", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test", choices=("train", "test"))
    p.add_argument("--max-images", type=int, default=200, help="rendered test images to score")
    p.add_argument("--json", help="also write the scores to this file")
    p.add_argument("--sheet", help="FILE.png: every emotion at its strongest, three views, truth beside render")
    p = sub.add_parser("gpu-check", help="torch's build and devices, and which rasterisers run here (for support)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--emulate", action="store_true",
                   help="also run the GPU rasteriser's Triton kernels in the interpreter on the CPU against the CPU "
                        "rasteriser on the demo head (64x64; minutes)")
    return parser


def _cmd_gpu_check(args: argparse.Namespace) -> int:
    from .gpu_check import gpu_check, print_report

    report = gpu_check(emulate=args.emulate)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return 0


COMMANDS = {"predict": _cmd_predict, "export-arkit": _cmd_export_arkit, "info": _cmd_info, "validate": _cmd_validate,
            "render": _cmd_render, "render-ply": _cmd_render_ply, "train-s2g": _cmd_train_s2g,
            "train": _cmd_train, "evaluate": _cmd_evaluate, "make-dataset": _cmd_make_dataset,
            "make-corpus": _cmd_make_corpus, "evaluate-lipsync": _cmd_evaluate_lipsync,
            "train-canonical": _cmd_train_appearance, "train-g2a": _cmd_train_appearance,
            "limit-observed": _cmd_limit_observed, "gpu-check": _cmd_gpu_check}


SOURCE_ONLY = ("emotalk3d_addon.backend.train", "emotalk3d_addon.backend.datasets",
               "emotalk3d_addon.backend.tools.demo_build", "emotalk3d_addon.synth_render")   # not in the extension zip


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except InputError as exc:
        if debug:
            traceback.print_exc()
        defects = getattr(exc, "defects", None)
        if defects:
            message = f"invalid subject bundle {exc.where}: " + "; ".join(defects)
        else:
            message = " ".join(str(exc).split())
        print(f"error: {message}", file=sys.stderr)
        return EXIT_INPUT
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith(SOURCE_ONLY):
            raise
        print(f"error: '{argv[0] if argv else ''}' needs {exc.name}, which only a source checkout holds (the "
              "Blender extension leaves the dataset, training and demo-build tools out): run it from the "
              "repository", file=sys.stderr)
        return EXIT_INPUT
    except OSError as exc:  # unreadable input, unwritable output
        if debug:
            traceback.print_exc()
        print(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def run(argv: list[str] | None = None) -> NoReturn:
    """The console entry: ``main``, then leave without tearing the interpreter down.

    Every command has closed its files when ``main`` returns. Tearing down the module graph
    of torch and transformers (final garbage collection, atexit hooks) costs about 0.9 s on
    2 cores, a seventh of a cold ``predict`` of 60 s (BENCHMARKS.md), so it is skipped.
    """
    code = main(argv)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):   # a closed or broken pipe: nothing more can be said
            pass
    os._exit(code)


if __name__ == "__main__":
    run()
