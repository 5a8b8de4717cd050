"""Strict JSON for everything deai writes or prints.

RFC 8259 has no NaN or infinity, and strict parsers (``jq``, JavaScript's ``JSON.parse``, Go, Rust)
reject Python's bare ``NaN``/``Infinity``. Every non-finite number is therefore written as ``null``
(an epsilon of ``null`` with no privacy mechanism means "not private", i.e. infinite); NumPy scalars
and arrays become plain numbers and lists.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def strict(value: Any) -> Any:
    """``value`` with non-finite floats replaced by ``None`` and NumPy types made plain, recursively."""
    if isinstance(value, float | np.floating):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return strict(value.tolist())
    if isinstance(value, dict):
        return {str(k): strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict(v) for v in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`strict` ``(value)``; raises if anything non-finite is left."""
    return json.dumps(strict(value), allow_nan=False, **kwargs)


def canonical(value: Any) -> str:
    """The one text of ``value`` that is signed or hashed: strict JSON, sorted keys, no spaces, UTF-8 kept."""
    return dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
