"""Update compression as client transforms: what a party sends is smaller, the simulator sends the same.

* :class:`StochasticInt8` — each row to 8 bits with a power-of-two scale and stochastic rounding (unbiased:
  ``E[q] = x / s``; Alistarh et al. 2017's QSGD with 254 levels). The row it returns is exactly
  ``q * 2^e`` in float32, so the wire can carry ``q`` as int8 and ``e`` as one integer and the receiver
  rebuilds the float32 row bit for bit (:func:`deai.net.payloads.compact`).
* :class:`ErrorFeedbackCompressor` — top-k sparsification (optionally then 8-bit) with error feedback
  (Stich, Cordonnier and Jaggi 2018; Karimireddy et al. 2019): what a party leaves out this round is added
  to its next update, so nothing is lost, only delayed. The residual is each party's own state, kept in
  its checkpoint.

Random draws are keyed by (seed, round, party), so a party compresses the same way wherever it runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from deai.context import RoundContext
from deai.rng import Purpose, key, party_uniform

LEVELS = 127


def pow2_scales(rows: np.ndarray) -> np.ndarray:
    """``[P]`` exponents ``e`` with ``max|row| / 2^e <= 127``, the smallest such (0 for a zero row)."""
    peak = np.abs(rows).max(axis=1).astype(np.float64) if rows.size else np.zeros(len(rows))
    with np.errstate(divide="ignore"):
        e = np.ceil(np.log2(peak / LEVELS))
    return np.where(peak > 0, e, 0).astype(np.int64)


def stochastic_int8(rows: np.ndarray, ctx: RoundContext) -> np.ndarray:
    """Each row rounded stochastically to ``q * 2^e``, ``q`` an integer in [-127, 127]."""
    rows = np.asarray(rows, dtype=np.float32)
    if rows.size == 0:
        return rows
    e = pow2_scales(rows)
    scale = np.ldexp(1.0, e)[:, None]
    u = party_uniform(key(ctx.seed, ctx.round, Purpose.COMPRESS), ctx.party_ids, rows.shape[1])
    q = np.clip(np.floor(rows / scale + u), -LEVELS, LEVELS)
    return (q * scale).astype(np.float32)


@dataclass(frozen=True)
class StochasticInt8:
    def init(self, dim: int) -> None:
        return None

    def apply(self, updates: np.ndarray, state: None, ctx: RoundContext) -> tuple[np.ndarray, None]:
        return stochastic_int8(updates, ctx), None


@dataclass(frozen=True)
class ErrorFeedbackCompressor:
    """Top-k of ``update + residual`` per party (``fraction`` of the coordinates), then 8-bit if ``int8``."""

    fraction: float
    int8: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.fraction <= 1:
            raise ValueError(f"topk fraction must be in (0, 1]; got {self.fraction}")

    def init(self, dim: int) -> dict[int, np.ndarray]:
        return {}  # party id -> its residual, created on first use

    def apply(
        self, updates: np.ndarray, state: dict[int, np.ndarray], ctx: RoundContext
    ) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        P, dim = updates.shape
        if P == 0:
            return updates, state
        ids = [int(p) for p in ctx.party_ids]
        zero = np.zeros(dim, np.float32)
        acc = updates + np.stack([state.get(p, zero) for p in ids])
        k = max(1, math.ceil(self.fraction * dim))
        out = np.zeros_like(acc)
        if k >= dim:
            out[:] = acc
        else:
            top = np.argpartition(-np.abs(acc), k - 1, axis=1)[:, :k]
            np.put_along_axis(out, top, np.take_along_axis(acc, top, axis=1), axis=1)
        if self.int8:
            out = np.where(out != 0, stochastic_int8(out, ctx), 0).astype(np.float32)
        new = dict(state)
        for i, p in enumerate(ids):
            new[p] = (acc[i] - out[i]).astype(np.float32)
        return out, new

    @staticmethod
    def to_tree(state: dict[int, np.ndarray]) -> dict[str, Any]:
        ids = sorted(state)
        rows = np.stack([state[p] for p in ids]) if ids else np.zeros((0, 0), np.float32)
        return {"ids": np.array(ids, dtype=np.int64), "rows": rows}

    @staticmethod
    def from_tree(tree: dict[str, Any]) -> dict[int, np.ndarray]:
        ids, rows = np.asarray(tree["ids"]), np.asarray(tree["rows"], dtype=np.float32)
        return {int(p): rows[i].copy() for i, p in enumerate(ids)}
