"""The worker's ``render_frame`` op, the compositor layers it writes, and CPU fallback on
CUDA out-of-memory. The demo subject renders in a real worker process (CPU rasteriser)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from emotalk3d_addon.backend.device import is_out_of_memory, run_with_fallback
from emotalk3d_addon.backend.io import passes_buffer
from emotalk3d_addon.backend.render.layers import BACKGROUND_DEPTH, frame_layers, srgb_to_linear
from emotalk3d_addon.backend.raster import RasterOutput
from emotalk3d_addon.backend.raster.camera import intrinsics, look_at
from emotalk3d_addon.bridge.worker_client import ADDON_DIR, WorkerClient, WorkerError

SIZE = 64


def _camera(distance=0.9, x=0.0):
    K = intrinsics(SIZE, SIZE, 30.0, torch.float64)
    w2c = look_at((x, -distance, 0.05), (x, 0.0, 0.05), up=(0, 0, 1), dtype=torch.float64)
    return {"K": K.ravel().tolist(), "world_to_camera": w2c.ravel().tolist(), "width": SIZE, "height": SIZE,
            "near": 0.05, "far": 100.0}


@pytest.fixture(scope="module")
def client():
    c = WorkerClient(sys.executable, ADDON_DIR)
    yield c
    c.shutdown()


def _render(client, **params):
    """The passes of one frame, copied out of a buffer from the client's pool."""
    camera = params.pop("camera", _camera())
    path, mapping = client.passes.take(camera["width"], camera["height"])
    try:
        reply = client.call("render_frame", {"subject": "demo", "device": "cpu", "camera": camera,
                                             "passes": str(path), **params}, timeout=300)
        assert reply["passes"] == str(path)
        return {k: v.copy() for k, v in passes_buffer.views(mapping, camera["width"], camera["height"]).items()}, reply
    finally:
        client.passes.give_back(camera["width"], camera["height"], path, mapping)


def test_render_frame_writes_the_three_passes(client):
    arrays, reply = _render(client)
    assert reply["device"] == "cpu" and reply["warnings"] == []
    rgba, depth, matte = arrays["combined"], arrays["depth"], arrays["face_matte"]
    assert rgba.shape == (SIZE, SIZE, 4) and depth.shape == matte.shape == (SIZE, SIZE)
    assert rgba.dtype == depth.dtype == matte.dtype == np.float32
    alpha = rgba[..., 3]
    assert 0.05 < alpha.mean() < 0.9
    assert (depth[alpha <= 1e-4] == np.float32(BACKGROUND_DEPTH)).all()
    assert 0.6 < np.median(depth[alpha > 0.5]) < 1.0              # the face is ~0.9 m from the camera
    assert (matte <= alpha + 1e-5).all() and matte.max() > 0.5


def test_rows_and_colours_options(client):
    top, _ = _render(client)
    bottom, _ = _render(client, rows="bottom_up")
    np.testing.assert_array_equal(bottom["combined"], top["combined"][::-1])
    linear, _ = _render(client, colors="linear")
    np.testing.assert_allclose(linear["combined"][..., :3], srgb_to_linear(top["combined"][..., :3]), atol=1e-6)
    np.testing.assert_array_equal(linear["combined"][..., 3], top["combined"][..., 3])


def test_object_matrix_and_vertices_move_the_head(client, tmp_path):
    base, _ = _render(client)
    M = np.eye(4)
    M[0, 3] = 0.05
    moved, _ = _render(client, object_to_world=M.ravel().tolist())
    shifted, _ = _render(client, camera=_camera(x=-0.05))
    np.testing.assert_allclose(moved["combined"], shifted["combined"], atol=1e-5)
    from emotalk3d_addon.backend.subject import load_subject, resolve_subject

    template = load_subject(resolve_subject("demo")).geometry.template
    path = tmp_path / "v.npy"
    np.save(path, (template + np.array([0.05, 0.0, 0.0], np.float32)).astype(np.float32))
    from_vertices, _ = _render(client, vertices=str(path))
    # the face follows the vertices; the hair and neck (completion Gaussians) follow their nearest face point
    assert np.abs(from_vertices["combined"] - base["combined"]).max() > 0.1


@pytest.mark.parametrize("params,needle", [
    ({"camera": None}, "camera"),
    ({"camera": {"K": [1, 2], "world_to_camera": [0] * 16, "width": 8, "height": 8}}, "camera"),
    ({"emotion": [1, 0]}, "emotion"),
    ({"object_to_world": [0.0] * 16}, "transform"),
    ({"subject": "no-such-subject"}, "no-such-subject"),
])
def test_bad_requests_are_input_errors(client, params, needle):
    path, mapping = client.passes.take(SIZE, SIZE)
    try:
        with pytest.raises(WorkerError) as err:
            client.call("render_frame", {"subject": "demo", "device": "cpu", "camera": _camera(), "passes": str(path),
                                         **params}, timeout=120)
    finally:
        client.passes.give_back(SIZE, SIZE, path, mapping)
    assert err.value.kind == "input" and needle in str(err.value)


def test_a_passes_buffer_of_another_size_or_name_is_refused_and_never_made(client, tmp_path):
    """The worker writes only into a buffer the caller made for exactly this frame size."""
    small, mapping = passes_buffer.create(tmp_path, SIZE // 2, SIZE // 2)
    made = tmp_path / f"passes-{SIZE}x{SIZE}-00ff.f32"
    stranger = tmp_path / "notes.txt"
    stranger.write_bytes(b"x" * passes_buffer.nbytes(SIZE, SIZE))
    for path, needle in ((small, "needs"), (made, "cannot be opened"), (stranger, "not a passes buffer")):
        with pytest.raises(WorkerError) as err:
            client.call("render_frame", {"subject": "demo", "device": "cpu", "camera": _camera(), "passes": str(path)},
                        timeout=120)
        assert err.value.kind == "input" and needle in str(err.value), str(err.value)
    assert not made.exists() and stranger.read_bytes() == b"x" * passes_buffer.nbytes(SIZE, SIZE)
    assert small.stat().st_size == passes_buffer.nbytes(SIZE // 2, SIZE // 2)


def test_the_pool_reuses_a_buffer_per_size_and_never_hands_one_out_twice(tmp_path):
    from emotalk3d_addon.bridge.worker_client import PassesPool

    pool = PassesPool(tmp_path, keep=2)
    a = pool.take(8, 4)
    b = pool.take(8, 4)                          # a is still out: another buffer
    assert a[0] != b[0] and pool.created == 2
    pool.give_back(8, 4, *a)
    assert pool.take(8, 4)[0] == a[0]            # mapped once, used again
    pool.give_back(8, 4, *a)
    pool.give_back(8, 4, *b)
    c = pool.take(16, 16)
    pool.give_back(16, 16, *c)                   # three free, keep 2: the oldest file goes
    assert not a[0].exists() and b[0].exists() and c[0].exists()
    pool.clear()
    assert not any(tmp_path.iterdir())


def test_wrong_vertex_count_is_named(client, tmp_path):
    path = tmp_path / "v.npy"
    np.save(path, np.zeros((10, 3), np.float32))
    with pytest.raises(WorkerError, match="vertex count"):
        _render(client, vertices=str(path))


def test_compositor_layers_known_values():
    rgb = np.array([[[0.25, 0.5, 0.0]], [[0.0, 0.0, 0.0]]], np.float32)       # premultiplied, 2x1
    t = torch.from_numpy
    passes = RasterOutput(rgb=t(rgb), alpha=t(np.array([[0.5], [0.0]], np.float32)),
                          depth=t(np.array([[2.0], [0.0]], np.float32)),
                          extra=t(np.array([[[0.25]], [[0.0]]], np.float32)))
    layers = frame_layers(passes)
    np.testing.assert_allclose(layers["combined"][0, 0], [0.5, 1.0, 0.0, 0.5])     # straight alpha
    np.testing.assert_allclose(layers["combined"][1, 0], [0.0, 0.0, 0.0, 0.0])
    assert layers["depth"][0, 0] == 2.0 and layers["depth"][1, 0] == np.float32(1e10)
    flipped = frame_layers(passes, bottom_up=True)
    np.testing.assert_array_equal(flipped["depth"], layers["depth"][::-1])
    np.testing.assert_allclose(srgb_to_linear(np.array([0.0, 0.04045, 0.5, 1.0])),
                               [0.0, 0.04045 / 12.92, 0.214041, 1.0], atol=1e-6)


def test_cuda_out_of_memory_falls_back_to_the_cpu_with_a_warning():
    calls = []

    def run(device):
        calls.append(device.type)
        if device.type == "cuda":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return "done"

    warnings: list[str] = []
    result, used = run_with_fallback(run, torch.device("cuda"), warnings, "rendering")
    assert (result, used.type, calls) == ("done", "cpu", ["cuda", "cpu"])
    assert len(warnings) == 1 and "out of memory" in warnings[0] and "CPU" in warnings[0]
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 20 MiB"))


def test_other_errors_and_cpu_errors_are_not_swallowed():
    def boom(device):
        raise ValueError("a real bug")

    with pytest.raises(ValueError):
        run_with_fallback(boom, torch.device("cuda"), [])

    def oom_on_cpu(device):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(torch.cuda.OutOfMemoryError):
        run_with_fallback(oom_on_cpu, torch.device("cpu"), [])


def test_cpu_kernel_matches_the_tensor_path_and_the_exact_curve():
    from emotalk3d_addon.backend.render import layers

    rng = np.random.default_rng(0)
    h, w = 37, 53
    alpha = torch.tensor(rng.uniform(-0.1, 1.1, (h, w)), dtype=torch.float32)
    alpha[:, :10] = 0.0
    rgb = torch.tensor(rng.uniform(0, 1.2, (h, w, 3)), dtype=torch.float32) * alpha.clamp(0, 1).unsqueeze(-1)
    depth = torch.tensor(rng.uniform(0.5, 2.0, (h, w)), dtype=torch.float32)
    matte = torch.tensor(rng.uniform(-0.2, 1.2, (h, w)), dtype=torch.float32)
    for bottom_up in (False, True):
        for linear in (False, True):
            fused = layers.compositor_layers(rgb, alpha, depth, matte, bottom_up, linear)
            ref = layers._layers_torch(rgb, alpha, depth, matte, bottom_up, linear)
            for k in ref:
                np.testing.assert_allclose(fused[k], ref[k], atol=2e-6, rtol=0, err_msg=f"{k} {bottom_up} {linear}")
    v = np.linspace(0, 1, 100_001, dtype=np.float32)
    table = np.interp(v, np.linspace(0, 1, layers._LUT_SIZE + 1), layers._LUT)
    assert np.abs(table - layers.srgb_to_linear(v)).max() < 1e-6


def _oom_on_cuda(monkeypatch, owner, method: str):
    """Pretend CUDA exists and runs out of memory inside ``owner.<method>`` (whose arguments
    include the device)."""
    from emotalk3d_addon.backend import device as device_mod
    from emotalk3d_addon.backend.tools import worker as worker_mod
    from emotalk3d_addon.backend.performance import service as service_mod

    cuda = lambda name="auto": torch.device("cuda")          # noqa: E731
    monkeypatch.setattr(device_mod, "resolve_device", cuda)      # rendering (the worker imports it per call)
    monkeypatch.setattr(service_mod, "compute_device", cuda)     # the speech models
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)       # nothing real to empty
    original = getattr(owner, method)
    seen = []

    def patched(self, *args):
        device = next(a for a in args if isinstance(a, torch.device))
        seen.append(device.type)
        if device.type == "cuda":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.00 GiB")
        return original(self, *args)

    monkeypatch.setattr(owner, method, patched)
    return worker_mod.Worker(lambda message: None), seen


def test_render_frame_falls_back_to_the_cpu_on_cuda_oom(monkeypatch, tmp_path):
    from emotalk3d_addon.backend.tools.worker import Worker

    worker, seen = _oom_on_cuda(monkeypatch, Worker, "_renderer")
    path, mapping = passes_buffer.create(tmp_path, SIZE, SIZE)
    reply = worker.op_render_frame({"subject": "demo", "device": "cuda", "camera": _camera(),
                                    "passes": str(path)}, None)
    assert seen == ["cuda", "cpu"] and reply["device"] == "cpu"
    assert len(reply["warnings"]) == 1 and "out of memory" in reply["warnings"][0]
    assert passes_buffer.views(mapping, SIZE, SIZE)["combined"][..., 3].max() > 0.5


def test_perform_falls_back_to_the_cpu_on_cuda_oom(monkeypatch, tmp_path):
    from emotalk3d_addon.backend.subject import resolve_subject

    from emotalk3d_addon.backend.performance.service import Performance

    worker, seen = _oom_on_cuda(monkeypatch, Performance, "runtime")
    audio = resolve_subject("demo") / "demo_clip.wav"
    reply = worker.op_perform({"subject": "demo", "device": "cuda", "audio": str(audio), "fps": [25, 1],
                               "emotion": {"mode": "constant", "emotion": "happy", "intensity": 1.0},
                               "out_dir": str(tmp_path)}, lambda f, m: None)
    assert seen == ["cuda", "cpu"] and reply["device"] == "cpu" and "out of memory" in reply["warnings"][0]
    assert np.load(reply["arrays"]["coefficients"]).shape[0] == reply["num_frames"] > 0
