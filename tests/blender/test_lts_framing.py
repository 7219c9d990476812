"""Placement, Frame Head and the head mesh hidden by Set Up Compositing on Blender 4.5 LTS and
4.2 LTS (bpy from PyPI in their own venvs): ``lts/framing_scenario.py`` in a subprocess each."""
from __future__ import annotations

import numpy as np
import pytest

from .lts import LTS_VENVS, run_scenario
from .test_framing import DEMO, _gaussians


@pytest.fixture(scope="module", params=sorted(LTS_VENVS))
def found(request, tmp_path_factory):
    from safetensors.numpy import load_file

    work = tmp_path_factory.mktemp("lts-framing")
    g = load_file(str(DEMO / "geometry.safetensors"))
    arrays = work / "head.npz"
    np.savez(arrays, template=g["template_vertices"], triangles=g["triangles"], uvs=g["uvs"],
             gaussians=_gaussians().astype(np.float32))
    out = run_scenario(request.param, "framing_scenario.py", work, "FRAMING", str(arrays), timeout=600)
    assert out["version"].startswith(request.param) and "error" not in out, out.get("error")
    return out


def test_a_new_head_lands_clear_in_view_and_facing_the_camera(found):
    p = found["placement"]
    assert p["moved_from"] == ["Cube"] and p["z"] == pytest.approx(0.0) and p["camera_kept"]
    assert p["gap"] >= 0.5 * p["size"] - 1e-6 and p["in_frame"]
    assert p["ray_hits"] == ["demo"] and p["facing"] == pytest.approx(1.0, abs=1e-6)


def test_frame_head_fits_the_head_with_headroom(found):
    assert found["cameras"] == 1                                    # made once, then reused
    for f in found["frames"]:
        assert f["rc"] == ["FINISHED"] and f["in_front"], f
        (x0, y0), (x1, y1) = f["min"], f["max"]
        assert abs(y0 - 0.10) < 2e-3 and y1 <= 0.85 + 2e-3, f       # the hair at the headroom line
        assert x0 >= 0.08 - 2e-3 and x1 <= 0.92 + 2e-3, f
        if f["res"][0] > f["res"][1]:
            assert y1 - y0 > 0.5, f


def test_set_up_compositing_hides_the_mesh_and_remove_restores(found):
    v = found["visibility"]
    assert v["setup_rc"] == ["FINISHED"] and v["remove_rc"] == ["FINISHED"]
    assert v["drawn_before"] > 30 and v["hidden_vs_empty"] < 1.5 / 255 and v["hidden_flags"] == [True, False]
    assert v["rays_vs_empty"] < 1.5 / 255 and v["rays_flags"] == [False, False]      # a modifier: rays off
    assert v["shadow_darkens"] > 0.1 and v["shadow_brightens"] < 1.5 / 255
    assert v["wb_hide_render"] is True and v["wb_hidden_vs_empty"] < 1.5 / 255
    assert v["restored"] == {n: n != "hide_render" for n in v["restored"]} and not v["store_left"]
