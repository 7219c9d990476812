"""Blender side: a performance as shape keys + one Action (bpy 5.0.1 from PyPI, CPU).

Figures printed:
1. writing a 10-minute performance (18,000 frames at 30 fps, K = 32 basis shape keys)
   into an Action: the bulk writer (``keyframe_points.add`` + ``foreach_set``) and a naive
   ``keyframe_insert`` loop in the same run (goal: bulk >= 200x faster and <= 0.5 s);
2. the saved .blend's size (goal <= 30 MB);
3. playback cost per frame of the shape keys, FLAME-size head (V = 5,041) (goal <= 3 ms);
4. one Generate on 60 s of speech with the features cached, from the click to a playable
   head (goal <= 1 s), through the real worker process.

The subject for (4) is a FLAME-size bundle with random weights (S2GNet V = 5,041, 32-key
basis, a 2-layer HuBERT with 768-d features: with the features cached the encoder does not
run); it is built by this script in a separate process, so torch never loads in this one.
Options: --naive-frames N (frames for the naive loop, default 1800 = one minute; the full
18,000 takes minutes), --skip-generate.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FRAMES, FPS, K, GRID = 18_000, 30, 32, 71          # 71 x 71 = 5,041 vertices (FLAME: 5,023)


# --------------------------------------------------------------------------- the bench subject (subprocess)

MAKE_SUBJECT = r"""
import sys
from pathlib import Path
import numpy as np, torch, soundfile as sf
from transformers import HubertConfig, HubertModel
from emotalk3d_addon.backend.geometry.basis import MotionBasis
from emotalk3d_addon.backend.geometry.s2gnet import S2GConfig, S2GNet
from emotalk3d_addon.backend.speech.emotion import EmotionConfig, EmotionExtractor
from emotalk3d_addon.backend.speech.encoder import EncoderSpec
from emotalk3d_addon.backend.subject import Geometry, Subject, make_manifest
out, n, k = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
enc = out / "hubert"
HubertModel(HubertConfig(num_hidden_layers=2)).save_pretrained(enc, safe_serialization=True)
xs, zs = np.meshgrid(np.linspace(-0.08, 0.08, n), np.linspace(-0.1, 0.1, n))
template = np.stack([xs.ravel(), -0.02 * np.cos(xs.ravel() * 10), zs.ravel()], 1).astype(np.float32)
tris = []
for r in range(n - 1):
    for c in range(n - 1):
        a, b, d, e = r * n + c, r * n + c + 1, (r + 1) * n + c, (r + 1) * n + c + 1
        tris += [(a, b, e), (a, e, d)]
uvs = np.stack([(xs.ravel() + 0.08) / 0.16, (zs.ravel() + 0.1) / 0.2], 1).astype(np.float32)
v = n * n
mid = (n // 2) * n + n // 2
geo = Geometry(template, np.array(tris), uvs, np.ones(v, bool),
               {"upper_lip": mid, "lower_lip": mid - n, "mouth_left": mid - 3, "mouth_right": mid + 3})
rng = np.random.default_rng(0)
q, _ = np.linalg.qr(rng.standard_normal((v * 3, k)))
basis = MotionBasis((q.T.reshape(k, v, 3) * 0.01).astype(np.float32))
s2g = S2GNet(S2GConfig(768, v))
torch.nn.init.normal_(s2g.head.weight, std=1e-4)
emo = EmotionExtractor(EmotionConfig(768))
spec = EncoderSpec("pretrained", str(enc))
manifest = make_manifest("bench", 30, spec, geo, basis, s2g.config, emo.config, (0.0, 0.0))
Subject(None, manifest, geo, basis, s2g.config, s2g.state_dict(), emo.config, emo.state_dict(), spec).save(out / "bench")
t = np.arange(60 * 16000) / 16000
env = np.clip(np.sin(2 * np.pi * 4.5 * t), 0, None)
voiced = sum(np.sin(2 * np.pi * 120 * h * t) / h for h in range(1, 8))
sf.write(out / "speech60.wav", (0.1 * env * voiced + 0.003 * rng.standard_normal(t.size)).astype(np.float32), 16000)
"""


def make_subject(folder: Path) -> tuple[Path, Path]:
    if not (folder / "bench" / "subject.json").is_file():
        subprocess.run([sys.executable, "-c", MAKE_SUBJECT, str(folder), str(GRID), str(K)], check=True, cwd=ROOT)
    return folder / "bench", folder / "speech60.wav"


# --------------------------------------------------------------------------- helpers


def head(bpy, num_components: int):
    from emotalk3d_addon.bridge import mesh

    rng = np.random.default_rng(1)
    n = GRID
    xs, zs = np.meshgrid(np.linspace(-0.08, 0.08, n), np.linspace(-0.1, 0.1, n))
    template = np.stack([xs.ravel(), np.zeros(n * n), zs.ravel()], 1).astype(np.float32)
    tris = []
    for r in range(n - 1):
        for c in range(n - 1):
            a, b, d, e = r * n + c, r * n + c + 1, (r + 1) * n + c, (r + 1) * n + c + 1
            tris += [(a, b, e), (a, e, d)]
    uvs = template[:, [0, 2]] + 0.1
    comps = (rng.standard_normal((num_components, n * n, 3)) * 1e-3).astype(np.float32)
    ob = mesh.build_head("bench_head", bpy.context.scene.collection, (0, 0, 0), template, np.array(tris), uvs, comps)
    return ob, mesh.key_names(num_components)


def naive_action(bpy, ob, names, coeffs, frame_start):
    """The naive way: set each value and keyframe_insert, frame by frame."""
    key = ob.data.shape_keys
    act = bpy.data.actions.new("naive")
    ad = key.animation_data or key.animation_data_create()
    ad.action = act
    blocks = [key.key_blocks[n] for n in names]
    for f in range(coeffs.shape[0]):
        for k, kb in enumerate(blocks):
            kb.value = float(coeffs[f, k])
            kb.keyframe_insert("value", frame=frame_start + f)
    return act


def machine_check() -> float:
    """A fixed reference workload, printed next to the figures: on a shared VM the CPU
    available varies a lot over time, and this shows how busy the machine was."""
    a = np.random.default_rng(0).standard_normal((512, 512)).astype(np.float32)
    t = time.perf_counter()
    for _ in range(50):
        a = (a @ a) * (1.0 / 512)
    return time.perf_counter() - t


def timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t, out


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--naive-frames", type=int, default=1800)
    parser.add_argument("--skip-generate", action="store_true")
    parser.add_argument("--repeats", type=int, default=8, help="Generate round trips timed (best and median printed)")
    parser.add_argument("--work", help="folder for the bench subject (default: a temporary folder)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="emotalk3d-bench-"))
    os.environ["EMOTALK3D_CACHE_DIR"] = str(tmp / "cache")     # a cold feature cache: the first Generate encodes

    import bpy
    import addon_utils

    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon_utils.enable("emotalk3d_addon", default_set=True)
    from emotalk3d_addon.bridge import action as action_mod
    from emotalk3d_addon.bridge import compat
    print(f"Blender {bpy.app.version_string} (bpy from PyPI), {os.cpu_count()} CPU cores")
    print(f"machine check (numpy 512x512 matmul x 50): {machine_check() * 1e3:.0f} ms")

    # 1. bulk vs naive ---------------------------------------------------------------------
    ob, names = head(bpy, K)
    key = ob.data.shape_keys
    rng = np.random.default_rng(0)
    coeffs = np.cumsum(rng.standard_normal((FRAMES, K)).astype(np.float32) * 0.02, axis=0)
    coeffs = np.clip(coeffs, -4.0, 4.0)
    from emotalk3d_addon.bridge import mesh as mesh_mod

    mesh_mod.widen_sliders(key, names, coeffs)         # what Generate does: sliders cover the values
    bulk_s, (act, slot) = timed(action_mod.new_shape_key_action, key, "bulk", names, coeffs, 1.0)
    compat.assign_action(key, act, slot)
    n_keys = FRAMES * K
    print(f"bulk writer: {FRAMES} frames x {K} F-curves = {n_keys:,} keys in {bulk_s:.3f} s "
          f"({n_keys / bulk_s / 1e6:.1f} M keys/s)")
    nf = min(args.naive_frames, FRAMES)
    bulk_part_s = min(timed(action_mod.new_shape_key_action, key, "bulk_part", names, coeffs[:nf], 1.0)[0]
                      for _ in range(3))
    naive_s, naive = timed(naive_action, bpy, ob, names, coeffs[:nf], 1)
    check = action_mod.read_curves(naive, None, names) if not compat.has_slotted_actions() else \
        action_mod.read_curves(naive, naive.slots[0], names)
    assert np.allclose(check, coeffs[:nf], atol=1e-6), "naive and bulk disagree"
    print(f"naive keyframe_insert loop: {nf} frames x {K} = {nf * K:,} keys in {naive_s:.2f} s; bulk on the same "
          f"{nf} frames {bulk_part_s:.4f} s -> bulk {naive_s / bulk_part_s:.0f}x faster")
    if nf < FRAMES:
        est = naive_s * FRAMES / nf
        print(f"  naive for all {FRAMES} frames: >= {est:.0f} s (linear extrapolation, a lower bound: insertion "
              f"cost grows with curve length) -> bulk >= {est / bulk_s:.0f}x faster on the full performance")
    for a in [a for a in bpy.data.actions if a.name in ("naive", "bulk_part") or a.name.startswith("bulk_part")]:
        bpy.data.actions.remove(a)
    ad = key.animation_data
    ad.action = act
    if slot is not None:
        ad.action_slot = slot

    # 2. .blend size -----------------------------------------------------------------------
    for compress in (False, True):
        path = tmp / f"perf_{'z' if compress else 'raw'}.blend"
        t = time.perf_counter()
        bpy.ops.wm.save_as_mainfile(filepath=str(path), compress=compress, copy=True)
        save_s = time.perf_counter() - t
        print(f".blend with the 10-minute performance ({'compressed' if compress else 'uncompressed'}): "
              f"{path.stat().st_size / 1e6:.1f} MB (save {save_s:.2f} s)")

    # 3. playback ----------------------------------------------------------------------------
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, FRAMES
    frames = list(range(1000, 1600))

    def play():
        for f in frames:
            scene.frame_set(f)

    for _ in range(2):
        play()
    with_keys = min(timed(play)[0] for _ in range(3)) / len(frames)
    key.animation_data.action = None
    without = min(timed(play)[0] for _ in range(3)) / len(frames)
    print(f"playback (frame_set, V = {GRID * GRID:,}, {K} shape keys animated): {with_keys * 1e3:.2f} ms/frame; "
          f"same scene without the action {without * 1e3:.2f} ms/frame (shape keys cost "
          f"{(with_keys - without) * 1e3:.2f} ms/frame)")
    bpy.data.objects.remove(ob)

    # 4. Generate round trip ---------------------------------------------------------------
    if args.skip_generate:
        return 0
    work = Path(args.work) if args.work else tmp / "subject"
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    subject, speech = make_subject(work)
    print(f"bench subject ready ({time.perf_counter() - t:.1f} s): V = {GRID * GRID}, K = {K}, 60 s of speech")
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    scene = bpy.context.scene
    scene.render.fps = 30
    prefs = bpy.context.preferences.addons["emotalk3d_addon"].preferences
    prefs.device = "cpu"
    s = scene.emotalk3d
    s.subject, s.audio_source, s.audio_file, s.audio_start = str(subject), 'FILE', str(speech), 1
    s.emotion = "happy"
    from emotalk3d_addon.bridge import keys, mesh
    from emotalk3d_addon.operators.generate import GenerateSession

    scene.frame_set(1)
    keys.insert_key(scene)
    first_s, _ = timed(bpy.ops.emotalk3d.generate)
    print(f"first Generate (starts the worker, encodes 60 s, builds the head): {first_s:.1f} s")
    depsgraph = bpy.context.evaluated_depsgraph_get

    def click_to_playable(edit: str, frame: int):
        scene.frame_set(frame)
        s.emotion = edit
        keys.insert_key(scene)
        t0 = time.perf_counter()
        session = GenerateSession.from_context(bpy.context).start()     # what the modal operator does
        while not session.finished:                                     # its timer polls every 0.1 s;
            time.sleep(0.005)                                           # here: as fast as possible
        result, level, message = session.finish(bpy.context)
        t1 = time.perf_counter()
        scene.frame_set(900)
        mesh.evaluated_vertices(s.head, depsgraph())                   # playable: a frame evaluates
        t2 = time.perf_counter()
        assert result == {'FINISHED'}, message
        return t2 - t0, t1 - t0, session.job.result.info

    edits = ["sad", "angry", "surprised", "fear", "disgusted", "contempt", "happy", "neutral"]
    runs = [click_to_playable(edits[i % len(edits)], 300 + 150 * (i % 10)) for i in range(args.repeats)]
    total, gen, info = min(runs, key=lambda r: r[0])
    tm = info["timings"]
    median = sorted(r[0] for r in runs)[len(runs) // 2]
    print(f"Generate after an emotion-key edit, 60 s of speech ({info['num_frames']} frames), features cached "
          f"({info['features_cached']}): click -> playable {total:.3f} s best, {median:.3f} s median of {len(runs)} "
          f"(all: {', '.join(f'{r[0]:.2f}' for r in runs)})")
    print(f"  worker: features {tm['features']:.3f} s, emotion {tm['emotion']:.3f} s, S2GNet {tm['s2g']:.3f} s, "
          f"project onto the basis {tm['project']:.3f} s, write .npy {tm['write']:.3f} s; "
          f"transfer + action write + first frame {total - sum(tm.values()):.3f} s")
    print("  (the modal operator polls the job every 0.1 s, which adds up to 0.1 s to these figures)")
    print(f"machine check at the end: {machine_check() * 1e3:.0f} ms")
    from emotalk3d_addon.bridge import worker_client

    worker_client.shutdown_client()
    return 0


if __name__ == "__main__":
    sys.exit(main())
