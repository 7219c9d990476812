"""The toolkit-free CUDA rasteriser (Triton kernels, torch binning) against the CPU rasteriser and the
float64 reference: on the GPU where there is one, else in Triton's interpreter on the CPU."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from emotalk3d_addon.backend.raster import rasterize
from emotalk3d_addon.backend.raster.projection import project
from emotalk3d_addon.backend.raster.tile_lists import TILE, tile_lists

from .scenes import random_scene

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _on(scene):
    return [t.to(DEVICE) for t in (scene.means, scene.quats, scene.scales, scene.opacities, scene.colors)]


@pytest.mark.parametrize("mode", ["classic", "antialiased"])
def test_forward_matches_the_cpu_rasteriser_and_the_reference(mode):
    s = random_scene(3, 160, width=40, height=34, sh_degree=2, extra=2, spread=1.1, dtype=torch.float32)
    cpu = rasterize(*s.args(), sh_degree=2, extra=s.extra, backend="cpu", mode=mode)
    with torch.no_grad():
        gpu = rasterize(*_on(s), s.camera.to(DEVICE), sh_degree=2, extra=s.extra.to(DEVICE), backend="triton",
                        mode=mode)
    ref = s.to(torch.float64).reference(mode)
    assert cpu.alpha.mean() > 0.1 and bool((cpu.alpha > 0.9).any())    # a scene with overlaps and coverage
    for got, want in ((gpu.rgb, cpu.rgb), (gpu.alpha, cpu.alpha), (gpu.extra, cpu.extra)):
        assert got.device.type == DEVICE.type and got.dtype == torch.float32
        assert float((got.cpu() - want).abs().max()) < 1e-4
    assert float((gpu.alpha.cpu().double() - torch.as_tensor(ref["alpha"])).abs().max()) < 1e-4
    covered = cpu.alpha > 0.05
    assert float((gpu.depth.cpu() - cpu.depth)[covered].abs().max()) < 1e-3


def test_gradients_match_the_cpu_rasteriser():
    s = random_scene(4, 60, width=34, height=20, sh_degree=1, extra=1, dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    weights = [torch.rand(20, 34, c, generator=g) for c in (3, 1, 1, 1)]

    def grads(device, backend):
        leaves = [t.to(device).clone().requires_grad_(True) for t in
                  (s.means, s.quats, s.scales, s.opacities, s.colors, s.extra)]
        out = rasterize(*leaves[:5], s.camera.to(device), sh_degree=1, extra=leaves[5], backend=backend,
                        mode="antialiased")
        images = (out.rgb, out.alpha[..., None], (out.depth * out.alpha)[..., None], out.extra)
        sum((im.cpu() * w).sum() for im, w in zip(images, weights)).backward()
        return [t.grad.cpu() for t in leaves]

    for name, want, got in zip(("means", "quats", "scales", "opacities", "sh", "extra"),
                               grads(torch.device("cpu"), "cpu"), grads(DEVICE, "triton")):
        scale = float(want.abs().max())
        assert scale > 0, name
        assert float((got - want).abs().max()) <= 1e-4 * scale + 1e-6, name


def test_an_empty_frame_and_gaussians_all_behind_the_camera():
    s = random_scene(5, 30, width=20, height=18, behind=1.0, dtype=torch.float32)
    with torch.no_grad():
        out = rasterize(*_on(s), s.camera.to(DEVICE), backend="triton")
    assert out.rgb.shape == (18, 20, 3) and float(out.alpha.abs().max()) == 0.0 and float(out.rgb.abs().max()) == 0.0


def test_tile_lists_hold_every_touching_gaussian_front_to_back():
    s = random_scene(6, 300, width=70, height=45, spread=1.3, dtype=torch.float64)
    p = project(s.means, s.quats, s.scales, s.opacities, s.colors, s.camera)
    bins = tile_lists(p.means2d, p.conics, p.opacities, p.depths, p.visible, 70, 45)
    order = bins.order.numpy()
    assert bins.tiles_x == 5 and bins.tiles_y == 3 and int(bins.offsets[-1]) == bins.n_pairs
    depths = p.depths.detach().numpy()[order]
    assert np.all(np.diff(depths) >= 0)                       # records front to back
    # brute force: every pixel a visible Gaussian reaches with alpha >= 1/255 lies in a tile whose list holds it
    m, con, o = p.means2d.detach().numpy(), p.conics.detach().numpy(), p.opacities.detach().numpy()
    ys, xs = np.mgrid[0:45, 0:70] + 0.5
    record_of = {int(g): r for r, g in enumerate(order)}
    for g in np.flatnonzero(p.visible.numpy()):
        dx, dy = m[g, 0] - xs, m[g, 1] - ys
        sigma = 0.5 * (con[g, 0] * dx * dx + con[g, 2] * dy * dy) + con[g, 1] * dx * dy
        reached = (sigma >= 0) & (np.minimum(0.999, o[g] * np.exp(-sigma)) >= 1 / 255)
        for i, j in zip(*np.nonzero(reached)):
            t = (i // TILE) * bins.tiles_x + j // TILE
            assert record_of[int(g)] in bins.ids[bins.offsets[t]:bins.offsets[t + 1]].tolist()
    for t in range(bins.tiles_x * bins.tiles_y):             # each tile's list runs front to back
        ids = bins.ids[bins.offsets[t]:bins.offsets[t + 1]].numpy()
        assert np.all(np.diff(ids) > 0)


def test_the_demo_head_matches_the_cpu_rasteriser_on_a_busy_tile():
    """A 16x16 tile of the demo head's front view at 64x64, in the face (the full frame takes minutes in the
    interpreter; ``emotalk3d gpu-check --emulate`` draws all of it)."""
    from emotalk3d_addon.backend.emotions import EMOTIONS
    from emotalk3d_addon.backend.raster.camera import Camera
    from emotalk3d_addon.backend.render.frame import emotion_input, render_head
    from emotalk3d_addon.backend.render.views import orbit_camera
    from emotalk3d_addon.backend.subject import load_subject, resolve_subject

    subject = load_subject(resolve_subject("demo"))
    head = subject.appearance.to(DEVICE)
    full = orbit_camera(dict(subject.manifest["appearance"]["view"]), "front", 64, 64)
    weights = np.zeros(len(EMOTIONS), np.float32)
    weights[EMOTIONS.index("surprised")] = 1.0
    vertices = torch.from_numpy(np.asarray(subject.geometry.template, np.float32)).to(DEVICE)
    for x0, y0 in ((24, 28),):
        K = full.K.clone()
        K[0, 2] -= x0
        K[1, 2] -= y0
        window = Camera(K, full.world_to_camera, TILE, TILE, full.near, full.far)
        with torch.inference_mode():
            gpu = render_head(head, vertices, emotion_input(weights, 1.0).to(DEVICE), window, backend="triton")
            cpu = render_head(subject.appearance, vertices.cpu(), emotion_input(weights, 1.0), window, backend="cpu")
        assert float(cpu.alpha.mean()) > 0.3
        for got, want in ((gpu.rgb, cpu.rgb), (gpu.alpha, cpu.alpha), (gpu.extra, cpu.extra)):
            assert float((got.cpu() - want).abs().max()) < 1.0 / 255.0
