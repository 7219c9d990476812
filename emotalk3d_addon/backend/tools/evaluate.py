"""``emotalk3d evaluate``: a subject measured on sequences its training never saw.

Geometry (predicted from the test audio, emotion label given; the performance's one track,
the shape keys' mix that ``predict`` writes and Blender shows, mouth closed in silence):
  LVE  lip vertex error, mm (max over lip vertices per frame, averaged over frames).
  LMD  landmark distance, pixels: the predicted mesh's landmarks vs the tracked mesh's,
       projected into every test camera (no learned landmark detector is involved).
Appearance (renders against the dataset's images, premultiplied RGB on black):
  PSNR / SSIM of three variants: full chain (predicted mesh, canonical + dynamic
  Gaussians), tracked mesh with canonical + dynamic Gaussians, and the paper's ablation,
  tracked mesh with canonical Gaussians only (G2ANet off); over whole images, and per
  emotion and face region (mouth, eyes_brows, cheeks from the tracked mesh; outside_face;
  all) in ``per_emotion``. ``sheet``: a contact sheet PNG of every emotion from three views.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..appearance.dynamic import AnimatedHead
from ..appearance.g2anet import G2ANet
from ..io.audio import load_audio
from ..datasets.layout import load_dataset
from ..datasets.multiview import load_cameras, read_rgba, views
from ..errors import DatasetError, InputError
from .evaluate_regions import RegionScores, table, write_sheet
from .face_regions import image_masks, region_map, vertex_regions
from .metrics import landmark_distance, lip_vertex_error, lip_vertices, project
from ..performance.service import Performance
from ..protocol.messages import EmotionSpec
from ..render.frame import FrameRenderer, render_head
from ..subject import Subject
from ..timebase import parse_fps
from ..train.appearance import emotion_vector
from ..train.image_losses import psnr, ssim


@dataclass
class Scores:
    psnr: list
    ssim: list

    def add(self, render: torch.Tensor, target: torch.Tensor) -> None:
        self.psnr.append(psnr(render, target))
        self.ssim.append(float(ssim(render, target)))

    def summary(self) -> dict:
        return {"psnr": float(np.mean(self.psnr)), "ssim": float(np.mean(self.ssim)), "images": len(self.psnr)}


def evaluate(subject: Subject, data: str | Path, split: str = "test", max_images: int = 200,
             log: Callable[[str], None] = print, sheet: str | Path | None = None) -> dict:
    """Scores of ``subject`` on the ``split`` sequences of the dataset at ``data``."""
    dataset = load_dataset(data)
    sequences = dataset.split(split)
    if not sequences:
        raise DatasetError(f"{data} has no sequences in the {split!r} split")
    if subject.geometry.num_vertices != dataset.topology.template.shape[0]:
        raise InputError("the subject and the dataset have different mesh topologies")
    performance = Performance()
    loaded = performance.add_subject(subject)
    lips = lip_vertices(subject.geometry.template, subject.geometry.landmarks)
    names = sorted(subject.geometry.landmarks)
    landmark_idx = np.array([subject.geometry.landmarks[n] for n in names])
    cameras = load_cameras(data) if subject.appearance is not None else []
    lve, lmd = [], []
    predicted: dict[str, np.ndarray] = {}
    for seq in sequences:
        wave = load_audio(seq.audio_path)
        fps = parse_fps(seq.fps)
        track = performance.perform_waveform(loaded, wave, fps, EmotionSpec.constant(seq.emotion, seq.intensity),
                                             device="cpu").track
        truth = np.asarray(seq.meshes(), np.float32)
        predicted[seq.name] = track.vertices
        lve.append(lip_vertex_error(track.vertices, truth, lips))
        n = min(len(truth), track.num_frames)
        for cam in cameras:
            K, w2c = cam.camera.K.numpy(), cam.camera.world_to_camera.numpy()
            lmd.append(landmark_distance(project(track.vertices[:n, landmark_idx], K, w2c),
                                         project(truth[:n, landmark_idx], K, w2c)))
        log(f"{seq.name}: LVE {lve[-1]:.2f} mm")
    result = {"split": split, "sequences": len(sequences), "lve_mm": float(np.mean(lve)),
              "lmd_px": float(np.mean(lmd)) if lmd else None}
    if subject.appearance is not None:
        everything = sequences + [s for name in ("test", "train") if name != split for s in dataset.split(name)]
        result |= _appearance_scores(subject, sequences, cameras, predicted, max_images, log, sheet, everything)
    return result


def _appearance_scores(subject, sequences, cameras, predicted, max_images, log, sheet=None,
                       sheet_sequences=None) -> dict:
    renderer = FrameRenderer(subject)
    full = renderer.head
    canonical_only = AnimatedHead(full.canonical, full.binding, full.otf, G2ANet(full.net.config).eval(),
                                  full.rigid, full.smoothing)
    selected = views(sequences, cameras)
    if not selected:
        return {}
    step = max(1, len(selected) // max_images)
    selected = selected[::step][:max_images]
    scores = {k: Scores([], []) for k in ("full_chain", "tracked_mesh", "canonical_only")}
    regions = RegionScores()
    g = subject.geometry
    labels = vertex_regions(g.template, g.landmarks, g.face_mask)
    meshes: dict[str, np.ndarray] = {}

    def mesh_of(seq) -> np.ndarray:
        if seq.name not in meshes:
            meshes[seq.name] = np.asarray(seq.meshes(), np.float32)
        return meshes[seq.name]

    def emotion_of(seq) -> torch.Tensor:
        return emotion_vector(seq.emotion, seq.intensity if seq.emotion != "neutral" else 0.0)

    with torch.inference_mode():
        for v in selected:
            rgba = read_rgba(v.path)
            target = rgba[..., :3]
            truth_np = mesh_of(v.sequence)[v.frame].copy()
            truth = torch.from_numpy(truth_np)
            pred = torch.from_numpy(predicted[v.sequence.name][min(v.frame, len(predicted[v.sequence.name]) - 1)])
            e = emotion_of(v.sequence)
            masks = image_masks(region_map(truth_np, g.triangles, labels, v.camera.camera), rgba[..., 3].numpy())
            for key, head, mesh in (("full_chain", full, pred), ("tracked_mesh", full, truth),
                                    ("canonical_only", canonical_only, truth)):
                render = render_head(head, mesh, e, v.camera.camera).rgb.clamp(0, 1)
                scores[key].add(render, target)
                regions.add(v.sequence.emotion, key, render, target, masks)
        if sheet is not None:
            def render_view(seq, frame, cam):
                mesh = torch.from_numpy(mesh_of(seq)[frame].copy())
                return render_head(full, mesh, emotion_of(seq), cam.camera).rgb.clamp(0, 1).numpy()

            write_sheet(sheet, sheet_sequences or sequences, cameras, render_view,
                        lambda path: read_rgba(path)[..., :3].numpy())
            log(f"contact sheet: {sheet}")
    out = {k: s.summary() for k, s in scores.items()}
    log("renders: " + ", ".join(f"{k} PSNR {v['psnr']:.2f} dB SSIM {v['ssim']:.3f}" for k, v in out.items()))
    per_emotion = regions.report()
    log("PSNR (dB) per emotion and region, tracked mesh:\n" + table(per_emotion))
    return {"renders": out, "per_emotion": per_emotion, "per_emotion_images": dict(regions.images)}


def write_report(result: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(result, indent=2) + "\n")
