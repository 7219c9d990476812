"""Hostile appearance files: seeded random damage to a 3DGS PLY (header bytes, body bytes,
truncation, element counts, property types, NaN/Inf, a huge header) and to the G2ANet
tensors of a bundle. Every case either reads as a finite, well-shaped result or is refused
with InputError naming the file; nothing else escapes."""
from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from emotalk3d_addon.backend.appearance.ply import read_ply, write_ply
from emotalk3d_addon.backend.errors import BundleError, InputError
from emotalk3d_addon.backend.subject import load_subject, validate_subject
from tests.backend.appearance.test_gaussians_ply import random_set
from tests.backend.appearance.test_storage import subject_with_appearance  # noqa: F401 (fixture)

CASES = 160


def _mutate(raw: bytes, rng: np.random.Generator) -> bytes:
    head_end = raw.index(b"end_header") + len(b"end_header\n")
    header, body = raw[:head_end], bytearray(raw[head_end:])
    kind = rng.integers(8)
    if kind == 0:                                   # flip bytes in the header
        h = bytearray(header)
        for _ in range(rng.integers(1, 4)):
            h[rng.integers(len(h))] = rng.integers(256)
        return bytes(h) + bytes(body)
    if kind == 1:                                   # flip bytes in the body
        for _ in range(rng.integers(1, 50)):
            body[rng.integers(len(body))] = rng.integers(256)
        return header + bytes(body)
    if kind == 2:                                   # truncate anywhere
        return raw[: rng.integers(len(raw))]
    if kind == 3:                                   # a lying vertex count
        count = int(rng.choice([0, 1, 49, 51, 10**6, 2**31, 2**62, -5]))
        return re.sub(rb"element vertex \d+", b"element vertex %d" % count, header) + bytes(body)
    if kind == 4:                                   # a property of another type
        names = re.findall(rb"property float (\w+)", header)
        name = names[rng.integers(len(names))]
        kind_name = rng.choice([b"uchar", b"int", b"double", b"short", b"list uchar float"])
        return header.replace(b"property float " + name + b"\n", b"property " + kind_name + b" " + name + b"\n",
                              1) + bytes(body)
    if kind == 5:                                   # NaN / Inf at float positions
        floats = np.frombuffer(bytes(body[: len(body) // 4 * 4]), "<f4").copy()
        floats[rng.integers(floats.size, size=rng.integers(1, 5))] = rng.choice([np.nan, np.inf, -np.inf])
        return header + floats.tobytes() + bytes(body[len(body) // 4 * 4:])
    if kind == 6:                                   # a huge header (comments)
        return header.replace(b"ply\n", b"ply\n" + b"comment " + b"x" * 200 + b"\n" * 1, 1).replace(
            b"end_header", b"comment " + b"y" * int(rng.integers(10**4, 10**6)) + b"\nend_header", 1) + bytes(body)
    return header.replace(b"format binary_little_endian", rng.choice([b"format ascii", b"format binary_big_endian",
                                                                       b"format weird"]), 1) + bytes(body)


def test_damaged_ply_files_read_cleanly_or_are_refused_by_name(tmp_path):
    good = tmp_path / "good.ply"
    write_ply(random_set(50, 1, seed=3), good)
    raw = good.read_bytes()
    outcomes = {"read": 0, "refused": 0}
    for seed in range(CASES):
        path = tmp_path / f"case{seed}.ply"
        path.write_bytes(_mutate(raw, np.random.default_rng(seed)))
        try:
            gs = read_ply(path)
        except InputError as exc:
            assert str(path) in str(exc), (seed, exc)
            outcomes["refused"] += 1
            continue
        assert gs.means.shape[1] == 3 and gs.num >= 0, seed
        for t in (gs.means, gs.quats, gs.log_scales, gs.opacity_logits, gs.sh):
            assert torch.isfinite(t).all(), seed
        outcomes["read"] += 1
    assert outcomes["refused"] > CASES // 2 and outcomes["read"] > 0, outcomes


def _damage(tensors: dict, rng: np.random.Generator) -> dict:
    out = dict(tensors)
    name = sorted(out)[rng.integers(len(out))]
    t = out[name]
    kind = rng.integers(5)
    if kind == 0:
        out.pop(name)                                           # a tensor missing
    elif kind == 1:
        out[name + ".extra"] = torch.zeros(3)                    # a tensor no config asks for
    elif kind == 2:
        shape = list(t.shape) or [1]
        shape[rng.integers(len(shape))] += int(rng.integers(1, 4))
        out[name] = torch.zeros(shape, dtype=t.dtype)          # the wrong shape
    elif kind == 3 and t.is_floating_point() and t.numel():
        t = t.clone()
        t.view(-1)[rng.integers(t.numel())] = float(rng.choice([np.nan, np.inf]))
        out[name] = t                                            # NaN / Inf
    else:
        out[name] = t.to(torch.float16 if t.is_floating_point() else torch.int8)   # another dtype
    return out


def test_damaged_g2anet_tensors_are_refused_by_name(subject_with_appearance, tmp_path):  # noqa: F811
    _, path = subject_with_appearance
    tensors = load_file(str(path / "appearance.safetensors"))
    accepted = 0
    for seed in range(40):
        case = tmp_path / f"bundle{seed}"
        shutil.copytree(path, case)
        save_file(_damage(tensors, np.random.default_rng(seed)), str(case / "appearance.safetensors"))
        defects = validate_subject(case)
        if not defects:                       # a harmless change (say, f16 where f16 is read as float)
            load_subject(case)
            accepted += 1
            continue
        assert any("appearance" in d for d in defects), (seed, defects)
        with pytest.raises(BundleError):
            load_subject(case)
    assert accepted < 40 // 2


@pytest.fixture
def subject_with_rigid_parts(tmp_path):
    from emotalk3d_addon.backend.appearance.completion import CompletionConfig
    from emotalk3d_addon.backend.appearance.dynamic import AnimatedHead
    from emotalk3d_addon.backend.appearance.g2anet import G2AConfig
    from emotalk3d_addon.backend.appearance.rigid import RigidPart
    from tests.backend.appearance.test_storage import VIEW
    from tests.backend.fixtures_subject import make_tiny_subject

    subject = make_tiny_subject(tmp_path)
    g = subject.geometry
    tri = np.array([[0, 1, 2], [1, 3, 2]])
    lo = g.template.min(0)
    plate = (lo + np.array([[0, 0, 0], [0.02, 0, 0], [0, 0, 0.02], [0.02, 0, 0.02]])).astype(np.float32)
    parts = [RigidPart("skull_plate", plate, tri, np.zeros(0, np.int64)),
             RigidPart("jaw_plate", plate - np.float32(0.002), tri, np.arange(5, 15, dtype=np.int64))]
    subject.appearance = AnimatedHead.initial(g.template, g.triangles, g.uvs, g.face_mask,
                                              g2a=G2AConfig(sh_degree=1, hidden=16),
                                              completion=CompletionConfig(num_points=100, seed=1),
                                              rigid_parts=parts, rigid_per_cm2=5.0)
    subject.manifest["appearance"] = {"view": VIEW}
    return subject.save(tmp_path / "with_rigid")


def _damage_rigid(tensors: dict, manifest: dict, rng: np.random.Generator, num_vertices: int) -> None:
    names = sorted(k for k in tensors if k.startswith("rigid.") and tensors[k].numel())   # the skull's is empty
    name = names[rng.integers(len(names))]
    t = tensors[name]
    kind = rng.integers(8)
    if kind == 0:
        tensors.pop(name)                                        # missing
    elif kind == 1:
        tensors["rigid.part"] = torch.cat([tensors["rigid.part"], tensors["rigid.part"][:1]])   # one too many
    elif kind == 2:
        tensors[name] = t.to(torch.int32)                        # another dtype
    elif kind == 3:
        tensors[name] = t.clone()
        tensors[name][rng.integers(t.numel())] = -1 if rng.integers(2) else (num_vertices if "anchor" in name else 2)
    elif kind == 4 and "anchor" in name:
        tensors[name] = t[:2]                                    # too few to fit a rotation
    elif kind == 5:
        manifest["num_rigid"] += int(rng.choice([-1, 1]))        # the manifest disagrees with the files
    elif kind == 6:
        k = int(rng.integers(2))                                 # a bad name, the other's name, none
        manifest["rigid_parts"][k] = str(rng.choice(["Jaw Plate", manifest["rigid_parts"][1 - k], ""]))
    else:
        tensors["rigid.anchor.unknown_part"] = torch.arange(3)   # a tensor no part names


def test_damaged_rigid_parts_are_refused_by_name(subject_with_rigid_parts, tmp_path):
    import json

    path = subject_with_rigid_parts
    assert load_subject(path).appearance.rigid.num > 0
    tensors = load_file(str(path / "appearance.safetensors"))
    manifest = json.loads((path / "subject.json").read_text())
    v = load_subject(path).geometry.num_vertices
    for seed in range(30):
        case = tmp_path / f"rigid{seed}"
        shutil.copytree(path, case)
        t, m = dict(tensors), json.loads(json.dumps(manifest))
        _damage_rigid(t, m["appearance"], np.random.default_rng(seed), v)
        save_file(t, str(case / "appearance.safetensors"))
        (case / "subject.json").write_text(json.dumps(m))
        defects = validate_subject(case)
        assert defects and any("appearance" in d or "rigid" in d for d in defects), (seed, defects)
        with pytest.raises(BundleError):
            load_subject(case)
