"""PLY files with numpy alone: the header and the vertex element's columns.

The format side of ``appearance/ply.py`` (3DGS Gaussians), kept free of PyTorch so that
Blender's side reads a subject's Gaussian centres with the same parser (``bridge/head_extent.py``).
Ascii and binary (little or big endian) files, any scalar property types, elements before
and after ``vertex``; a malformed file raises ``InputError`` saying what is wrong.
"""
from __future__ import annotations

import re

import numpy as np

from ..errors import InputError

_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}
_MAX_HEADER_BYTES = 1 << 20
class _Element:
    def __init__(self, name: str, count: int):
        self.name = name
        self.count = count
        self.props: list[tuple[str, str]] = []  # (name, numpy type code) for scalar properties
        self.has_list = False


def parse_header(raw: bytes, where: str) -> tuple[str, list[_Element], int]:
    """(format, elements, byte offset of the body)."""
    if not raw.startswith(b"ply"):
        raise InputError(f"{where} is not a PLY file (it does not start with 'ply')")
    m = re.search(rb"end_header[ \t]*\r?\n", raw[:_MAX_HEADER_BYTES])
    if m is None:
        raise InputError(f"{where}: PLY header has no 'end_header' line")
    try:
        text = raw[:m.start()].decode("ascii")
    except UnicodeDecodeError:
        raise InputError(f"{where}: PLY header is not ASCII text") from None
    fmt: str | None = None
    elements: list[_Element] = []
    for lineno, line in enumerate(text.splitlines()[1:], start=2):
        parts = line.split()
        if not parts or parts[0] in ("comment", "obj_info"):
            continue
        key = parts[0]
        if key == "format":
            if len(parts) != 3 or parts[1] not in _FORMATS:
                raise InputError(f"{where}: unsupported PLY format line {line.strip()!r} "
                                 f"(expected ascii or binary_little/big_endian)")
            fmt = parts[1]
        elif key == "element":
            if len(parts) != 3 or not parts[2].isdigit():
                raise InputError(f"{where}: bad PLY element line {lineno}: {line.strip()!r}")
            elements.append(_Element(parts[1], int(parts[2])))
        elif key == "property":
            if not elements:
                raise InputError(f"{where}: PLY property before any element (line {lineno})")
            el = elements[-1]
            if len(parts) == 5 and parts[1] == "list":
                el.has_list = True
                continue
            if len(parts) != 3 or parts[1] not in _TYPES:
                raise InputError(f"{where}: bad PLY property line {lineno}: {line.strip()!r}")
            if any(parts[2] == p for p, _ in el.props):
                raise InputError(f"{where}: PLY property {parts[2]!r} is declared twice")
            el.props.append((parts[2], _TYPES[parts[1]]))
        else:
            raise InputError(f"{where}: unknown PLY header line {lineno}: {line.strip()!r}")
    if fmt is None:
        raise InputError(f"{where}: PLY header has no 'format' line")
    return fmt, elements, m.end()


def vertex_columns(fmt: str, elements: list[_Element], body: bytes, where: str) -> tuple[_Element, dict]:
    """Find the vertex element and return it with {property name: (N,) float64 array}."""
    names = [e.name for e in elements]
    if "vertex" not in names:
        raise InputError(f"{where}: PLY file has no 'vertex' element")
    vi = names.index("vertex")
    vertex = elements[vi]
    if vertex.has_list:
        raise InputError(f"{where}: PLY vertex element has a list property; 3DGS files have none")
    n = vertex.count
    if fmt == "ascii":
        lines = body.decode("ascii", errors="replace").splitlines()
        lines = [ln for ln in lines if ln.strip()]
        skip = sum(e.count for e in elements[:vi])
        rows = lines[skip:skip + n]
        if len(rows) < n:
            raise InputError(f"{where}: PLY data is truncated: {len(rows)} of {n} vertex rows present")
        want = len(vertex.props)
        bad = next((i for i, r in enumerate(rows) if len(r.split()) != want), None)
        if bad is not None:
            raise InputError(f"{where}: PLY vertex row {bad} has {len(rows[bad].split())} values, "
                             f"expected {want}")
        try:
            table = np.array(" ".join(rows).split(), dtype=np.float64).reshape(n, want)
        except ValueError:
            raise InputError(f"{where}: PLY vertex rows hold a value that is not a number") from None
        return vertex, {p: table[:, i] for i, (p, _) in enumerate(vertex.props)}
    order = _FORMATS[fmt]
    offset = 0
    for e in elements[:vi]:
        if e.has_list:
            raise InputError(f"{where}: binary PLY element {e.name!r} before 'vertex' has a list "
                             f"property; cannot locate the vertex data")
        offset += e.count * sum(int(t[1]) for _, t in e.props)
    dtype = np.dtype([(p, order + t) for p, t in vertex.props])
    need = offset + n * dtype.itemsize
    if len(body) < need:
        raise InputError(f"{where}: PLY data is truncated: {len(body)} bytes after the header, "
                         f"{need} needed for {n} vertices")
    table = np.frombuffer(body, dtype=dtype, count=n, offset=offset)
    return vertex, {p: table[p] for p, _ in vertex.props}


def read_vertex_columns(raw: bytes, where: str) -> tuple[_Element, dict]:
    """The vertex element of a whole PLY file's bytes and {property name: (N,) array}."""
    fmt, elements, start = parse_header(raw, where)
    return vertex_columns(fmt, elements, raw[start:], where)
