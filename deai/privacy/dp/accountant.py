"""Privacy accounting for the Poisson-subsampled Gaussian mechanism, as a thin layer over ``dp_accounting``.

Every DP mechanism in deai (DP-FedAvg's per-round noise, DP-SGD's per-step noise) is a Gaussian
mechanism applied to a Poisson sample of parties or examples. Its privacy cost is computed here
and only here, by Google's ``dp_accounting`` library: RDP (Mironov 2017, "Rényi Differential
Privacy"; Mironov, Talwar & Zhang 2019, "Rényi Differential Privacy of the Sampled Gaussian
Mechanism") or PLD (Koskela et al. 2020; Doroshenko et al. 2022, "Connect the Dots: Tighter
Discrete Approximations of Privacy Loss Distributions"). This module does bookkeeping only: it
builds ``DpEvent`` objects and asks the library for epsilon — no privacy formula is written here,
in the spirit of Opacus' ``accountants/`` beside ``accountants/analysis/``. It does size a PLD
before asking for it: the privacy-loss range grows like ``1 / z^2``, so at tiny noise the grid is
coarsened (pessimistic rounding keeps epsilon an upper bound) or, beyond any grid, refused.

Neighbouring relation: add-or-remove one record (the library default), where a record is one
party's whole data for user-level DP-FedAvg and one example for DP-SGD.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import warnings
from collections.abc import Iterator, Sequence
from typing import Literal

import dp_accounting
import numpy as np
from dp_accounting import pld, rdp
from dp_accounting.pld import common as pld_common
from dp_accounting.pld import privacy_loss_distribution as pld_distribution
from dp_accounting.pld import privacy_loss_mechanism as pld_mechanism

from deai.config import DeaiWarning


class AccountingWarning(DeaiWarning):
    """The accountant had to trade tightness for bounded work; epsilon is still a valid upper bound."""


AccountantKind = Literal["rdp", "pld"]

_ACCOUNTANTS = ("rdp", "pld")

#: PLD value discretization interval. dp_accounting's default is 1e-4; 1e-3 is about 10x faster
#: (a 72-point grid of z in {0.5..4}, q in {0.01..1}, up to 100 steps: 2.5 s instead of 27 s) and,
#: because the PLD accountant rounds pessimistically, epsilon stays a valid upper bound. Measured on
#: that grid: at most 1e-3 larger in absolute terms than with 1e-4 (relatively, under 2e-4 where
#: epsilon > 0.5, but up to 1.3% where epsilon < 0.1). Pass ``pld_value_discretization=1e-4`` where
#: that matters.
DEFAULT_PLD_VALUE_DISCRETIZATION = 1e-3

#: RDP orders: the library's ``DEFAULT_RDP_ORDERS`` (1.1 to 10.9 by 0.1, 11 to 63, and 128 to 1024),
#: chosen by its authors to cover the Gaussian mechanism in the regimes of interest.
RDP_ORDERS: tuple[float, ...] = tuple(float(a) for a in rdp.rdp_privacy_accountant.DEFAULT_RDP_ORDERS)

#: Most bins of the composed PLD (summed over a history's entries and pmfs) that dp_accounting is
#: asked to build: about 1-2 s and 16 MiB. The privacy-loss range grows like ``1 / z^2``, so at tiny
#: noise (z = 0.01, q = 0.5, 100 steps: 4e8 bins at 1e-3) the library would run for many minutes and
#: tens of GB; there the interval is coarsened instead (see :func:`pld_discretization`).
PLD_MAX_BINS = 2**21

# Each mechanism's pmfs are built point by point before any composition (the slow step, ~10 us a
# bin); this caps their bins, summed.
_PLD_MAX_BUILT_BINS = 2**17
# Coarsest interval used (nats per bin). dp_accounting computes exp(interval), which overflows near
# 709; 64 is far from that and already means epsilon in the tens of millions.
_PLD_MAX_INTERVAL = 64.0
# Share of those caps each PLD of a calibration search gets: Brent's method evaluates a dozen.
_PLD_SEARCH_BIN_SHARE = 1 / 8
# Bins of the coarse probe PLD whose truncation bounds estimate the composed PLD's width.
_PLD_PROBE_BINS = 2000
# Tail mass that dp_accounting's self-composition may truncate (its default in ``self_compose``).
_PLD_TAIL_MASS = 1e-15

# Composed accountants are cached by event history: the epsilon of the same history at another
# delta and a budget check followed by the same record then cost nothing. Histories are tiny
# tuples; a PLD can hold up to PLD_MAX_BINS bins (16 MiB), hence a small cache.
_CACHE_SIZE = 8

_History = tuple[tuple[float, float, int], ...]


class BudgetExceededError(ValueError):
    """Raised before a mechanism runs when running it would push epsilon past the privacy budget."""

    def __init__(self, budget_epsilon: float, delta: float, epsilon: float, round: int | None = None) -> None:
        self.budget_epsilon = float(budget_epsilon)
        self.delta = float(delta)
        self.epsilon = float(epsilon)
        self.round = round
        when = f"in round {round}" if round is not None else "by the next event"
        super().__init__(
            f"privacy budget epsilon={self.budget_epsilon!r} (delta={self.delta:g}) would be exceeded "
            f"{when}: epsilon would reach {self.epsilon:.3g}; lower rounds or raise noise_multiplier"
        )

    def __reduce__(self) -> tuple:
        # Rebuilt from its fields, so it survives pickling across process and Ray backends.
        return (type(self), (self.budget_epsilon, self.delta, self.epsilon, self.round))


# ---------------------------------------------------------------------------- validation
def _check_noise_multiplier(value: float) -> float:
    z = float(value)
    if not (math.isfinite(z) and z >= 0):
        raise ValueError(f"noise_multiplier must be a finite number >= 0, got {value!r}")
    return z


def _check_sampling_rate(value: float) -> float:
    q = float(value)
    if not (0.0 <= q <= 1.0):
        raise ValueError(f"sampling_rate must lie in [0, 1], got {value!r}")
    return q


def _check_steps(value: int) -> int:
    if isinstance(value, bool) or not float(value).is_integer() or int(value) < 0:
        raise ValueError(f"steps must be an integer >= 0, got {value!r}")
    return int(value)


def _check_delta(value: float) -> float:
    d = float(value)
    if not (0.0 < d < 1.0):
        raise ValueError(f"delta must lie in (0, 1), got {value!r}")
    return d


def _check_accountant(value: str) -> AccountantKind:
    if value not in _ACCOUNTANTS:
        raise ValueError(f"accountant must be one of {_ACCOUNTANTS}, got {value!r}")
    return value  # type: ignore[return-value]


def _check_discretization(value: float) -> float:
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"pld_value_discretization must be a finite number > 0, got {value!r}")
    return v


# ---------------------------------------------------------------------------- events
def subsampled_gaussian_event(
    noise_multiplier: float, sampling_rate: float, steps: int
) -> dp_accounting.DpEvent:
    """The ``DpEvent`` of ``steps`` rounds of the Poisson-subsampled Gaussian mechanism.

    With ``sampling_rate == 1`` there is no subsampling, and the plain ``GaussianDpEvent`` is used:
    the same mechanism, but the PLD accountant then composes it in closed form (one Gaussian with
    noise ``z / sqrt(steps)``) instead of discretizing and self-convolving it ``steps`` times, which is
    both tighter and much faster. RDP gives identical numbers either way.
    """
    gaussian = dp_accounting.GaussianDpEvent(noise_multiplier)
    single = (
        gaussian if sampling_rate == 1.0 else dp_accounting.PoissonSampledDpEvent(sampling_rate, gaussian)
    )
    return dp_accounting.SelfComposedDpEvent(single, steps)


def _is_free(entry: tuple[float, float, int]) -> bool:
    """No record is ever touched: nothing is released about anyone."""
    _, q, steps = entry
    return steps == 0 or q == 0.0


def _is_non_private(entry: tuple[float, float, int]) -> bool:
    z, _, _ = entry
    return z == 0.0 and not _is_free(entry)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _composed(
    history: _History, accountant: AccountantKind, discretization: float
) -> dp_accounting.PrivacyAccountant:
    """A fresh library accountant with every (z, q, steps) entry of ``history`` composed into it."""
    acc: dp_accounting.PrivacyAccountant
    if accountant == "rdp":
        acc = rdp.RdpAccountant(orders=RDP_ORDERS)
    else:
        acc = pld.PLDAccountant(value_discretization_interval=discretization)
    for z, q, steps in history:
        acc.compose(subsampled_gaussian_event(z, q, steps))
    return acc


# ---------------------------------------------------------------------------- PLD size
def _loss_widths(noise_multiplier: float, sampling_rate: float) -> float:
    """Summed width in nats of the privacy-loss supports dp_accounting builds for one mechanism.

    One pmf without subsampling (the PLD is symmetric), one per adjacency (remove, add) with it.
    """
    adjacencies = [pld_mechanism.AdjacencyType.REMOVE]
    if sampling_rate < 1.0:
        adjacencies.append(pld_mechanism.AdjacencyType.ADD)
    width = 0.0
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        for adjacency in adjacencies:
            try:
                bounds = pld_mechanism.GaussianPrivacyLoss(
                    noise_multiplier, sampling_prob=sampling_rate, adjacency_type=adjacency
                ).connect_dots_bounds()
            except (OverflowError, ZeroDivisionError):
                return math.inf
            width += bounds.epsilon_upper - bounds.epsilon_lower
    return width if math.isfinite(width) else math.inf


@functools.lru_cache(maxsize=256)
def _entry_widths(
    noise_multiplier: float, sampling_rate: float, steps: int, requested: float, max_bins: float
) -> tuple[float, float]:
    """(built, composed) privacy-loss widths in nats of one history entry's PLD, summed over its pmfs.

    The composed width is only estimated (by a probe) when ``steps`` untruncated copies of the
    built width would not fit in ``max_bins`` bins of ``requested`` nats.
    """
    if sampling_rate == 1.0:
        # The library composes in closed form: one Gaussian with noise z / sqrt(steps).
        width = _loss_widths(noise_multiplier / math.sqrt(steps), 1.0)
        return width, width
    built = _loss_widths(noise_multiplier, sampling_rate)
    if steps * built / requested <= max_bins:
        return built, steps * built  # even untruncated, the composition fits
    if not built / _PLD_MAX_BUILT_BINS <= _PLD_MAX_INTERVAL:
        return built, math.inf  # refused without building anything
    return built, _composed_width(noise_multiplier, sampling_rate, steps, built)


def _composed_width(noise_multiplier: float, sampling_rate: float, steps: int, built: float) -> float:
    """Summed width in nats of ``steps`` self-compositions, from the library's own truncation bounds.

    dp_accounting truncates a self-composition to the range its Chernoff bound leaves
    (``common.compute_self_convolve_bounds``); applied to a coarse probe of the same PLD it gives
    the composed width without building it. The probe reads the two pmfs of dp_accounting 0.6's
    ``PrivacyLossDistribution``, which has no public accessor for them.
    """
    interval = min(built / _PLD_PROBE_BINS, _PLD_MAX_INTERVAL)
    probe = pld_distribution.from_gaussian_mechanism(
        noise_multiplier, value_discretization_interval=interval, sampling_prob=sampling_rate
    )
    width = 0.0
    for pmf in (probe._pmf_remove, probe._pmf_add):
        probs = pmf.to_dense_pmf()._probs
        lower, upper = pld_common.compute_self_convolve_bounds(probs, steps, _PLD_TAIL_MASS)
        width += (upper - lower + 1) * interval
    return width


def _coarsened(requested: float, needed: float) -> float:
    """The smallest ``requested * 2**k`` (k >= 0) that is at least ``needed``."""
    if needed <= requested:
        return requested
    if not math.isfinite(needed):
        return math.inf
    return requested * 2.0 ** math.ceil(math.log2(needed / requested))


def _pld_interval(history: _History, requested: float, delta: float, bin_share: float = 1.0) -> float:
    """The discretization for ``history``: ``requested``, or ``requested * 2**k`` when that is too fine.

    Coarser bins keep the PLD a valid upper bound (dp_accounting rounds pessimistically and moves
    truncated tails to the infinite-loss mass), only less tight. ``bin_share`` scales the bin caps
    (a search that evaluates many PLDs affords each a smaller one). Raises ``ValueError`` when no
    interval up to 64 nats keeps the PLD under :data:`PLD_MAX_BINS`.
    """
    widths = [_entry_widths(z, q, n, requested, PLD_MAX_BINS * bin_share) for z, q, n in history]
    built = sum(b for b, _ in widths)
    composed = sum(c for _, c in widths)
    needed = max(built / _PLD_MAX_BUILT_BINS, composed / PLD_MAX_BINS)
    ceiling = max(_PLD_MAX_INTERVAL, requested)
    if not _coarsened(requested, needed) <= ceiling:
        z = min(z for z, _, _ in history)
        rdp_bound = _epsilon_of_history(history, delta, "rdp", requested)
        bound = f"bounds it by {rdp_bound:.3g}" if math.isfinite(rdp_bound) else "gives no finite bound"
        span = composed if math.isfinite(composed) else built
        raise ValueError(
            f"noise_multiplier={z:g} is too small for the PLD accountant: its privacy-loss distribution "
            f"spans {span:.3g} nats or more, over {PLD_MAX_BINS} bins even {_PLD_MAX_INTERVAL:g} nats "
            f"wide; epsilon is far beyond any useful guarantee (the RDP accountant {bound}): use "
            "accountant='rdp' or raise noise_multiplier"
        )
    return min(_coarsened(requested, needed / bin_share), ceiling)


def pld_discretization(
    noise_multiplier: float,
    sampling_rate: float,
    steps: int,
    delta: float,
    pld_value_discretization: float = DEFAULT_PLD_VALUE_DISCRETIZATION,
) -> float:
    """The PLD discretization interval :func:`compute_epsilon` uses for this mechanism.

    ``pld_value_discretization`` where the composed PLD fits in :data:`PLD_MAX_BINS` bins; else the
    smallest ``pld_value_discretization * 2**k`` that fits (with a warning). The privacy-loss range
    grows like ``1 / z^2``, so only small noise multipliers need it, and epsilon is then above 10.
    The epsilon stays a valid upper bound, only less tight; measured against 1e-3 where that is
    feasible, the relative change stayed under 2e-5 (z = 0.3, q = 0.1, 10,000 steps; z = 0.2,
    q = 0.5, 1,000 steps; z = 1, q = 1, 10,000 steps, whose closed-form epsilon 5425.51 lies below
    both 5426.43 at 0.256 and 5426.49 at 1e-3). Raises ``ValueError`` (naming the RDP bound) when
    no interval up to 64 nats fits; ``delta`` only enters that message.
    """
    entry = (
        _check_noise_multiplier(noise_multiplier),
        _check_sampling_rate(sampling_rate),
        _check_steps(steps),
    )
    requested = _check_discretization(pld_value_discretization)
    if _is_free(entry) or _is_non_private(entry):
        return requested
    return _pld_interval((entry,), requested, _check_delta(delta))


def _epsilon_of_history(
    history: _History, delta: float, accountant: AccountantKind, discretization: float
) -> float:
    history = tuple(e for e in history if not _is_free(e))
    if not history:
        return 0.0
    if any(_is_non_private(e) for e in history):
        return math.inf
    interval = discretization
    if accountant == "pld":
        interval = _pld_interval(history, discretization, delta)
        if interval != discretization:
            warnings.warn(
                f"PLD discretization coarsened from {discretization:g} to {interval:g} nats so that the "
                f"privacy-loss distribution of noise_multiplier={min(z for z, _, _ in history):g} fits in "
                f"{PLD_MAX_BINS} bins; epsilon remains an upper bound",
                AccountingWarning,
                stacklevel=3,
            )
    with _quiet_absl(), np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        try:
            eps = float(_composed(history, accountant, interval).get_epsilon(delta))
        except (OverflowError, ZeroDivisionError):
            # Noise so small (z ~ 1e-300) that the library's arithmetic overflows: no finite guarantee.
            return math.inf
    return math.inf if math.isnan(eps) else eps


@contextlib.contextmanager
def _quiet_absl() -> Iterator[None]:
    """dp_accounting logs a warning for each RDP order it drops as numerically unstable; dropping an
    order only loosens the bound, so those warnings are noise to a user and are held back here."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


# ---------------------------------------------------------------------------- functions
def compute_epsilon(
    noise_multiplier: float,
    sampling_rate: float,
    steps: int,
    delta: float,
    accountant: AccountantKind = "rdp",
    *,
    pld_value_discretization: float = DEFAULT_PLD_VALUE_DISCRETIZATION,
) -> float:
    """Epsilon at ``delta`` after ``steps`` compositions of the Poisson-subsampled Gaussian mechanism.

    Parameters
    ----------
    noise_multiplier:
        ``z``: noise standard deviation divided by the L2 sensitivity (the clip norm). ``0`` means
        no noise, so epsilon is infinite unless nothing is ever released.
    sampling_rate:
        ``q``: probability that a given record (party or example) is in a step's sample. ``1``
        means every record is used every step (no subsampling); ``0`` means none ever is.
    steps:
        Number of compositions (rounds of DP-FedAvg, steps of DP-SGD). ``0`` gives epsilon 0.
    delta:
        Target delta in (0, 1); usually well below ``1 / number of records``.
    accountant:
        ``"rdp"`` (orders :data:`RDP_ORDERS`) or ``"pld"`` (tighter; discretization
        ``pld_value_discretization``, see :data:`DEFAULT_PLD_VALUE_DISCRETIZATION`, coarsened with
        a warning where tiny noise would make the PLD too large: see :func:`pld_discretization`).

    Returns
    -------
    float
        Epsilon, or ``math.inf`` when ``noise_multiplier == 0`` (or so small that the library's
        arithmetic overflows) and something is released.

    Raises
    ------
    ValueError
        On an invalid argument, or under PLD when the noise is too small for any discretization
        (the message gives the RDP bound instead).
    """
    z = _check_noise_multiplier(noise_multiplier)
    q = _check_sampling_rate(sampling_rate)
    n = _check_steps(steps)
    d = _check_delta(delta)
    kind = _check_accountant(accountant)
    interval = _check_discretization(pld_value_discretization)
    return _epsilon_of_history(((z, q, n),), d, kind, interval)


def calibrate_noise_multiplier(
    target_epsilon: float,
    sampling_rate: float,
    steps: int,
    delta: float,
    accountant: AccountantKind = "rdp",
    *,
    pld_value_discretization: float = DEFAULT_PLD_VALUE_DISCRETIZATION,
    tolerance: float = 1e-6,
) -> float:
    """The smallest noise multiplier whose epsilon after ``steps`` steps is at most ``target_epsilon``.

    The search itself is ``dp_accounting.calibrate_dp_mechanism`` (Brent's method with a guarantee
    that the returned value meets the target). Its own default bracket starts at ``z = 0``, where
    epsilon is infinite and the root finder sees ``inf``; so a finite bracket is found here first by
    doubling up from ``z = 1`` (or halving down, for loose targets), evaluating epsilon through the
    same library call as :func:`compute_epsilon`.

    ``tolerance`` is relative to the bracket's upper end: the result is within
    ``tolerance * upper`` of the exact minimum, always on the private side. Under PLD, where small
    noise makes the search coarsen the discretization (see :func:`pld_discretization`), the result
    may lie up to a few 1e-5 (relative) higher, so that :func:`compute_epsilon` of it meets the target.

    Returns ``0.0`` when ``steps == 0`` or ``sampling_rate == 0`` (nothing is released, so no
    noise is needed).
    """
    target = float(target_epsilon)
    if not (math.isfinite(target) and target > 0):
        raise ValueError(f"target_epsilon must be a finite number > 0, got {target_epsilon!r}")
    q = _check_sampling_rate(sampling_rate)
    n = _check_steps(steps)
    d = _check_delta(delta)
    kind = _check_accountant(accountant)
    interval = _check_discretization(pld_value_discretization)
    if not (0 < float(tolerance) < 1):
        raise ValueError(f"tolerance must lie in (0, 1), got {tolerance!r}")
    if n == 0 or q == 0.0:
        return 0.0

    def epsilon(z: float) -> float:
        return _epsilon_of_history(((z, q, n),), d, kind, interval)

    def search_interval(z: float) -> float:
        if kind == "rdp":
            return interval
        return _pld_interval(((z, q, n),), interval, d, bin_share=_PLD_SEARCH_BIN_SHARE)

    def search_epsilon(z: float) -> float:
        return _epsilon_of_history(((z, q, n),), d, kind, search_interval(z))

    # Bracket [lower, upper] with epsilon(lower) > target >= epsilon(upper).
    if search_epsilon(1.0) > target:
        lower, upper = 1.0, 2.0
        while search_epsilon(upper) > target:
            lower, upper = upper, upper * 2.0
            if upper > 2.0**30:
                raise ValueError(
                    f"no noise_multiplier up to 2**30 reaches target_epsilon={target} with "
                    f"sampling_rate={q}, steps={n}, delta={d}"
                )
    else:
        lower, upper = 0.5, 1.0
        while search_epsilon(lower) <= target:
            lower, upper = lower / 2.0, lower
            if lower < 1e-6:
                raise ValueError(
                    f"target_epsilon={target} is met by any noise_multiplier >= 1e-6 with "
                    f"sampling_rate={q}, steps={n}, delta={d}; the target is too loose to calibrate"
                )

    # The PLD widens as z falls, so the bracket's lower end needs the coarsest interval of the
    # search; using it throughout keeps every probe of the root finder small.
    root_interval = search_interval(lower)

    def make_accountant() -> dp_accounting.PrivacyAccountant:
        if kind == "rdp":
            return rdp.RdpAccountant(orders=RDP_ORDERS)
        return pld.PLDAccountant(value_discretization_interval=root_interval)

    step = float(tolerance) * upper
    with _quiet_absl():
        z = float(
            dp_accounting.calibrate_dp_mechanism(
                make_accountant,
                lambda z: subsampled_gaussian_event(z, q, n),
                target,
                d,
                bracket_interval=dp_accounting.ExplicitBracketInterval(lower, upper),
                tol=step,
            )
        )
    if root_interval != interval:
        # The search coarsened the PLD, and compute_epsilon(z) (finer) can differ by ~1e-5 either
        # way: step z up, 1e-5 relative at first, until the epsilon users will be shown meets the target.
        step = 1e-5 * z
        z += step
        while epsilon(z) > target:
            z, step = z + step, step * 2.0
    return z


# ---------------------------------------------------------------------------- stateful accountant
class PrivacyAccountant:
    """Running epsilon of a training run, with a budget checked *before* each event.

    Parameters
    ----------
    delta:
        The delta at which epsilon is reported and the budget is enforced.
    accountant:
        ``"rdp"`` or ``"pld"``, as in :func:`compute_epsilon`.
    budget_epsilon:
        Optional epsilon budget. :meth:`check_budget` raises :class:`BudgetExceededError` when an
        event would take epsilon past it, so a round can be refused before its noise is drawn.

    :meth:`record` never refuses: once a mechanism has run, its release is a fact the ledger must
    hold, whatever the budget says. Refuse *before* running with :meth:`check_budget` or
    :meth:`would_exceed`.

    The history is kept as (noise multiplier, sampling rate, steps) triples, merging consecutive
    events with the same ``(z, q)``; epsilon is recomputed from it by ``dp_accounting``. So ``n``
    single-step records give exactly ``compute_epsilon(z, q, n, delta)``, and a run resumed from
    :meth:`state` reports bit-identical epsilons.
    """

    def __init__(
        self,
        delta: float,
        accountant: AccountantKind = "rdp",
        budget_epsilon: float | None = None,
        *,
        pld_value_discretization: float = DEFAULT_PLD_VALUE_DISCRETIZATION,
    ) -> None:
        self.delta = _check_delta(delta)
        self.accountant: AccountantKind = _check_accountant(accountant)
        if budget_epsilon is not None:
            b = float(budget_epsilon)
            if not (b > 0 and not math.isnan(b)):
                raise ValueError(f"budget_epsilon must be > 0 or None, got {budget_epsilon!r}")
            budget_epsilon = b
        self.budget_epsilon = budget_epsilon
        self.pld_value_discretization = _check_discretization(pld_value_discretization)
        self._history: list[tuple[float, float, int]] = []

    # -- history ----------------------------------------------------------------------
    @staticmethod
    def _event(noise_multiplier: float, sampling_rate: float, steps: int) -> tuple[float, float, int]:
        return (
            _check_noise_multiplier(noise_multiplier),
            _check_sampling_rate(sampling_rate),
            _check_steps(steps),
        )

    @staticmethod
    def _merged(history: Sequence[tuple[float, float, int]], event: tuple[float, float, int]) -> _History:
        if _is_free(event):
            return tuple(history)
        if history and history[-1][:2] == event[:2]:
            z, q, steps = history[-1]
            return (*history[:-1], (z, q, steps + event[2]))
        return (*history, event)

    @property
    def history(self) -> _History:
        """The merged (noise multiplier, sampling rate, steps) events recorded so far."""
        return tuple(self._history)

    def _epsilon(self, history: _History) -> float:
        return _epsilon_of_history(history, self.delta, self.accountant, self.pld_value_discretization)

    # -- queries ----------------------------------------------------------------------
    def epsilon(self) -> float:
        """Epsilon at ``self.delta`` of everything recorded so far."""
        return self._epsilon(self.history)

    def epsilon_if(self, noise_multiplier: float, sampling_rate: float, steps: int = 1) -> float:
        """Epsilon after one more event, without recording it."""
        event = self._event(noise_multiplier, sampling_rate, steps)
        return self._epsilon(self._merged(self._history, event))

    def would_exceed(self, noise_multiplier: float, sampling_rate: float, steps: int = 1) -> bool:
        """Whether one more event would take epsilon past the budget (``False`` without a budget)."""
        if self.budget_epsilon is None:
            return False
        return self.epsilon_if(noise_multiplier, sampling_rate, steps) > self.budget_epsilon

    def check_budget(
        self, noise_multiplier: float, sampling_rate: float, steps: int = 1, *, round: int | None = None
    ) -> float:
        """Epsilon after one more event; raises :class:`BudgetExceededError` if it passes the budget."""
        eps = self.epsilon_if(noise_multiplier, sampling_rate, steps)
        if self.budget_epsilon is not None and eps > self.budget_epsilon:
            raise BudgetExceededError(self.budget_epsilon, self.delta, eps, round)
        return eps

    # -- updates ----------------------------------------------------------------------
    def record(self, noise_multiplier: float, sampling_rate: float, steps: int = 1) -> None:
        """Record an event that has happened (epsilon is computed lazily, by :meth:`epsilon`)."""
        event = self._event(noise_multiplier, sampling_rate, steps)
        self._history = list(self._merged(self._history, event))

    def state(self) -> dict[str, np.ndarray]:
        """``{"noise_multiplier": [K] float64, "sampling_rate": [K] float64, "steps": [K] int64}``."""
        return {
            "noise_multiplier": np.array([z for z, _, _ in self._history], dtype=np.float64),
            "sampling_rate": np.array([q for _, q, _ in self._history], dtype=np.float64),
            "steps": np.array([n for _, _, n in self._history], dtype=np.int64),
        }

    def load(self, state: dict[str, np.ndarray]) -> None:
        """Replace the history with one saved by :meth:`state`."""
        missing = {"noise_multiplier", "sampling_rate", "steps"} - set(state)
        if missing:
            raise ValueError(f"privacy accountant state lacks {sorted(missing)}")
        z = np.asarray(state["noise_multiplier"], dtype=np.float64)
        q = np.asarray(state["sampling_rate"], dtype=np.float64)
        steps = np.asarray(state["steps"])
        if not (z.ndim == q.ndim == steps.ndim == 1 and z.shape == q.shape == steps.shape):
            raise ValueError(
                "state['noise_multiplier'], ['sampling_rate'] and ['steps'] must be 1-D arrays of one "
                f"length; got shapes {z.shape}, {q.shape}, {steps.shape}"
            )
        self._history = [
            self._event(*entry) for entry in zip(z.tolist(), q.tolist(), steps.tolist(), strict=True)
        ]
