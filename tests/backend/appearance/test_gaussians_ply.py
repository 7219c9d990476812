"""GaussianSet and 3DGS PLY I/O: round trips, files written by other tools, malformed files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from emotalk3d_addon.backend.appearance.gaussians import GaussianSet
from emotalk3d_addon.backend.appearance.ply import read_ply, write_ply
from emotalk3d_addon.backend.appearance.ply import ply_dtype
from emotalk3d_addon.backend.errors import InputError


def random_set(n: int, degree: int, seed: int = 0) -> GaussianSet:
    g = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2
    return GaussianSet(
        means=torch.randn(n, 3, generator=g) * 0.1,
        quats=torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1),
        log_scales=torch.randn(n, 3, generator=g) - 5.0,
        opacity_logits=torch.randn(n, generator=g),
        sh=torch.randn(n, k, 3, generator=g),
    )


def assert_same(a: GaussianSet, b: GaussianSet) -> None:
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


# --------------------------------------------------------------------------- GaussianSet


def test_properties_and_activations():
    gs = random_set(7, 2)
    assert gs.num == len(gs) == 7 and gs.sh_degree == 2
    assert torch.allclose(gs.scales, gs.log_scales.exp())
    assert torch.allclose(gs.opacities, torch.sigmoid(gs.opacity_logits))
    assert torch.allclose(gs.unit_quats.norm(dim=1), torch.ones(7))


def test_concat_index_state_dict():
    a, b = random_set(5, 1, seed=1), random_set(3, 1, seed=2)
    c = GaussianSet.concat([a, b])
    assert c.num == 8
    assert_same(c.index(slice(0, 5)), a)
    mask = torch.zeros(8, dtype=torch.bool)
    mask[5:] = True
    assert_same(c.subset(mask), b)
    assert_same(c.index([5, 6, 7]), b)
    assert_same(GaussianSet.from_state_dict(c.state_dict("g.") | {"other": torch.zeros(1)}, "g."), c)
    with pytest.raises(ValueError, match="SH degrees"):
        GaussianSet.concat([a, random_set(2, 0)])
    with pytest.raises(InputError, match="missing"):
        GaussianSet.from_state_dict({"means": torch.zeros(1, 3)})
    bad = c.state_dict()
    bad["sh"] = bad["sh"].clone()
    bad["sh"][0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        GaussianSet.from_state_dict(bad)


def test_bad_shapes_rejected():
    gs = random_set(4, 0)
    with pytest.raises(ValueError, match="quats"):
        GaussianSet(gs.means, gs.quats[:, :3], gs.log_scales, gs.opacity_logits, gs.sh)
    with pytest.raises(ValueError, match="SH"):
        GaussianSet(gs.means, gs.quats, gs.log_scales, gs.opacity_logits, torch.zeros(4, 5, 3))


def test_from_points_colour():
    pts = torch.rand(4, 3)
    rgb = torch.tensor([[1.0, 0.5, 0.0]]).expand(4, 3)
    gs = GaussianSet.from_points(pts, rgb, sh_degree=1, scale=0.01, opacity=0.25)
    from emotalk3d_addon.backend.appearance.gaussians import SH_C0
    assert torch.allclose(gs.sh[:, 0] * SH_C0 + 0.5, rgb)
    assert torch.allclose(gs.opacities, torch.full((4,), 0.25))
    assert torch.allclose(gs.scales, torch.full((4, 3), 0.01))


# --------------------------------------------------------------------------- PLY round trip


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_ply_round_trip_exact(tmp_path: Path, degree: int):
    gs = random_set(50, degree, seed=degree)
    path = write_ply(gs, tmp_path / "g.ply")
    back = read_ply(path)
    assert back.sh_degree == degree
    assert_same(back, gs)


def test_written_header_is_inria_order(tmp_path: Path):
    gs = random_set(3, 3)
    raw = write_ply(gs, tmp_path / "g.ply").read_bytes()
    head = raw[: raw.index(b"end_header\n")].decode().splitlines()
    assert head[:3] == ["ply", "format binary_little_endian 1.0", "element vertex 3"]
    names = [ln.split()[2] for ln in head if ln.startswith("property")]
    assert all(ln.startswith("property float ") for ln in head[3:])
    expect = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(45)]
              + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    assert names == expect
    body = np.frombuffer(raw[raw.index(b"end_header\n") + 11:], dtype=ply_dtype(3))
    # channel-major f_rest: all of R's rest coefficients, then G's, then B's
    assert np.array_equal(body["f_rest_0"], gs.sh[:, 1, 0].numpy())
    assert np.array_equal(body["f_rest_14"], gs.sh[:, 15, 0].numpy())
    assert np.array_equal(body["f_rest_15"], gs.sh[:, 1, 1].numpy())
    assert np.array_equal(body["f_rest_44"], gs.sh[:, 15, 2].numpy())
    assert np.array_equal(body["rot_0"], gs.quats[:, 0].numpy())


# --------------------------------------------------------------------------- files from other tools


def inria_table(n: int, degree: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Per-property columns as an INRIA-style writer would hold them."""
    rng = np.random.default_rng(seed)
    k = (degree + 1) ** 2
    cols = {name: rng.standard_normal(n) for name in ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
                                                       "scale_0", "scale_1", "scale_2")}
    for i in range(3 * (k - 1)):
        cols[f"f_rest_{i}"] = rng.standard_normal(n)
    q = rng.standard_normal((n, 4))
    for i in range(4):
        cols[f"rot_{i}"] = q[:, i]
    return cols


def check_matches(gs: GaussianSet, cols: dict[str, np.ndarray], degree: int, dtype=np.float32) -> None:
    k = (degree + 1) ** 2
    c = lambda name: torch.from_numpy(cols[name].astype(dtype).astype(np.float32))  # noqa: E731
    assert gs.sh_degree == degree
    assert torch.equal(gs.means, torch.stack([c("x"), c("y"), c("z")], 1))
    assert torch.equal(gs.opacity_logits, c("opacity"))
    assert torch.equal(gs.log_scales, torch.stack([c(f"scale_{i}") for i in range(3)], 1))
    assert torch.equal(gs.quats, torch.stack([c(f"rot_{i}") for i in range(4)], 1))
    for ch in range(3):
        assert torch.equal(gs.sh[:, 0, ch], c(f"f_dc_{ch}"))
        for j in range(1, k):
            assert torch.equal(gs.sh[:, j, ch], c(f"f_rest_{ch * (k - 1) + j - 1}"))


def write_binary(path: Path, cols: dict, props: list[tuple[str, str]], n: int, endian: str = "<",
                 extra_elements: str = "", prefix: bytes = b"") -> None:
    dtype = np.dtype([(name, endian + t) for name, t in props])
    rec = np.zeros(n, dtype)
    for name, _ in props:
        rec[name] = cols.get(name, np.arange(n) % 200)
    ptype = {"f4": "float", "f8": "double", "u1": "uchar", "i4": "int"}
    fmt = {"<": "binary_little_endian", ">": "binary_big_endian"}[endian]
    head = ["ply", f"format {fmt} 1.0", "comment written by a test", extra_elements.rstrip("\n"),
            f"element vertex {n}"]
    head += [f"property {ptype[t]} {name}" for name, t in props] + ["element face 0",
                                                                      "property list uchar int vertex_indices",
                                                                      "end_header"]
    path.write_bytes(("\n".join(h for h in head if h) + "\n").encode() + prefix + rec.tobytes())


@pytest.mark.parametrize("degree", [0, 3])
def test_reads_inria_file_with_extras(tmp_path: Path, degree: int):
    n = 20
    cols = inria_table(n, degree, seed=degree)
    k = (degree + 1) ** 2
    props = ([("x", "f4"), ("y", "f4"), ("z", "f4"), ("nx", "f4"), ("ny", "f4"), ("nz", "f4")]
             + [(f"f_dc_{i}", "f4") for i in range(3)] + [(f"f_rest_{i}", "f4") for i in range(3 * (k - 1))]
             + [("opacity", "f4")] + [(f"scale_{i}", "f4") for i in range(3)] + [(f"rot_{i}", "f4") for i in range(4)]
             + [("red", "u1"), ("segment", "i4")])
    write_binary(tmp_path / "a.ply", cols, props, n)
    check_matches(read_ply(tmp_path / "a.ply"), cols, degree)


def test_reads_double_big_endian_shuffled_no_normals_with_leading_element(tmp_path: Path):
    n, degree = 9, 1
    cols = inria_table(n, degree, seed=5)
    names = list(cols)
    rng = np.random.default_rng(0)
    rng.shuffle(names)
    props = [(name, "f8") for name in names] + [("confidence", "f4")]
    # a scalar-only element before the vertex element must be skipped correctly
    extra = "element camera 2\nproperty float fx\nproperty float fy\n"
    pre = np.zeros(2, np.dtype([("fx", ">f4"), ("fy", ">f4")])).tobytes()
    write_binary(tmp_path / "b.ply", cols, props, n, endian=">", extra_elements=extra, prefix=pre)
    check_matches(read_ply(tmp_path / "b.ply"), cols, degree, dtype=np.float64)


def test_reads_ascii(tmp_path: Path):
    n, degree = 6, 2
    cols = inria_table(n, degree, seed=3)
    k = (degree + 1) ** 2
    names = (["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(3 * (k - 1))]
             + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    cols32 = {kk: v.astype(np.float32) for kk, v in cols.items()}
    head = ["ply", "format ascii 1.0", f"element vertex {n}"] + [f"property float {x}" for x in names]
    head += ["property uchar label", "end_header"]
    rows = [" ".join(repr(float(cols32[x][i])) for x in names) + " 7" for i in range(n)]
    (tmp_path / "c.ply").write_text("\n".join(head + rows) + "\n")
    check_matches(read_ply(tmp_path / "c.ply"), cols32, degree)


# --------------------------------------------------------------------------- malformed files


def good_bytes(tmp_path: Path) -> bytes:
    return write_ply(random_set(4, 1), tmp_path / "good.ply").read_bytes()


def header_of(raw: bytes) -> tuple[str, bytes]:
    i = raw.index(b"end_header\n") + len(b"end_header\n")
    return raw[:i].decode(), raw[i:]


@pytest.mark.parametrize("mutate, message", [
    (lambda h, b: ("plx" + h[3:], b), "not a PLY"),
    (lambda h, b: (h.replace("end_header\n", ""), b), "end_header"),
    (lambda h, b: (h.replace("binary_little_endian", "binary_middle_endian"), b), "format"),
    (lambda h, b: (h.replace("property float opacity", "property float opacityx"), b), "missing.*opacity"),
    (lambda h, b: (h.replace("property float rot_3", "property float something"), b), "rot_3"),
    (lambda h, b: (h.replace("property float x", "property int x"), b), "float or double"),
    (lambda h, b: (h.replace("property float f_rest_8\n", "property float unrelated\n"), b), "f_rest"),
    (lambda h, b: (h.replace("element vertex 4", "element points 4"), b), "no 'vertex'"),
    (lambda h, b: (h.replace("property float y", "property float x"), b), "twice"),
    (lambda h, b: (h.replace("property float y", "property flot y"), b), "property line"),
    (lambda h, b: (h, b[:-5]), "truncated"),
    (lambda h, b: (h.replace("element vertex 4", "element vertex 5"), b), "truncated"),
])
def test_malformed_binary(tmp_path: Path, mutate, message):
    h, b = header_of(good_bytes(tmp_path))
    h2, b2 = mutate(h, b)
    (tmp_path / "bad.ply").write_bytes(h2.encode() + b2)
    with pytest.raises(InputError, match=message):
        read_ply(tmp_path / "bad.ply")


def test_f_rest_count_not_a_degree(tmp_path: Path):
    h, b = header_of(good_bytes(tmp_path))  # degree 1: f_rest_0..8
    names = [ln.split()[2] for ln in h.splitlines() if ln.startswith("property")]
    rec = np.frombuffer(b, ply_dtype(1))
    keep = [x for x in names if x not in ("f_rest_6", "f_rest_7", "f_rest_8")]
    new = np.zeros(4, np.dtype([(x, "<f4") for x in keep]))
    for x in keep:
        new[x] = rec[x]
    head = "ply\nformat binary_little_endian 1.0\nelement vertex 4\n" + "".join(
        f"property float {x}\n" for x in keep) + "end_header\n"
    (tmp_path / "bad.ply").write_bytes(head.encode() + new.tobytes())
    with pytest.raises(InputError, match="SH degree"):
        read_ply(tmp_path / "bad.ply")


@pytest.mark.parametrize("field, value, message", [
    ("x", np.nan, "NaN or Inf position"),
    ("f_rest_3", np.inf, "NaN or Inf SH"),
    ("opacity", np.nan, "opacity"),
])
def test_non_finite_values(tmp_path: Path, field, value, message):
    h, b = header_of(good_bytes(tmp_path))
    rec = np.frombuffer(b, ply_dtype(1)).copy()
    rec[field][2] = value
    (tmp_path / "bad.ply").write_bytes(h.encode() + rec.tobytes())
    with pytest.raises(InputError, match=message):
        read_ply(tmp_path / "bad.ply")


def test_zero_quaternion_and_missing_file(tmp_path: Path):
    h, b = header_of(good_bytes(tmp_path))
    rec = np.frombuffer(b, ply_dtype(1)).copy()
    for i in range(4):
        rec[f"rot_{i}"][1] = 0.0
    (tmp_path / "bad.ply").write_bytes(h.encode() + rec.tobytes())
    with pytest.raises(InputError, match="zero rotation"):
        read_ply(tmp_path / "bad.ply")
    with pytest.raises(InputError, match="cannot read"):
        read_ply(tmp_path / "nope.ply")


def test_malformed_ascii(tmp_path: Path):
    names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
             "rot_0", "rot_1", "rot_2", "rot_3"]
    head = "ply\nformat ascii 1.0\nelement vertex 2\n" + "".join(f"property float {x}\n" for x in names) + "end_header\n"
    row = " ".join(["0.5"] * 14)
    (tmp_path / "a.ply").write_text(head + row + "\n")
    with pytest.raises(InputError, match="truncated"):
        read_ply(tmp_path / "a.ply")
    (tmp_path / "a.ply").write_text(head + row + "\n" + " ".join(["0.5"] * 13) + "\n")
    with pytest.raises(InputError, match="row 1 has 13 values"):
        read_ply(tmp_path / "a.ply")
    (tmp_path / "a.ply").write_text(head + row + "\n" + row.replace("0.5", "abc", 1) + "\n")
    with pytest.raises(InputError, match="not a number"):
        read_ply(tmp_path / "a.ply")
    (tmp_path / "a.ply").write_text(head + row + "\n" + row.replace("0.5", "nan", 1) + "\n")
    with pytest.raises(InputError, match="NaN"):
        read_ply(tmp_path / "a.ply")


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(0, 40), degree=st.integers(0, 3), seed=st.integers(0, 2 ** 31 - 1))
def test_ply_round_trip_property(tmp_path: Path, n: int, degree: int, seed: int):
    gs = random_set(n, degree, seed)
    assert_same(read_ply(write_ply(gs, tmp_path / "p.ply")), gs)


def test_to_detach_clone():
    gs = random_set(3, 0).requires_grad_(True)
    d = gs.detach()
    assert not d.means.requires_grad and torch.equal(d.means, gs.means)
    assert gs.to(dtype=torch.float64).means.dtype == torch.float64
    assert GaussianSet.empty(2).num == 0 and GaussianSet.empty(2).sh.shape == (0, 9, 3)
