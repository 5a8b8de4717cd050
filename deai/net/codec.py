"""The wire format of a message body: named NumPy arrays and JSON fields, without pickle.

A body is ``MAGIC | u32 header length | header JSON | raw array bytes``. The header lists each array's
dtype, shape and byte range; decoding checks every one against the bytes that came, so a damaged or
hostile body is refused with a :class:`WireError` naming what is wrong, never executed or half-read.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

from deai.jsonio import canonical

MAGIC = b"DEAI\x01"
#: The dtypes a body may carry; anything else is refused (no object arrays, no pickles).
DTYPES = ("float32", "float64", "int64", "int32", "int8", "bool", "uint8")
_LEN = struct.Struct(">I")


class WireError(ValueError):
    """A message that cannot be decoded: the text names the part that is wrong."""


def encode(fields: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> bytes:
    """``fields`` (strict-JSON values) and ``arrays`` as one body."""
    arrays = arrays or {}
    index, blobs, offset = {}, [], 0
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        if a.dtype.name not in DTYPES:
            raise WireError(f"array {name!r} has dtype {a.dtype}; the wire carries {', '.join(DTYPES)}")
        raw = a.tobytes()
        index[name] = [a.dtype.name, list(a.shape), offset, len(raw)]
        blobs.append(raw)
        offset += len(raw)
    header = canonical({"arrays": index, "fields": fields}).encode()
    return b"".join([MAGIC, _LEN.pack(len(header)), header, *blobs])


def decode(body: bytes | bytearray | memoryview) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The fields and arrays of ``body``; arrays are views of its bytes (no copy)."""
    body = memoryview(body)
    if bytes(body[: len(MAGIC)]) != MAGIC:
        raise WireError("body does not start with deai's wire magic (not a deai message, or another version)")
    start = len(MAGIC) + _LEN.size
    if len(body) < start:
        raise WireError("body is truncated before its header length")
    (n,) = _LEN.unpack_from(body, len(MAGIC))
    if start + n > len(body):
        raise WireError(f"header says {n} bytes but the body has {len(body) - start} after the length")
    try:
        header = json.loads(bytes(body[start : start + n]), parse_constant=_no_constant)
        fields, index = header["fields"], header["arrays"]
        if not isinstance(fields, dict) or not isinstance(index, dict):
            raise TypeError("fields and arrays must be objects")
    except (ValueError, KeyError, TypeError) as err:
        raise WireError(f"header is not a deai header ({err})") from None
    data = body[start + n :]
    arrays = {}
    for name, spec in index.items():
        try:
            dtype, shape, off, size = spec
            shape = tuple(int(d) for d in shape)
            dt = np.dtype(dtype)
        except (ValueError, TypeError) as err:
            raise WireError(f"array {name!r}: bad description {spec!r} ({err})") from None
        if dtype not in DTYPES:
            raise WireError(f"array {name!r} has dtype {dtype!r}; the wire carries {', '.join(DTYPES)}")
        if any(d < 0 for d in shape) or int(np.prod(shape, dtype=np.int64)) * dt.itemsize != size:
            raise WireError(f"array {name!r}: shape {list(shape)} of {dtype} is not {size} bytes")
        if not (isinstance(off, int) and 0 <= off and off + size <= len(data)):
            raise WireError(f"array {name!r}: bytes {off}..{off + size} lie outside the body")
        arrays[name] = np.frombuffer(data[off : off + size], dtype=dt).reshape(shape)
    return fields, arrays


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not strict JSON")
