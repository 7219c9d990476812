"""Cameras on a 180 degree arc; texture atlas and emotion overlays; the PNG codec."""
import struct
import zlib

import numpy as np
import pytest

from emotalk3d_addon.backend.datasets.synthetic.cameras import arc_cameras, camera_centre, project
from emotalk3d_addon.backend.datasets.synthetic.head import ATLAS
from emotalk3d_addon.backend.datasets.synthetic.model import HeadModel
from emotalk3d_addon.backend.datasets.synthetic.png import encode_png, read_png, write_png
from emotalk3d_addon.backend.datasets.synthetic.texture import SkinChart, base_texture, overlay
from emotalk3d_addon.backend.emotions import EMOTIONS

SIZE = 256


@pytest.fixture(scope="module")
def model():
    return HeadModel()


@pytest.fixture(scope="module")
def overlays(model):
    return {e: overlay(e, SIZE, model.mouth) for e in EMOTIONS}


def test_eleven_cameras_on_a_180_degree_arc_at_head_height():
    cams = arc_cameras(256, 256, 11, seed=3)
    assert [c["name"] for c in cams] == [f"cam{i:02d}" for i in range(11)]
    centres = np.array([camera_centre(c) for c in cams])
    dist = np.linalg.norm(centres[:, :2], axis=1)
    assert np.all(np.abs(dist - 1.0) < 0.08)
    assert np.all(np.abs(centres[:, 2]) < 0.05)                     # head height
    az = np.degrees(np.arctan2(centres[:, 0], -centres[:, 1]))
    assert abs(az[0] + 90) < 3 and abs(az[-1] - 90) < 3 and abs(az[5]) < 3
    assert np.all(np.diff(az) > 12) and np.all(np.diff(az) < 24)
    for c in cams:
        K = np.array(c["K"])
        M = np.array(c["world_to_camera"])
        R = M[:3, :3]
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-9)
        assert np.linalg.det(R) > 0.999 and np.allclose(M[3], [0, 0, 0, 1])
        assert K[0, 0] == K[1, 1] and K[0, 1] == 0 and K[2].tolist() == [0, 0, 1]
        assert abs(K[0, 2] - c["width"] / 2) < 0.05 * c["width"]
        assert abs(K[1, 2] - c["height"] / 2) < 0.05 * c["height"]
        # looking at the head: the head centre projects near the image centre, in front
        head = np.array([[0.0, 0.0, -0.01]])
        uv = project(c, head)[0]
        assert np.all(np.abs(uv - 128) < 30)
        assert (M[:3, :3] @ head[0] + M[:3, 3])[2] > 0.8
        # the head (~0.24 m tall) fills a good part of the frame
        top, chin = project(c, np.array([[0, 0, 0.12], [0, 0, -0.13]]))
        assert 0.45 * 256 < chin[1] - top[1] < 0.8 * 256
    # x right / y down: the subject's top is up in the image
    assert project(cams[5], np.array([[0, 0, 0.1]]))[0, 1] < project(cams[5], np.array([[0, 0, -0.1]]))[0, 1]
    # the subject's left (+X) appears on the right of the front camera
    assert project(cams[5], np.array([[0.05, 0, 0]]))[0, 0] > 128


def test_texture_atlas_has_detail(model):
    tex = base_texture(SIZE, model.mouth)
    assert tex.shape == (SIZE, SIZE, 4) and tex.dtype == np.uint8 and (tex[..., 3] == 255).all()
    u0, v0, u1, v1 = ATLAS["skin"]
    skin = tex[int((1 - v1) * SIZE):int((1 - v0) * SIZE), int(u0 * SIZE):int(u1 * SIZE), :3].astype(float)
    assert skin.std(axis=(0, 1)).min() > 8                     # brows, lips, hair edge, pores
    chart = SkinChart(SIZE, model.mouth)
    X, Z = chart.X, chart.Z
    front = chart.fm > 0.9
    lips = front & (np.abs(X) < 0.01) & (np.abs(chart.dZ) < 0.004)
    cheek = front & (np.abs(np.abs(X) - 0.04) < 0.006) & (np.abs(Z + 0.05) < 0.006)
    brow = front & (np.abs(np.abs(X) - 0.028) < 0.004) & (np.abs(Z - 0.025) < 0.0015)
    region = tex[chart.rows, chart.cols, :3].astype(float)
    r_lip, r_cheek, r_brow = (region[m].mean(0) for m in (lips, cheek, brow))
    assert r_lip[0] - r_lip[1] > r_cheek[0] - r_cheek[1] + 10          # lips redder
    assert r_brow.sum() < r_cheek.sum() - 100                         # brows darker


def test_overlays_differ_per_emotion_and_hit_the_right_regions(model, overlays):
    assert not overlays["neutral"].any()
    names = [e for e in EMOTIONS if e != "neutral"]
    for i, a in enumerate(names):
        assert np.abs(overlays[a]).max() > 0.05
        for b in names[i + 1:]:
            assert np.abs(overlays[a] - overlays[b]).mean() > 1e-4, (a, b)
    chart = SkinChart(SIZE, model.mouth)
    X, Z, fm = chart.X, chart.Z, chart.fm

    def mean(e, mask):
        return overlays[e][chart.rows, chart.cols][mask & (fm > 0.9)].mean(0)

    forehead = (np.abs(X) < 0.02) & (Z > 0.035) & (Z < 0.06)
    cheeks = (np.abs(np.abs(X) - 0.045) < 0.008) & (np.abs(Z + 0.03) < 0.008)
    glabella = (np.abs(X) < 0.008) & (Z > 0.012) & (Z < 0.032)
    assert mean("surprised", forehead).sum() < -0.01                  # forehead creases
    def darkest(e, mask):
        return overlays[e][chart.rows, chart.cols][mask & (fm > 0.9)].sum(-1).min()

    assert darkest("fear", forehead) < -0.2 and darkest("surprised", forehead) < -0.2
    assert darkest("happy", forehead) > -0.01
    assert mean("happy", cheeks)[0] > 0.03                            # flush
    assert mean("angry", cheeks)[0] > 0.03
    assert mean("angry", glabella).sum() < -0.005                     # furrow lines
    assert mean("fear", cheeks)[2] > 0.02                             # pallor: bluer, lighter
    assert mean("sad", cheeks)[2] > 0.01


def test_png_roundtrip_and_filters(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (17, 23, 4), dtype=np.uint8)
    write_png(tmp_path / "a.png", img)
    np.testing.assert_array_equal(read_png(tmp_path / "a.png"), img)
    rgb = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(read_png_bytes(encode_png(rgb), tmp_path), rgb)
    # other encoders' filters: Sub, Average, Paeth
    for f in (1, 3, 4):
        data = _reference_png(img, f)
        np.testing.assert_array_equal(read_png_bytes(data, tmp_path), img)


def read_png_bytes(data, tmp_path):
    p = tmp_path / "x.png"
    p.write_bytes(data)
    return read_png(p)


def _reference_png(img, f):
    """A plain per-pixel PNG encoder using one filter type for every row."""
    h, w, c = img.shape
    rows = img.reshape(h, w * c).astype(int)
    out = bytearray()
    for y in range(h):
        out.append(f)
        prev = rows[y - 1] if y else np.zeros(w * c, int)
        for i in range(w * c):
            a = rows[y][i - c] if i >= c else 0
            b = prev[i]
            cc = prev[i - c] if i >= c else 0
            if f == 1:
                pred = a
            elif f == 3:
                pred = (a + b) // 2
            else:
                p = a + b - cc
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - cc)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else cc)
            out.append((rows[y][i] - pred) & 255)

    def chunk(k, d):
        return struct.pack(">I", len(d)) + k + d + struct.pack(">I", zlib.crc32(k + d) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(out))) + chunk(b"IEND", b""))
