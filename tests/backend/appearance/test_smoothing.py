"""The 3D smoothing filter: sampling intervals against a brute-force loop, the filtered
covariance and opacity, and that a frame, a render and a bundle carry it."""
import math

import numpy as np
import pytest
import torch

from emotalk3d_addon.backend.appearance.completion import CompletionConfig
from emotalk3d_addon.backend.appearance.dynamic import AnimatedHead
from emotalk3d_addon.backend.appearance.g2anet import G2AConfig
from emotalk3d_addon.backend.appearance.smoothing import FILTER_VARIANCE, filter_std, sampling_intervals, smooth
from emotalk3d_addon.backend.raster import Camera, rasterize
from emotalk3d_addon.backend.raster.camera import intrinsics, look_at
from emotalk3d_addon.backend.subject import load_subject, validate_subject
from tests.backend.fixtures_subject import make_tiny_subject


def _camera(eye, size=64, fov=30.0, target=(0.0, 0.0, 0.0)):
    return Camera(intrinsics(size, size, fov), look_at(eye, target, up=(0.0, 0.0, 1.0)), size, size)


def _brute_force(points, cameras, margin=0.15):
    out = []
    for p in np.asarray(points, np.float64):
        best = math.inf
        for c in cameras:
            m = c.world_to_camera.double().numpy()
            k = c.K.double().numpy()
            x, y, z = m[:3, :3] @ p + m[:3, 3]
            if z <= c.near:
                continue
            u, v = k[0, 0] * x / z + k[0, 2], k[1, 1] * y / z + k[1, 2]
            if -margin * c.width <= u <= c.width * (1 + margin) and -margin * c.height <= v <= c.height * (1 + margin):
                best = min(best, z / max(k[0, 0], k[1, 1]))
        out.append(best)
    out = np.array(out)
    seen = np.isfinite(out)
    return np.where(seen, out, out[seen].max() if seen.any() else 0.0)


def test_sampling_intervals_match_a_brute_force_loop():
    near, far = _camera((0.0, -0.5, 0.0)), _camera((0.0, -2.0, 0.0), size=128, fov=20.0)
    side = _camera((1.0, 0.0, 0.0))
    rng = np.random.default_rng(3)
    pts = rng.uniform(-0.3, 0.3, (400, 3))
    pts[:5] = [[0, 3.0, 0], [0, -1.0, 0.0], [5.0, 5.0, 5.0], [0, 0, 0], [0.2, -0.45, 0]]  # behind / outside / centre
    cams = [near, far, side]
    got = sampling_intervals(torch.tensor(pts, dtype=torch.float32), cams).numpy()
    np.testing.assert_allclose(got, _brute_force(pts, cams), rtol=1e-5)
    # the centre: nearest camera at 0.5 m wins, T = 0.5 / f
    assert got[3] == pytest.approx(0.5 / float(near.K[0, 0]), rel=1e-5)


def test_a_point_no_camera_sees_gets_the_coarsest_seen_interval():
    cam = _camera((0.0, -1.0, 0.0))
    pts = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, -3.0, 0.0]])   # last: behind the camera
    t = sampling_intervals(pts, [cam])
    assert t[2] == pytest.approx(float(t[:2].max()))
    assert float(sampling_intervals(torch.tensor([[0.0, -3.0, 0.0]]), [cam])[0]) == 0.0


def _covariances(scales, quats):
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).double().unbind(-1)
    r = torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                     2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                     2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1).reshape(-1, 3, 3)
    return r @ torch.diag_embed(scales.double() ** 2) @ r.transpose(1, 2)


def test_the_filter_adds_an_isotropic_variance_and_keeps_each_integral():
    g = torch.Generator().manual_seed(0)
    n = 50
    scales = torch.exp(torch.randn(n, 3, generator=g) * 1.5 - 6.0)      # from microns to centimetres
    quats = torch.randn(n, 4, generator=g)
    opac = torch.rand(n, generator=g)
    std = torch.rand(n, generator=g) * 2e-3
    s2, o2 = smooth(scales, opac, std)
    before, after = _covariances(scales, quats), _covariances(s2, quats)
    torch.testing.assert_close(after, before + (std.double() ** 2)[:, None, None] * torch.eye(3, dtype=torch.float64),
                               rtol=1e-5, atol=1e-12)
    # opacity x sqrt(det Sigma), the Gaussian's integral, is unchanged
    torch.testing.assert_close(o2.double() * torch.linalg.det(after).sqrt(),
                               opac.double() * torch.linalg.det(before).sqrt(), rtol=1e-4, atol=0)
    s0, o0 = smooth(scales, opac, torch.zeros(n))
    assert torch.equal(s0, scales) and torch.equal(o0, opac)
    assert filter_std(torch.tensor([2.0]), 0.5)[0] == pytest.approx(math.sqrt(0.5) * 2.0)


def test_the_filter_is_differentiable():
    scales = torch.full((4, 3), 1e-3, requires_grad=True)
    opac = torch.full((4,), 0.5, requires_grad=True)
    s, o = smooth(scales, opac, torch.full((4,), 1e-3))
    (s.sum() + o.sum()).backward()
    assert torch.isfinite(scales.grad).all() and (scales.grad != 0).all() and (opac.grad > 0).all()


NEEDLE = 0.2    # the needle's standard deviation across, in training pixels


def _needle_width(smoothing, zoom):
    """Rendered width (px, the image's second moment across the needle) of one needle-thin
    Gaussian seen by a camera ``zoom`` times finer than the training camera."""
    train = _camera((0.0, -1.0, 0.0), size=32)
    pixel = 1.0 / float(train.K[0, 0])                # metres per training pixel at 1 m
    means = torch.zeros(1, 3)
    scales = torch.tensor([[NEEDLE * pixel, NEEDLE * pixel, 0.05]])      # a vertical needle
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    opac = torch.tensor([1.0])
    if smoothing:
        scales, opac = smooth(scales, opac, filter_std(sampling_intervals(means, [train])))
    view = _camera((0.0, -1.0, 0.0), size=32 * zoom)
    out = rasterize(means, quats, scales, opac, torch.ones(1, 3), view, backend="cpu")
    profile = out.alpha.sum(0).double()
    x = torch.arange(profile.numel(), dtype=torch.float64) + 0.5
    mean = (profile * x).sum() / profile.sum()
    return float(((profile * (x - mean) ** 2).sum() / profile.sum()).sqrt())


def test_zoomed_in_a_needle_is_no_narrower_than_the_training_pixels_allow():
    zoom = 8
    raw, filtered = _needle_width(False, zoom), _needle_width(True, zoom)
    # unfiltered: 0.2 training px = 1.6 view px, with the rasteriser's 0.3 px² dilation;
    # filtered: sqrt(0.2² + 0.2) = 0.49 training px = 3.9 view px, with the dilation (the
    # faint tails under 1/255 are cut, so a little less)
    assert raw == pytest.approx(math.sqrt((NEEDLE * zoom) ** 2 + 0.3), rel=0.1)
    assert filtered == pytest.approx(math.sqrt((NEEDLE ** 2 + FILTER_VARIANCE) * zoom ** 2 + 0.3), rel=0.1)


def _head(subject):
    g = subject.geometry
    return AnimatedHead.initial(g.template, g.triangles, g.uvs, g.face_mask, g2a=G2AConfig(sh_degree=1, hidden=16),
                                completion=CompletionConfig(num_points=200, seed=1))


def test_a_frame_draws_every_copy_through_its_canonical_gaussians_filter(tmp_path):
    subject = make_tiny_subject(tmp_path)
    head = _head(subject)
    verts = torch.as_tensor(subject.geometry.template, dtype=torch.float32)
    emotion = torch.zeros(8)
    plain = head.frame(verts, emotion)
    head.smoothing = torch.linspace(0.0, 2e-3, head.canonical.num)
    filtered = head.frame(verts, emotion)
    assert torch.equal(plain.source, filtered.source)
    want_s, want_o = smooth(plain.scales, plain.opacities, head.smoothing[plain.source])
    torch.testing.assert_close(filtered.scales, want_s)
    torch.testing.assert_close(filtered.opacities, want_o)
    assert torch.equal(filtered.means, plain.means) and torch.equal(filtered.matte, plain.matte)
    with pytest.raises(ValueError, match="smoothing"):
        head.smoothing = torch.zeros(3)
        head.frame(verts, emotion)


def test_fit_smoothing_follows_the_canonical_means_and_zero_variance_removes_it(tmp_path):
    head = _head(make_tiny_subject(tmp_path))
    cams = [_camera((0.0, -0.6, 0.0)), _camera((0.6, 0.0, 0.0))]
    head.fit_smoothing(cams, FILTER_VARIANCE)
    torch.testing.assert_close(head.smoothing, filter_std(sampling_intervals(head.canonical.means, cams)))
    assert head.smoothing.shape == (head.canonical.num,) and bool((head.smoothing > 0).all())
    head.fit_smoothing(cams, 0.0)
    assert head.smoothing is None


def test_a_bundle_keeps_the_filter_and_refuses_a_bad_one(tmp_path):
    from safetensors.torch import load_file, save_file

    subject = make_tiny_subject(tmp_path)
    head = _head(subject)
    head.smoothing = torch.linspace(1e-4, 1e-3, head.canonical.num)
    subject.appearance = head
    subject.manifest["appearance"] = {"view": {"target": [0.0, 0.0, 0.0], "distance": 0.6, "fov_x_deg": 30.0,
                                               "width": 64, "height": 64}}
    path = subject.save(tmp_path / "filtered")
    assert validate_subject(path) == []
    torch.testing.assert_close(load_subject(path).appearance.smoothing, head.smoothing)
    tensors = load_file(str(path / "appearance.safetensors"))
    for bad, needle in ((-tensors["smoothing.std"], ">= 0"), (tensors["smoothing.std"][:-1], "must be (")):
        save_file(tensors | {"smoothing.std": bad.contiguous()}, str(path / "appearance.safetensors"))
        assert any("smoothing.std" in d and needle in d for d in validate_subject(path)), validate_subject(path)
    del tensors["smoothing.std"]                     # a bundle from before the filter: unfiltered
    save_file(tensors, str(path / "appearance.safetensors"))
    assert validate_subject(path) == [] and load_subject(path).appearance.smoothing is None
