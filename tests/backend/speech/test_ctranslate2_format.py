"""The CTranslate2 model.bin reader: round trip with a writer of the documented format,
and a clear FormatError for every truncation and forgery."""
import struct

import numpy as np
import pytest

from emotalk3d_addon.backend.speech.ctranslate2_format import FormatError, read_ct2_model

CODES = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.int32): 3,
         np.dtype(np.float16): 4}


def _name(s: str) -> bytes:
    raw = s.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def write_ct2(variables: dict[str, np.ndarray], aliases: dict[str, str] | None = None,
              version: int = 6, spec: str = "WhisperSpec") -> tuple[bytes, list[int]]:
    """The file's bytes and the offset of every structure boundary in it."""
    out = bytearray(struct.pack("<I", version) + _name(spec) + struct.pack("<I", 3) +
                    struct.pack("<I", len(variables)))
    bounds = [4, len(out)]
    for name, arr in variables.items():
        arr = np.asarray(arr, order="C")
        out += _name(name) + struct.pack("<B", arr.ndim) + struct.pack(f"<{arr.ndim}I", *arr.shape)
        out += struct.pack("<B", CODES[arr.dtype]) + struct.pack("<I", arr.nbytes)
        bounds.append(len(out))
        out += arr.tobytes()
        bounds.append(len(out))
    aliases = aliases or {}
    out += struct.pack("<I", len(aliases))
    for a, t in aliases.items():
        out += _name(a) + _name(t)
    bounds.append(len(out))
    return bytes(out), bounds


VARS = {"encoder/conv1/weight": np.arange(24, dtype=np.float16).reshape(2, 4, 3),
        "encoder/num_heads": np.array(6, np.int16),
        "decoder/embeddings/weight": np.ones((3, 2), np.float32)}


def test_round_trip_with_prefix_filter_and_aliases(tmp_path):
    data, _ = write_ct2(VARS, {"encoder/alias": "encoder/conv1/weight"})
    (tmp_path / "model.bin").write_bytes(data)
    model = read_ct2_model(tmp_path / "model.bin", prefix="encoder/")
    assert model.spec == "WhisperSpec" and model.revision == 3
    assert set(model.variables) == {"encoder/conv1/weight", "encoder/num_heads", "encoder/alias"}
    np.testing.assert_array_equal(model.variables["encoder/conv1/weight"], VARS["encoder/conv1/weight"])
    assert model.variables["encoder/conv1/weight"].dtype == np.float16
    assert int(model.variables["encoder/num_heads"]) == 6
    np.testing.assert_array_equal(model.variables["encoder/alias"], VARS["encoder/conv1/weight"])


def test_every_truncation_is_a_format_error(tmp_path):
    data, bounds = write_ct2(VARS)
    cuts = sorted({b + d for b in bounds for d in (-1, 0, 1) if 0 <= b + d < len(data)} | set(range(0, 40)))
    for cut in cuts:
        (tmp_path / "m.bin").write_bytes(data[:cut])
        with pytest.raises(FormatError):
            read_ct2_model(tmp_path / "m.bin")


@pytest.mark.parametrize("patch, message", [
    (lambda b: struct.pack("<I", 99) + b[4:], "version 99"),
    (lambda b: b.replace(struct.pack("<B", 4) + struct.pack("<I", 48), struct.pack("<B", 9) + struct.pack("<I", 48)),
     "dtype code 9"),
    (lambda b: b.replace(struct.pack("<B", 4) + struct.pack("<I", 48), struct.pack("<B", 4) + struct.pack("<I", 40)),
     "should hold 48 bytes"),
])
def test_forged_headers_are_named(tmp_path, patch, message):
    data, _ = write_ct2(VARS)
    (tmp_path / "m.bin").write_bytes(patch(data))
    with pytest.raises(FormatError, match=message):
        read_ct2_model(tmp_path / "m.bin")


def test_a_huge_claimed_size_is_refused_without_allocating(tmp_path):
    data = struct.pack("<I", 6) + _name("WhisperSpec") + struct.pack("<II", 3, 1) + _name("x") + \
        struct.pack("<B", 2) + struct.pack("<2I", 1 << 20, 1 << 20) + struct.pack("<B", 0) + struct.pack("<I", 0)
    (tmp_path / "m.bin").write_bytes(data)
    with pytest.raises(FormatError, match="should hold"):
        read_ct2_model(tmp_path / "m.bin")
    with pytest.raises(FormatError, match="cannot read"):
        read_ct2_model(tmp_path / "absent.bin")
