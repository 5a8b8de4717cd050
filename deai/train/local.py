"""Local training of many parties at once: mini-batch SGD as batched array operations.

Parties are sorted by how many steps they take this round, so at step ``s`` the parties still
training are a prefix of the batch: one gradient call per step, no per-party Python loop and no
compute wasted on parties that have finished. Each party's batch order comes from its own key
(:mod:`deai.rng`), so its result does not depend on who else trains in the same call.

The FedProx proximal term (Li et al. 2020) and SCAFFOLD's control-variate correction
(Karimireddy et al. 2020) enter as extra gradient terms; plain SGD is both set to zero.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from deai.models.base import Model
from deai.rng import Purpose, key, party_permutations


@dataclass(frozen=True)
class LocalSpec:
    """How each party trains locally."""

    epochs: int = 1
    batch_size: int = 32
    lr: float = 0.1
    prox_mu: float = 0.0
    class_weights: tuple[float, ...] | None = None  # per-class loss weights (e.g. balanced for rare classes)
    # Replaces model.loss_grad when set: called as gradient_fn(model, W, X, y, weight, seed, round, ids, step)
    # and returning (loss [P], grad [P, dim]); example-level DP-SGD plugs in here (deai.privacy.dp).
    gradient_fn: Callable[..., tuple[np.ndarray, np.ndarray]] | None = None


@dataclass
class LocalResult:
    """What a batch of parties returns: ``deltas[p] = w_local[p] - w_global``."""

    deltas: np.ndarray  # float32 [P, dim]
    steps: np.ndarray  # int64 [P], local SGD steps actually taken
    train_loss: np.ndarray  # float32 [P], mean mini-batch loss over the steps taken


def planned_steps(train_sizes: np.ndarray, spec: LocalSpec) -> np.ndarray:
    """Local steps each party would take with no deadline: ``epochs * ceil(n / batch_size)``."""
    return spec.epochs * -(-np.asarray(train_sizes, dtype=np.int64) // spec.batch_size)


def train_parties(
    model: Model,
    x: np.ndarray,
    y: np.ndarray,
    offsets: np.ndarray,
    party_ids: np.ndarray,
    w_global: np.ndarray,
    spec: LocalSpec,
    seed: int,
    round_: int,
    step_budget: np.ndarray | None = None,
    correction: np.ndarray | None = None,
    rng_ids: np.ndarray | None = None,
) -> LocalResult:
    """Run local SGD for ``party_ids`` from ``w_global``; see the module docstring.

    ``x``/``y``/``offsets`` hold every party's training rows flat (party p owns rows
    ``offsets[p]:offsets[p+1]``). ``step_budget`` caps each party's steps (stragglers that
    stop at a deadline); ``correction`` is added to every gradient (SCAFFOLD's ``c - c_i``).
    ``rng_ids`` are the parties' global ids when ``party_ids`` index a subset's rows (a party holding
    only its own data): the random streams follow the party, not where its rows are stored.
    """
    party_ids = np.asarray(party_ids, dtype=np.int64)
    stream_ids = party_ids if rng_ids is None else np.asarray(rng_ids, dtype=np.int64)
    P, B = len(party_ids), spec.batch_size
    starts = offsets[party_ids]
    sizes = offsets[party_ids + 1] - starts
    per_epoch = -(-sizes // B)
    total = spec.epochs * per_epoch
    if step_budget is not None:
        total = np.minimum(total, np.asarray(step_budget, dtype=np.int64))

    order = np.argsort(-total, kind="stable")  # longest first: active parties form a prefix
    ids, starts, sizes, per_epoch, total = (a[order] for a in (stream_ids, starts, sizes, per_epoch, total))
    perms = np.stack(
        [party_permutations(key(seed, round_, Purpose.PERMUTE, e), ids, sizes) for e in range(spec.epochs)]
    )  # [epochs, P, max_size]

    W = np.repeat(w_global[None, :].astype(np.float32), P, axis=0)
    loss_sum = np.zeros(P, dtype=np.float64)
    corr = None if correction is None else np.asarray(correction, dtype=np.float32)[order]
    within = np.arange(min(B, int(sizes.max(initial=1))))  # no padding wider than the largest party
    class_weights = None if spec.class_weights is None else np.asarray(spec.class_weights, dtype=np.float32)
    n_steps = int(total.max(initial=0))
    active = P
    for s in range(n_steps):
        while active > 0 and total[active - 1] <= s:
            active -= 1
        k = active
        epoch = s // per_epoch[:k]
        pos = (s % per_epoch[:k])[:, None] * B + within[None, :]  # [k, width] positions in the permutation
        valid = pos < sizes[:k, None]
        local = perms[epoch[:, None], np.arange(k)[:, None], np.minimum(pos, perms.shape[2] - 1)]
        rows = np.where(valid, starts[:k, None] + local, 0)
        yb = y[rows]
        weight = valid.astype(np.float32)
        if class_weights is not None:
            weight *= class_weights[yb]
        if spec.gradient_fn is None:
            loss, grad = model.loss_grad(W[:k], x[rows], yb, weight)
        else:
            loss, grad = spec.gradient_fn(model, W[:k], x[rows], yb, weight, seed, round_, ids[:k], s)
        if spec.prox_mu:
            grad += spec.prox_mu * (W[:k] - w_global[None, :])
        if corr is not None:
            grad += corr[:k]
        W[:k] -= spec.lr * grad
        loss_sum[:k] += loss

    inverse = np.empty_like(order)
    inverse[order] = np.arange(P)
    deltas = (W - w_global[None, :])[inverse]
    mean_loss = (loss_sum / np.maximum(total, 1))[inverse].astype(np.float32)
    return LocalResult(deltas=deltas, steps=total[inverse], train_loss=mean_loss)
