"""Reader of CTranslate2's ``model.bin`` (the format faster-whisper's models ship in).

The file is a flat binary table, read here with ``struct`` and numpy only (nothing in it
can run code):

    u32 version, name (u16 length + bytes, NUL-terminated), u32 revision, u32 count,
    then per variable: name, u8 rank, rank x u32 dims, u8 dtype, u32 byte count, data;
    then u32 alias count and (alias name, target name) pairs.

Every length is checked against the file before it is used, so a truncated or forged
file raises ``FormatError`` instead of reading past its end or allocating its claims.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

# CTranslate2's DataType enum
DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
SUPPORTED_VERSIONS = range(5, 7)
MAX_RANK = 8


class FormatError(InputError):
    """A model.bin is truncated, forged or of a version this reader does not know."""


@dataclass(frozen=True)
class CT2Model:
    """The variables of a model.bin (those kept by the reader's prefix filter)."""

    spec: str                              # e.g. "WhisperSpec"
    revision: int
    variables: dict[str, np.ndarray]       # name -> array (own memory, native dtype)


class _Cursor:
    def __init__(self, data: memoryview, where: str):
        self.data, self.pos, self.where = data, 0, where

    def take(self, size: int) -> memoryview:
        if size < 0 or self.pos + size > len(self.data):
            raise FormatError(f"{self.where}: truncated at byte {self.pos} (needs {size} more bytes, "
                              f"{len(self.data) - self.pos} left)")
        out = self.data[self.pos:self.pos + size]
        self.pos += size
        return out

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))

    def string(self) -> str:
        (size,) = self.unpack("<H")
        raw = bytes(self.take(size))
        try:
            return raw.rstrip(b"\0").decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"{self.where}: a variable name is not UTF-8 (byte {self.pos})") from None


def read_ct2_model(path: str | Path, prefix: str = "") -> CT2Model:
    """Read ``path``; keep only variables whose name starts with ``prefix`` (others are skipped
    without being copied). Raises FormatError naming the defect."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FormatError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_ct2_model(data, str(path), prefix)


def parse_ct2_model(data: bytes | bytearray | memoryview, where: str, prefix: str = "") -> CT2Model:
    """The model held in ``data`` (a whole model.bin already in memory, e.g. rejoined from
    parts); ``where`` names it in errors. Same filter and errors as ``read_ct2_model``."""
    return _parse(_Cursor(memoryview(data), where), prefix)


def _parse(cur: _Cursor, prefix: str) -> CT2Model:
    (version,) = cur.unpack("<I")
    if version not in SUPPORTED_VERSIONS:
        raise FormatError(f"{cur.where}: CTranslate2 model version {version} is not supported "
                          f"(known: {SUPPORTED_VERSIONS.start}-{SUPPORTED_VERSIONS.stop - 1})")
    spec = cur.string()
    (revision,) = cur.unpack("<I")
    (count,) = cur.unpack("<I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(count):
        name = cur.string()
        (rank,) = cur.unpack("<B")
        if rank > MAX_RANK:
            raise FormatError(f"{cur.where}: variable {name!r} claims rank {rank}")
        dims = cur.unpack(f"<{rank}I") if rank else ()
        (code,) = cur.unpack("<B")
        (nbytes,) = cur.unpack("<I")
        if code not in DTYPES:
            raise FormatError(f"{cur.where}: variable {name!r} has unknown dtype code {code}")
        dtype = np.dtype(DTYPES[code])
        expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
        if expected != nbytes:
            raise FormatError(f"{cur.where}: variable {name!r} of shape {dims} and dtype {dtype} "
                              f"should hold {expected} bytes, the file says {nbytes}")
        raw = cur.take(nbytes)
        if name.startswith(prefix):
            variables[name] = np.frombuffer(raw, dtype).reshape(dims).copy()
    (aliases,) = cur.unpack("<I")
    for _ in range(aliases):
        alias, target = cur.string(), cur.string()
        if alias.startswith(prefix) and target in variables:
            variables[alias] = variables[target]
    return CT2Model(spec, int(revision), variables)
