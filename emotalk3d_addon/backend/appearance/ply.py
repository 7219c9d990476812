"""Standard 3DGS PLY files (the INRIA layout every splat viewer reads).

One ``vertex`` element, binary little endian float32, properties in this order::

    x y z  nx ny nz  f_dc_0 f_dc_1 f_dc_2  f_rest_0 .. f_rest_{3(K-1)-1}
    opacity  scale_0 scale_1 scale_2  rot_0 rot_1 rot_2 rot_3

``f_rest`` is channel-major as in the INRIA code: the K-1 higher coefficients of R, then
those of G, then of B (``f_rest_{c(K-1) + k-1} = sh[:, k, c]``). ``opacity`` is stored as
the logit, ``scale_i`` as the log, ``rot`` as w, x, y, z (unnormalised values are kept as
stored). Normals are written as zeros and ignored on reading.

Reading also accepts ascii and big-endian files, double-precision properties, missing
normals, extra properties (any scalar type, in any order) and extra elements around the
vertex element (in a binary file the elements before ``vertex`` must have scalar
properties only). A malformed file raises ``InputError`` saying what is wrong.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..io.ply_format import read_vertex_columns
from .gaussians import MAX_SH_DEGREE, GaussianSet

_FIXED = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
          "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")


def read_ply(path: str | Path, dtype: torch.dtype = torch.float32) -> GaussianSet:
    """Read a 3DGS PLY file (see the module docstring) into a GaussianSet of ``dtype``.

    Raises InputError for a missing or malformed file: bad header, missing properties,
    non-float required properties, truncated data, NaN/Inf values, zero quaternions.
    """
    p = Path(path)
    where = str(p)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read PLY file {where}: {exc.strerror or exc}") from None
    vertex, cols = read_vertex_columns(raw, where)
    types = dict(vertex.props)

    rest = sorted((int(k[7:]) for k in cols if re.fullmatch(r"f_rest_\d+", k)))
    missing = [k for k in _FIXED if k not in cols]
    if rest != list(range(len(rest))):
        gaps = sorted(set(range(max(rest) + 1)) - set(rest))
        missing += [f"f_rest_{i}" for i in gaps]
    if missing:
        raise InputError(f"{where}: PLY vertex element is missing 3DGS properties: {', '.join(missing)}")
    k = len(rest) // 3 + 1
    deg = math.isqrt(k) - 1
    if len(rest) % 3 or (deg + 1) ** 2 != k or deg > MAX_SH_DEGREE:
        raise InputError(f"{where}: {len(rest)} f_rest properties do not match an SH degree 0..{MAX_SH_DEGREE} "
                         f"(expected 0, 9, 24 or 45)")
    used = list(_FIXED) + [f"f_rest_{i}" for i in rest]
    not_float = [u for u in used if types[u] not in ("f4", "f8")]
    if not_float:
        raise InputError(f"{where}: PLY properties {', '.join(not_float)} must be float or double")

    n = vertex.count
    col = lambda name: np.asarray(cols[name], dtype=np.float64)  # noqa: E731
    stack = lambda names: np.stack([col(x) for x in names], -1) if names else np.zeros((n, 0))  # noqa: E731
    means = stack(["x", "y", "z"])
    sh = np.empty((n, k, 3), np.float64)
    sh[:, 0] = stack(["f_dc_0", "f_dc_1", "f_dc_2"])
    if k > 1:
        # channel-major: f_rest_{c*(K-1) + j} is coefficient j+1 of channel c
        sh[:, 1:] = stack([f"f_rest_{i}" for i in range(3 * (k - 1))]).reshape(n, 3, k - 1).transpose(0, 2, 1)
    opacity = col("opacity")
    log_scales = stack(["scale_0", "scale_1", "scale_2"])
    quats = stack(["rot_0", "rot_1", "rot_2", "rot_3"])
    for name, a in (("position", means), ("SH colour", sh), ("opacity", opacity),
                    ("scale", log_scales), ("rotation", quats)):
        bad = ~np.isfinite(a).reshape(n, -1).all(axis=1) if n else np.zeros(0, bool)
        if bad.any():
            raise InputError(f"{where}: {int(bad.sum())} Gaussian(s) have NaN or Inf {name} values "
                             f"(first is vertex {int(np.flatnonzero(bad)[0])})")
    zero = ~(np.abs(quats) > 0).any(axis=1)
    if zero.any():
        raise InputError(f"{where}: {int(zero.sum())} Gaussian(s) have an all-zero rotation quaternion "
                         f"(first is vertex {int(np.flatnonzero(zero)[0])})")
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(dtype)  # noqa: E731
    return GaussianSet(t(means), t(quats), t(log_scales), t(opacity), t(sh))


def ply_dtype(sh_degree: int) -> np.dtype:
    """The structured little-endian float32 vertex dtype written for an SH degree."""
    k = (sh_degree + 1) ** 2
    names = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
             + [f"f_rest_{i}" for i in range(3 * (k - 1))]
             + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    return np.dtype([(name, "<f4") for name in names])


def write_ply(gs: GaussianSet, path: str | Path) -> Path:
    """Write ``gs`` as a binary little-endian float32 3DGS PLY file; returns the path."""
    n, k = gs.num, gs.sh.shape[1]
    a = lambda t, w: t.detach().to("cpu", torch.float64).numpy().reshape(n, w)  # noqa: E731
    sh = gs.sh.detach().to("cpu", torch.float64).numpy()
    table = np.concatenate([
        a(gs.means, 3), np.zeros((n, 3)), sh[:, 0],
        sh[:, 1:].transpose(0, 2, 1).reshape(n, 3 * (k - 1)),  # channel-major f_rest
        a(gs.opacity_logits, 1), a(gs.log_scales, 3), a(gs.quats, 4),
    ], axis=1).astype("<f4")
    dtype = ply_dtype(gs.sh_degree)
    records = np.ascontiguousarray(table).view(dtype).reshape(n)
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    header += [f"property float {name}" for name in dtype.names] + ["end_header"]
    out = Path(path)
    with open(out, "wb") as fh:
        fh.write(("\n".join(header) + "\n").encode("ascii"))
        fh.write(records.tobytes())
    return out
