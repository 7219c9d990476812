"""The appearance section of a subject bundle: round trip and defects."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from emotalk3d_addon.backend.appearance.completion import CompletionConfig
from emotalk3d_addon.backend.appearance.dynamic import AnimatedHead
from emotalk3d_addon.backend.appearance.g2anet import G2AConfig
from emotalk3d_addon.backend.appearance.storage import default_view
from emotalk3d_addon.backend.errors import BundleError
from emotalk3d_addon.backend.subject import load_subject, validate_subject
from tests.backend.fixtures_subject import make_tiny_subject

VIEW = {"target": [0.0, 0.0, 0.0], "distance": 0.6, "fov_x_deg": 30.0, "width": 64, "height": 64}


@pytest.fixture
def subject_with_appearance(tmp_path):
    subject = make_tiny_subject(tmp_path)
    g = subject.geometry
    head = AnimatedHead.initial(g.template, g.triangles, g.uvs, g.face_mask, g2a=G2AConfig(sh_degree=1, hidden=16),
                                completion=CompletionConfig(num_points=300, seed=1))
    with torch.no_grad():
        for p in head.net.parameters():   # non-trivial weights for the round trip
            p.normal_(0.0, 0.1)
    subject.appearance = head
    subject.manifest["appearance"] = {"view": VIEW}
    return subject, subject.save(tmp_path / "with_appearance")


def test_round_trip(subject_with_appearance):
    subject, path = subject_with_appearance
    assert (path / "canonical.ply").is_file() and validate_subject(path) == []
    loaded = load_subject(path)
    a, b = subject.appearance, loaded.appearance
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        torch.testing.assert_close(getattr(b.canonical, name), getattr(a.canonical, name))
    torch.testing.assert_close(b.otf.nearest, a.otf.nearest)
    for k, v in a.net.state_dict().items():
        torch.testing.assert_close(b.net.state_dict()[k], v)
    assert loaded.manifest["appearance"]["view"] == VIEW
    assert loaded.manifest["appearance"]["num_otf"] == 300
    assert b.raster_mode == "classic" and "raster_mode" not in loaded.manifest["appearance"]


def test_the_raster_mode_round_trips_and_an_old_bundle_reads_as_classic(subject_with_appearance, tmp_path):
    subject, _ = subject_with_appearance
    subject.appearance.raster_mode = "antialiased"
    path = subject.save(tmp_path / "antialiased")
    assert json.loads((path / "subject.json").read_text())["appearance"]["raster_mode"] == "antialiased"
    loaded = load_subject(path)
    assert loaded.appearance.raster_mode == "antialiased"
    assert loaded.appearance.to("cpu").raster_mode == "antialiased"
    _edit(path, lambda m: m["appearance"].pop("raster_mode"))     # written before the mode existed
    assert load_subject(path).appearance.raster_mode == "classic"


def _edit(path, fn):
    m = json.loads((path / "subject.json").read_text())
    fn(m)
    (path / "subject.json").write_text(json.dumps(m))


@pytest.mark.parametrize("damage,needle", [
    (lambda p: (p / "canonical.ply").unlink(), "canonical.ply"),
    (lambda p: (p / "canonical.ply").write_bytes(b"ply\nformat nonsense\n"), "canonical.ply"),
    (lambda p: _edit(p, lambda m: m["appearance"].update(num_otf=7)), "Gaussians"),
    (lambda p: _edit(p, lambda m: m["appearance"]["view"].update(distance=-1)), "view.distance"),
    (lambda p: _edit(p, lambda m: m["appearance"]["g2a"].update(hidden="wide")), "g2a"),
    (lambda p: _edit(p, lambda m: m["appearance"].update(raster_mode="mip")), "raster_mode"),
    (lambda p: save_file({k: (v.float() * np.nan if v.is_floating_point() else v)
                          for k, v in load_file(str(p / "appearance.safetensors")).items()},
                         str(p / "appearance.safetensors")), "NaN"),
    (lambda p: save_file({k: (v + 10_000 if k == "otf.nearest" else v)
                          for k, v in load_file(str(p / "appearance.safetensors")).items()},
                         str(p / "appearance.safetensors")), "outside"),
])
def test_defects_are_reported(subject_with_appearance, damage, needle):
    _, path = subject_with_appearance
    damage(path)
    defects = validate_subject(path)
    assert any(needle in d for d in defects), defects
    with pytest.raises(BundleError):
        load_subject(path)


def test_default_view_from_cameras_on_an_arc():
    cams = []
    for yaw in np.radians(np.linspace(-90, 90, 11)):
        eye = np.array([np.sin(yaw), -np.cos(yaw), 0.0]) * 1.2 + [0, 0, 0.05]
        forward = -(eye - [0, 0, 0.05]) / 1.2
        right = np.cross(forward, [0, 0, 1.0]); right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        r = np.stack([right, down, forward])
        w2c = np.eye(4); w2c[:3, :3] = r; w2c[:3, 3] = -r @ eye
        cams.append({"K": [[200, 0, 64], [0, 200, 64], [0, 0, 1]], "world_to_camera": w2c.tolist(),
                     "width": 128, "height": 128})
    view = default_view(cams)
    np.testing.assert_allclose(view["target"], [0, 0, 0.05], atol=1e-9)
    assert view["distance"] == pytest.approx(1.2)
    assert view["fov_x_deg"] == pytest.approx(np.degrees(2 * np.arctan(64 / 200)))
