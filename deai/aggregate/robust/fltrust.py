"""FLTrust (Cao, Fang, Liu and Gong 2021, "FLTrust: Byzantine-robust Federated Learning via Trust
Bootstrapping", NDSS).

The server trains on a small clean root data set and gets its own update ``g0``. A party's trust score is
``ReLU(cos(g_i, g0))``, so updates pointing away from the server's get no weight; each update is rescaled to
``|g0|`` so no party gains influence by magnitude; the aggregate is the trust-weighted mean of the rescaled
updates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from deai.aggregate.base import RoundContext
from deai.aggregate.robust._common import check_round, combine, row_dots, row_sq_norms

log = logging.getLogger(__name__)

SERVER_UPDATE = "server_update"


def server_update_of(
    ctx: RoundContext, dim: int, server_update: Callable[[RoundContext], np.ndarray] | None = None
) -> np.ndarray:
    """The round's root-data update ``g0``: ``ctx.signals["server_update"]`` if set, else
    ``server_update(ctx)``; a finite ``[dim]`` float32 array, or a ``ValueError`` saying how to give one."""
    if SERVER_UPDATE in ctx.signals:
        g0 = ctx.signals[SERVER_UPDATE]
    elif server_update is not None:
        g0 = server_update(ctx)
    else:
        raise ValueError(
            "this rule needs the server's root-data update: put it in ctx.signals['server_update'] or "
            "construct the rule with server_update=callable"
        )
    g0 = np.asarray(g0, dtype=np.float32)
    if g0.shape != (dim,) or not np.isfinite(g0).all():
        raise ValueError(f"server_update must be a finite [dim] = ({dim},) array; got shape {g0.shape}")
    return g0


def check_server_update(server_update: object) -> None:
    if server_update is not None and not callable(server_update):
        raise ValueError(
            f"server_update must be a callable ctx -> [dim] array or None; got {server_update!r}"
        )


class FLTrust:
    """Trust-weighted mean of updates rescaled to the server update's norm.

    Parameters
    ----------
    server_update : optional callable ``ctx -> [dim]`` giving the server's root-data update ``g0`` for the
        round. Without it, ``g0`` must be passed as ``ctx.signals["server_update"]``; when both exist, the
        signal (the round's explicit value) wins.

    Example counts are validated but not used: FLTrust's weights are the trust scores. If every trust
    score is 0 (nothing points the server's way, or ``g0`` is zero) the result is the zero update, logged
    as a warning. ``ctx.signals["fltrust_trust"]`` holds the scores and ``ctx.signals["fltrust_weight"]``
    each party's share of the aggregate (scores over their sum, all zero in that case).
    """

    name = "fltrust"
    needs_root = True

    def __init__(self, *, server_update: Callable[[RoundContext], np.ndarray] | None = None) -> None:
        check_server_update(server_update)
        self.server_update = server_update

    def __call__(self, updates: np.ndarray, weights: np.ndarray, ctx: RoundContext) -> np.ndarray:
        u, _ = check_round(updates, weights)
        n, dim = u.shape
        g0 = server_update_of(ctx, dim, self.server_update)
        g0_norm = float(np.sqrt(row_sq_norms(g0[None])[0]))
        norms = np.sqrt(row_sq_norms(u, ctx))
        usable = norms > 0
        cos = np.zeros(n)
        if g0_norm > 0:
            cos[usable] = row_dots(u, g0)[usable] / (norms[usable] * g0_norm)
        trust = np.maximum(cos, 0.0)
        ctx.signals["fltrust_trust"] = trust
        total = trust.sum()
        if total <= 0:
            ctx.signals["fltrust_weight"] = np.zeros(n)
            log.warning(
                "fltrust round %d: every trust score is 0 (no update points along the server's); "
                "returning the zero update",
                ctx.round,
            )
            return np.zeros(dim, dtype=np.float32)
        share = trust / total
        ctx.signals["fltrust_weight"] = share
        rescale = np.divide(g0_norm, norms, out=np.zeros(n), where=usable)
        return combine(share * rescale, u)
