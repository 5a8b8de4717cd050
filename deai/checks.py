"""Constructor-parameter checks shared by aggregation rules, attacks and their factories.

Every message names the parameter and what it must be; bools are never numbers here (``True`` is not a
count, a scale or a fraction).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np


def check_real(name: str, value: float) -> float:
    """A finite float."""
    v = _finite(value)
    if v is None:
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    return v


def check_positive(name: str, value: float) -> float:
    """A finite ``> 0`` float."""
    if _finite(value) is None or value <= 0:
        raise ValueError(f"{name} must be a positive finite number; got {value!r}")
    return float(value)


def check_non_negative(name: str, value: float) -> float:
    """A finite ``>= 0`` float."""
    if _finite(value) is None or value < 0:
        raise ValueError(f"{name} must be a non-negative finite number; got {value!r}")
    return float(value)


def _finite(value: object) -> float | None:
    """``value`` as a float when it is a finite non-bool number, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number) or not math.isfinite(value):
        return None
    return float(value)


def check_count(name: str, value: int, minimum: int = 0) -> int:
    """An integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def check_fraction(name: str, value: float, *, upper: float, closed: bool) -> float:
    """A float in ``[0, upper]`` (``closed``) or ``[0, upper)``."""
    v = _finite(value)
    if v is None or v < 0 or (v > upper if closed else v >= upper):
        raise ValueError(f"{name} must be a number in [0, {upper}{']' if closed else ')'}; got {value!r}")
    return v


def check_label(name: str, value: int) -> int:
    """A class index ``>= 0`` (its upper bound is checked when ``num_classes`` is known)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"{name} must be a class index (an integer >= 0); got {value!r}")
    return int(value)


def check_choice(name: str, value: str, allowed: Iterable[str]) -> str:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def check_options(cls: type, options: Mapping[str, Any], what: str) -> list[str]:
    """The keyword options ``cls`` accepts; unknown ones in ``options`` raise ValueError naming them
    and the allowed ones, before any constructor runs. ``what`` names the thing (e.g. "aggregator 'krum'")."""
    params = [
        n
        for n, p in inspect.signature(cls).parameters.items()
        if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise ValueError(
            f"{what} has no option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(params) or 'none'}"
        )
    return params
