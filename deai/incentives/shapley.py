"""Shapley values of a cooperative game over ``n`` parties: exact, Monte-Carlo, GTG-Shapley, leave-one-out.

The game is a utility ``u(mask)`` of a coalition given as a boolean mask of length ``n``
(:class:`Coalitions` caches it: each coalition is evaluated once, and ``evaluations`` counts how many
were). Party ``i``'s Shapley value is its marginal gain ``u(S + i) - u(S)`` averaged over the orders in
which the parties could join (Shapley 1953); the values sum to ``u(all) - u(none)``.

* :func:`exact_shapley` enumerates all ``2^n`` coalitions (``n <= 16``).
* :func:`tmc_shapley` is truncated Monte-Carlo (Ghorbani and Zou 2019): random join orders, and once a
  prefix's utility is within ``tolerance`` of the grand coalition's the rest of that order gains nothing.
* :func:`gtg_shapley` is GTG-Shapley (Liu et al. 2022): the same with *guided* orders (each order starts
  from the next party in turn, so every party is seen first early), between-round truncation (a round
  whose full update changes the utility by less than ``tolerance`` is valued zero without sampling), and
  a convergence test on the running estimates.
* :func:`leave_one_out` is ``u(all) - u(all - i)``: cheap, but two parties holding the same data both
  get about zero, since either one is enough (Shapley splits their credit instead).
"""

from __future__ import annotations

from collections.abc import Callable
from math import factorial

import numpy as np

Utility = Callable[[np.ndarray], float]
BatchUtility = Callable[[np.ndarray], np.ndarray]  # masks [k, n] -> utilities [k]
MAX_EXACT = 16


class Coalitions:
    """A cached utility over coalitions of ``n`` parties; ``batch`` (optional) scores many masks at once."""

    def __init__(self, n: int, utility: Utility, batch: BatchUtility | None = None) -> None:
        if n < 1:
            raise ValueError(f"a game needs at least one party; got n = {n}")
        self.n, self._utility, self._batch = n, utility, batch
        self._cache: dict[bytes, float] = {}

    @property
    def evaluations(self) -> int:
        return len(self._cache)

    def __call__(self, mask: np.ndarray) -> float:
        return float(self.values(np.asarray(mask, dtype=bool)[None, :])[0])

    def values(self, masks: np.ndarray) -> np.ndarray:
        """The utility of each row of ``masks`` ``[k, n]``, computing only the coalitions not seen yet."""
        masks = np.asarray(masks, dtype=bool)
        keys = [np.packbits(m).tobytes() for m in masks]
        todo = {k: i for i, k in enumerate(keys) if k not in self._cache}
        if todo:
            rows = masks[list(todo.values())]
            if self._batch is not None:
                got = np.asarray(self._batch(rows), dtype=np.float64)
            else:
                got = np.array([float(self._utility(m)) for m in rows])
            self._cache.update(zip(todo, got.tolist(), strict=True))
        return np.array([self._cache[k] for k in keys])

    def full(self) -> float:
        return self(np.ones(self.n, dtype=bool))

    def empty(self) -> float:
        return self(np.zeros(self.n, dtype=bool))


def exact_shapley(game: Coalitions) -> np.ndarray:
    """Every coalition, weighted ``|S|! (n - |S| - 1)! / n!``: the definition, for ``n <= 16``."""
    n = game.n
    if n > MAX_EXACT:
        raise ValueError(
            f"exact Shapley enumerates 2^n coalitions; n = {n} is above {MAX_EXACT}: use gtg or tmc"
        )
    bits = (np.arange(1 << n)[:, None] >> np.arange(n)[None, :]) & 1  # row s: the members of coalition s
    values = game.values(bits.astype(bool))
    sizes = bits.sum(axis=1)
    weight = np.array([factorial(s) * factorial(n - s - 1) / factorial(n) for s in range(n)])
    phi = np.zeros(n)
    for i in range(n):
        without = np.flatnonzero(bits[:, i] == 0)
        phi[i] = np.sum(weight[sizes[without]] * (values[without | (1 << i)] - values[without]))
    return phi


def leave_one_out(game: Coalitions) -> np.ndarray:
    full = game.full()
    phi = np.zeros(game.n)
    for i in range(game.n):
        mask = np.ones(game.n, dtype=bool)
        mask[i] = False
        phi[i] = full - game(mask)
    return phi


def _walk(game: Coalitions, order: np.ndarray, full: float, tolerance: float, block: int = 8) -> np.ndarray:
    """Marginal gains along one join order, truncated once the prefix is within ``tolerance`` of ``full``.

    Prefixes are scored ``block`` at a time (one batched evaluation), stopping at the block where the
    truncation point falls: the same gains as walking one party at a time, in far fewer calls.
    """
    n = game.n
    gains = np.zeros(n)
    before = game.empty()
    for start in range(0, n, block):
        if abs(full - before) < tolerance:
            break
        stop = min(start + block, n)
        prefixes = np.zeros((stop - start, n), dtype=bool)
        for j in range(start, stop):
            prefixes[j - start, order[: j + 1]] = True
        after = game.values(prefixes)
        previous = np.concatenate([[before], after[:-1]])
        done = np.abs(full - previous) < tolerance  # the rest of this order would add (almost) nothing
        cut = int(np.argmax(done)) if done.any() else len(after)
        gains[order[start : start + cut]] = (after - previous)[:cut]
        if cut < len(after):
            break
        before = after[-1]
    return gains


def tmc_shapley(
    game: Coalitions,
    rng: np.random.Generator,
    *,
    tolerance: float = 1e-3,
    max_orders: int = 2000,
    converge: float = 0.025,
) -> np.ndarray:
    """Truncated Monte-Carlo over uniformly random join orders, until the estimates settle."""
    return _sampled(game, rng, tolerance, max_orders, converge, guided=False)


def gtg_shapley(
    game: Coalitions,
    rng: np.random.Generator,
    *,
    tolerance: float = 1e-3,
    max_orders: int = 2000,
    converge: float = 0.025,
) -> np.ndarray:
    """GTG-Shapley: between-round truncation, guided orders, within-order truncation, convergence test."""
    if abs(game.full() - game.empty()) < tolerance:
        return np.zeros(game.n)  # the round barely moved the utility: nothing to share
    return _sampled(game, rng, tolerance, max_orders, converge, guided=True)


def _sampled(
    game: Coalitions,
    rng: np.random.Generator,
    tolerance: float,
    max_orders: int,
    converge: float,
    *,
    guided: bool,
) -> np.ndarray:
    """Average truncated marginals over join orders, in blocks of ``n`` orders, until every estimate's
    standard error is below ``converge`` times the spread of the estimates (0.025: the 10%-of-range
    accuracy the valuation promises, at four standard errors), or ``max_orders`` orders."""
    n, full = game.n, game.full()
    floor = 1e-3 * max(abs(full - game.empty()), 1e-12)  # parties all worth the same: stop on the gain
    total, squares, count = np.zeros(n), np.zeros(n), 0
    while count < max_orders:
        for k in range(n):
            if guided:  # order k starts from party k mod n, the rest at random
                first = (count + k) % n
                rest = rng.permutation(np.delete(np.arange(n), first))
                order = np.concatenate([[first], rest])
            else:
                order = rng.permutation(n)
            gains = _walk(game, order, full, tolerance)
            total += gains
            squares += gains * gains
        count += n
        if count >= 2 * n:
            mean = total / count
            error = np.sqrt(np.maximum(squares / count - mean**2, 0.0) / (count - 1))
            if np.max(error) < converge * max(float(np.ptp(mean)), floor):
                break
    return total / count
