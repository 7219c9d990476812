"""8-bit PNG read/write with numpy and zlib only (no imaging library needed).

``write_png`` stores rows with the "Up" filter (fast to write and to read back);
``read_png`` reads any 8-bit non-interlaced PNG (grey, grey+alpha, RGB, RGBA, palette
not supported); rows filtered with Average or Paeth take a slower per-pixel path.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

_SIG = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}
_COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(image: np.ndarray, level: int = 6) -> bytes:
    """(H, W) or (H, W, C) uint8, C in 1..4 -> PNG bytes."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ValueError("write_png needs uint8 pixels")
    if img.ndim == 2:
        img = img[..., None]
    h, w, c = img.shape
    rows = img.reshape(h, w * c)
    filtered = np.empty((h, w * c + 1), np.uint8)
    filtered[:, 0] = 2                                   # Up
    filtered[0, 0] = 0
    filtered[0, 1:] = rows[0]
    filtered[1:, 1:] = rows[1:] - rows[:-1]              # uint8 arithmetic wraps mod 256
    header = struct.pack(">IIBBBBB", w, h, 8, _COLOR_TYPE[c], 0, 0, 0)
    return (_SIG + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(filtered.tobytes(), level))
            + _chunk(b"IEND", b""))


def write_png(path: str | Path, image: np.ndarray, level: int = 6) -> None:
    Path(path).write_bytes(encode_png(image, level))


def read_png(path: str | Path) -> np.ndarray:
    """PNG file -> (H, W, C) uint8 (C = 1, 2, 3 or 4)."""
    data = Path(path).read_bytes()
    if data[:8] != _SIG:
        raise ValueError(f"{path}: not a PNG file")
    pos, idat, header = 8, [], None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + n
    if header is None:
        raise ValueError(f"{path}: PNG without IHDR")
    w, h, depth, ctype, _, _, interlace = header
    if depth != 8 or ctype not in _CHANNELS or interlace:
        raise ValueError(f"{path}: only 8-bit non-interlaced grey/RGB(A) PNGs are supported")
    c = _CHANNELS[ctype]
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(h, w * c + 1)
    kinds, rows = raw[:, 0], raw[:, 1:].copy()
    out = np.empty_like(rows)
    prev = np.zeros(w * c, np.uint8)
    for y in range(h):
        f, line = kinds[y], rows[y]
        if f == 0:
            cur = line
        elif f == 1:
            cur = np.cumsum(line.reshape(w, c), axis=0, dtype=np.uint8).reshape(-1)
        elif f == 2:
            cur = line + prev
        elif f in (3, 4):
            cur = _slow_unfilter(f, line, prev, c)
        else:
            raise ValueError(f"{path}: bad PNG filter {f}")
        out[y] = cur
        prev = cur
    return out.reshape(h, w, c)


def _slow_unfilter(f: int, line: np.ndarray, prev: np.ndarray, c: int) -> np.ndarray:
    cur = line.astype(np.int32)
    up = prev.astype(np.int32)
    for i in range(cur.size):
        a = cur[i - c] if i >= c else 0
        b = up[i]
        if f == 3:
            cur[i] = (cur[i] + (a + b) // 2) & 255
        else:
            cc = up[i - c] if i >= c else 0
            p = a + b - cc
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - cc)
            pred = a if (pa <= pb and pa <= pc) else (b if pb <= pc else cc)
            cur[i] = (cur[i] + pred) & 255
    return cur.astype(np.uint8)
