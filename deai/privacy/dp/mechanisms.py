"""User-level DP-FedAvg noise: central, distributed (for secure aggregation) and adaptive clipping.

DP-FedAvg follows McMahan, Ramage, Talwar & Zhang 2018, "Learning Differentially Private
Recurrent Language Models" (ICLR): sample parties with probability ``q``, clip each party's update
to L2 norm ``C`` (:class:`deai.transforms.ClipByNorm`), average with a fixed denominator and add
Gaussian noise scaled to the average's sensitivity. Adaptive clipping follows Andrew, Thakkar,
McMahan & Ramaswamy 2021, "Differentially Private Learning with Adaptive Clipping" (NeurIPS).

These mechanisms only draw noise. Each round is one Poisson-subsampled Gaussian mechanism with
noise multiplier ``z`` and sampling rate ``q``; record it with
:class:`deai.privacy.dp.accountant.PrivacyAccountant` (``record(z, q)``) — the mechanisms never
account for themselves. All noise is discrete Gaussian on a lattice
(:func:`deai.privacy.dp.sampling.lattice_gaussian`) with bits from the OS's CSPRNG; with
``simulation=True`` the bits are keyed by ``(seed, round, NOISE)`` instead (``extra=0`` with real
party ids for client-side noise, ``extra=1`` with pseudo-party ids for server-side noise), so a resumed
run or another backend draws the same noise, and so could anyone who holds the config.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from deai.privacy.dp.sampling import discrete_gaussian, noise_bits
from deai.privacy.dp.sampling import lattice_gaussian as _lattice_gaussian
from deai.transforms import ClipByNorm, RoundContext

# Pseudo-party ids within the server-side noise stream key(seed, round, NOISE, extra=1): each
# server-side release of a round draws from its own independent row.
_AGGREGATE_NOISE_PARTY = 0
_CLIPPED_COUNT_NOISE_PARTY = 1
_SERVER_NOISE_EXTRA = 1

# Relative slack when checking that updates are clipped: ClipByNorm scales in float32.
_CLIP_SLACK = 1e-5


def _check_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    v = float(value)
    ok = math.isfinite(v) and (v >= 0 if allow_zero else v > 0)
    if not ok:
        raise ValueError(f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return v


def _server_release(
    values: np.ndarray, z: float, sensitivity: float, ctx: RoundContext, pseudo_party: int, simulation: bool
) -> np.ndarray:
    """``values`` [n] with the server's noise of multiplier ``z`` on ``sensitivity``, as float64."""
    bits = noise_bits(simulation, ctx.seed, ctx.round, _SERVER_NOISE_EXTRA)
    rows = np.array([pseudo_party], dtype=np.int64)
    return _lattice_gaussian(np.asarray(values, dtype=np.float64)[None, :], z, sensitivity, rows, bits)[0]


def _check_clipped(updates: np.ndarray, clip_norm: float) -> None:
    norms = np.linalg.norm(np.asarray(updates, dtype=np.float64), axis=1)
    over = np.flatnonzero(norms > clip_norm * (1 + _CLIP_SLACK) + 1e-12)
    if over.size:
        i = int(over[0])
        raise ValueError(
            f"updates_clipped row {i} has L2 norm {norms[i]:.6g} > clip_norm={clip_norm}; clip the "
            f"updates first (deai.transforms.ClipByNorm({clip_norm})) or the noise does not cover them"
        )


# ---------------------------------------------------------------------------- central noise
@dataclass(frozen=True)
class CentralGaussianNoise:
    """Server-side Gaussian noise on DP-FedAvg's fixed-denominator average (McMahan et al. 2018).

    Estimator: the uniform fixed-denominator average ``sum_i clip(Delta_i) / (q N)``, with
    ``expected_parties = q N`` the *expected* number of sampled parties, not the number that
    reported. McMahan et al. offer it beside a ``max(qN, n)``-denominator variant; we take the
    fixed one because it is unbiased for the population mean and its sensitivity, ``C / (q N)``,
    does not depend on who was sampled or survived (so dropouts under secure aggregation change
    nothing in the analysis). The noise is then ``N(0, (z C / (q N))^2)`` per coordinate: the
    Gaussian mechanism with noise multiplier ``z`` on the sum, divided by ``q N``.

    ``__call__(aggregate, ctx)`` expects ``aggregate`` to be that average of clipped updates (see
    :func:`dp_fedavg_aggregate`) and ``ctx`` to carry ``seed`` and ``round``
    (a :class:`~deai.transforms.RoundContext` does). The noise is drawn from the OS's CSPRNG unless
    ``simulation`` (then it is keyed by seed and round, and anyone with the config can remove it).
    """

    noise_multiplier: float
    clip_norm: float
    expected_parties: float
    simulation: bool = False

    def __post_init__(self) -> None:
        _check_positive("noise_multiplier", self.noise_multiplier, allow_zero=True)
        _check_positive("clip_norm", self.clip_norm)
        _check_positive("expected_parties", self.expected_parties)

    @property
    def stddev(self) -> float:
        """Per-coordinate noise standard deviation on the average: ``z C / (q N)``."""
        return self.noise_multiplier * self.clip_norm / self.expected_parties

    def __call__(self, aggregate: np.ndarray, ctx: RoundContext) -> np.ndarray:
        aggregate = np.asarray(aggregate)
        if aggregate.ndim != 1:
            raise ValueError(f"aggregate must be a [dim] vector, got shape {aggregate.shape}")
        if self.noise_multiplier == 0:
            return aggregate.copy()
        sensitivity = self.clip_norm / self.expected_parties
        noisy = _server_release(
            aggregate, self.noise_multiplier, sensitivity, ctx, _AGGREGATE_NOISE_PARTY, self.simulation
        )
        out_dtype = aggregate.dtype if np.issubdtype(aggregate.dtype, np.floating) else np.float64
        return noisy.astype(out_dtype, copy=False)


def dp_fedavg_aggregate(
    updates_clipped: np.ndarray,
    expected_parties: float,
    noise_multiplier: float,
    clip_norm: float,
    seed: int,
    round: int,
    simulation: bool = False,
) -> np.ndarray:
    """DP-FedAvg's server step: ``sum_i Delta_i / (q N) + N(0, (z C / (q N))^2)`` as a ``[dim]`` vector.

    ``updates_clipped`` is ``[m, dim]``: the updates of the ``m`` parties that reported, each
    already clipped to ``clip_norm`` (checked; an unclipped row raises ``ValueError`` because the
    noise would not cover it). ``m`` may differ from ``expected_parties = q N``: the denominator is
    fixed by design (see :class:`CentralGaussianNoise`). No accounting happens here.
    """
    u = np.asarray(updates_clipped)
    if u.ndim != 2:
        raise ValueError(f"updates_clipped must be a [parties, dim] matrix, got shape {u.shape}")
    mechanism = CentralGaussianNoise(noise_multiplier, clip_norm, expected_parties, simulation)
    _check_clipped(u, mechanism.clip_norm)
    mean = u.sum(axis=0, dtype=np.float64) / mechanism.expected_parties
    out_dtype = u.dtype if np.issubdtype(u.dtype, np.floating) else np.float64
    ctx = RoundContext(seed=int(seed), round=int(round), party_ids=np.zeros(0, dtype=np.int64))
    return mechanism(mean, ctx).astype(out_dtype, copy=False)


# ---------------------------------------------------------------------------- distributed noise
@dataclass(frozen=True)
class DistributedGaussianNoise:
    """Client-side share of DP-FedAvg's noise, for use under secure aggregation.

    With secure aggregation the server only sees the sum, so no one can add the noise centrally.
    Instead each of the ``n = parties_per_round`` parties adds ``N(0, (z C)^2 / n)`` to its clipped
    update; the sum of ``n`` independent shares is ``N(0, (z C)^2)``, exactly the central
    mechanism's noise on the sum (Kairouz, Liu & Steinke 2021, "The Distributed Discrete Gaussian
    Mechanism for Federated Learning with Secure Aggregation", discuss the discrete version).
    Chain it after clipping: ``chain(ClipByNorm(C), DistributedGaussianNoise(z, C, n))``.

    If only ``m < n`` parties survive to the sum, the noise has variance ``(z C)^2 m / n``: the
    round's effective noise multiplier is ``z * sqrt(m / n)`` (:meth:`effective_noise_multiplier`),
    and that, not ``z``, is what must be recorded with the accountant. Plan ``n`` with dropouts in
    mind (or over-provision ``z``). Each party draws its share from the OS's CSPRNG (keyed by its own id
    under ``simulation``, so it does not depend on who else was sampled).

    Under SecAgg+ this continuous-valued share is not used: each party adds a discrete Gaussian to its
    *encoded* update instead (:func:`ring_noise_sigma`), so rounding and the ring come before the noise.
    """

    noise_multiplier: float
    clip_norm: float
    parties_per_round: int
    simulation: bool = False

    def __post_init__(self) -> None:
        _check_positive("noise_multiplier", self.noise_multiplier, allow_zero=True)
        _check_positive("clip_norm", self.clip_norm)
        if isinstance(self.parties_per_round, bool) or int(self.parties_per_round) != self.parties_per_round:
            raise ValueError(f"parties_per_round must be an integer >= 1, got {self.parties_per_round!r}")
        if int(self.parties_per_round) < 1:
            raise ValueError(f"parties_per_round must be an integer >= 1, got {self.parties_per_round!r}")

    @property
    def stddev(self) -> float:
        """Per-coordinate standard deviation of one party's share: ``z C / sqrt(n)``."""
        return self.noise_multiplier * self.clip_norm / math.sqrt(self.parties_per_round)

    def effective_noise_multiplier(self, surviving_parties: int) -> float:
        """Noise multiplier of the sum when ``surviving_parties`` shares reach it: ``z sqrt(m / n)``."""
        m = int(surviving_parties)
        if m < 0:
            raise ValueError(f"surviving_parties must be >= 0, got {surviving_parties!r}")
        return self.noise_multiplier * math.sqrt(m / self.parties_per_round)

    def init(self, dim: int) -> None:
        return None

    def apply(self, updates: np.ndarray, state: None, ctx: RoundContext) -> tuple[np.ndarray, None]:
        ids = np.asarray(ctx.party_ids)
        if ids.shape != (updates.shape[0],):
            raise ValueError(
                f"ctx.party_ids must have one id per update row ({updates.shape[0]}), got {ids.shape}"
            )
        if self.noise_multiplier == 0:
            return updates, None
        bits = noise_bits(self.simulation, ctx.seed, ctx.round)
        share = self.clip_norm / math.sqrt(self.parties_per_round)  # z * share = this party's std
        noisy = _lattice_gaussian(updates, self.noise_multiplier, share, ids, bits)
        return noisy.astype(updates.dtype, copy=False), None


# ---------------------------------------------------------------------------- distributed discrete noise
# Kairouz, Liu and Steinke 2021, Thm. 1: the sum of n discrete Gaussians N_Z(0, s^2) is within
# tau = 10 sum_{k<n} exp(-2 pi^2 s^2 k / (k+1)) of N_Z(0, n s^2) in the sense of concentrated DP; the
# shares are refused when the resulting slack (tau * dim) would be above this.
MAX_DDG_SLACK = 1e-12


@functools.lru_cache(maxsize=256)  # same for every party of a session: compute (and check) it once
def ring_noise_sigma(
    noise_multiplier: float, clip_norm: float, parties_per_round: int, weight: float, scale: float, dim: int
) -> float:
    """The std, in ring units, of one party's discrete Gaussian share under SecAgg+.

    A party sends ``rint(weight * x * scale)`` with ``||x|| <= clip_norm``; rounding moves it by at most
    ``sqrt(dim)`` in L2, so its sensitivity in the ring is ``weight * clip_norm * scale + sqrt(dim)``. Each
    of the ``n = parties_per_round`` planned parties adds ``z / sqrt(n)`` times that, so ``m`` surviving
    shares sum to multiplier ``z sqrt(m / n)`` on that sensitivity: what the accountant records, as for
    the continuous shares. Every input is public, so each party computes its own share's size.
    """
    sensitivity = float(weight) * float(clip_norm) * float(scale) + math.sqrt(int(dim))
    sigma = float(noise_multiplier) * sensitivity / math.sqrt(int(parties_per_round))
    n = int(parties_per_round)
    if sigma > 0 and ddg_slack(sigma, n, dim) > MAX_DDG_SLACK:
        raise ValueError(
            f"each party's discrete Gaussian share (std {sigma:.3g} ring units) is too coarse for "
            f"{n} shares to sum to a discrete Gaussian; raise the SecAgg+ modulus_bits or noise_multiplier"
        )
    return sigma


@dataclass(frozen=True)
class RingNoise:
    """A party's distributed-DP share under SecAgg+: a discrete Gaussian added to its encoded update.

    The distributed discrete Gaussian of Kairouz, Liu and Steinke 2021: each party clips its update
    to L2 norm ``C``, the SecAgg+ encoding rounds it into the ring, and the party adds
    ``N_Z(0, sigma^2)`` with ``sigma`` from :func:`ring_noise_sigma`; the server only ever decodes the
    sum, whose noise is the sum of the surviving shares. Bits come from the OS's CSPRNG, or keyed by
    ``(seed, round, NOISE)`` and the party's id under ``simulation``.
    """

    noise_multiplier: float
    clip_norm: float
    parties_per_round: int
    simulation: bool = False
    seed: int = 0

    def draw(self, party_id: int, round_: int, weight: float, scale: float, dim: int) -> np.ndarray | None:
        """``[dim]`` int64 share of party ``party_id`` for a session with this weight and ring scale."""
        if self.noise_multiplier == 0:
            return None
        sigma = ring_noise_sigma(
            self.noise_multiplier, self.clip_norm, self.parties_per_round, weight, scale, dim
        )
        bits = noise_bits(self.simulation, self.seed, round_)
        return discrete_gaussian(sigma, np.array([int(party_id)], dtype=np.int64), dim, bits)[0]

    def headroom(self) -> float:
        """How much wider than ``C`` the ring must be per party for the shares' sum not to wrap.

        The sum of ``n`` shares has std ``z (C + ...)`` per coordinate; 12 of those above the ``n C`` that
        the updates can reach leaves a wrap probability under 1e-32 per coordinate.
        """
        return 1.0 + 12.0 * float(self.noise_multiplier) / math.sqrt(self.parties_per_round) + 1e-3


def ddg_slack(sigma: float, parties: int, dim: int) -> float:
    """``tau * dim`` of Kairouz, Liu and Steinke 2021 (Thm. 1) for ``parties`` shares of std ``sigma``."""
    k = np.arange(1, max(int(parties), 1), dtype=np.float64)
    tau = 10.0 * float(np.exp(-2.0 * math.pi**2 * float(sigma) ** 2 * k / (k + 1.0)).sum())
    return tau * int(dim)


# ---------------------------------------------------------------------------- adaptive clipping
@dataclass(frozen=True)
class AdaptiveClipping:
    """DP-FedAvg whose clip norm tracks a quantile of update norms (Andrew et al. 2021).

    Each round, with the current clip norm ``C`` and ``m = expected_parties``:

    1. every party reports ``b_i = 1[||Delta_i|| <= C]`` beside its update clipped to ``C``;
    2. the server releases the noisy fraction of unclipped updates
       ``b~ = (sum_i (b_i - 1/2) + N(0, sigma_b^2)) / m + 1/2``, clamped to ``[0, 1]``, and the
       noisy average ``(sum_i clip(Delta_i) + N(0, (z_Delta C)^2)) / m``;
    3. the clip norm takes a geometric step toward the target quantile ``gamma``:
       ``C <- C * exp(-eta_C (b~ - gamma))``.

    The ``- 1/2`` centring is the paper's (§3, and TF Privacy's ``QuantileEstimatorQuery``): it makes
    the count's add/remove sensitivity ``1/2`` rather than 1. With exactly ``m`` reports it equals
    ``(sum_i b_i + N(0, sigma_b^2)) / m``. Releasing both the count (sensitivity ``1/2``, noise
    ``sigma_b``) and the sum (sensitivity ``C``, noise ``z_Delta C``) costs as much as one Gaussian
    mechanism with multiplier ``(z_Delta^-2 + (2 sigma_b)^-2)^(-1/2)``, so the paper sets
    ``z_Delta = (z^-2 - (2 sigma_b)^-2)^(-1/2)``: the round is then accounted as one
    Poisson-subsampled Gaussian with the requested ``z``, ``record(z, q)``. This needs
    ``2 sigma_b > z``.

    Parameters
    ----------
    initial_clip_norm:
        ``C`` in the first round.
    noise_multiplier:
        ``z``: the privacy-equivalent multiplier of the whole round (``0``: no DP noise at all).
    expected_parties:
        ``m = q N``, the fixed denominator (as in :class:`CentralGaussianNoise`).
    target_quantile:
        ``gamma``, the fraction of updates to leave unclipped; the paper's default 0.5 (median).
    learning_rate:
        ``eta_C``; the paper's default 0.2.
    clipped_count_stddev:
        ``sigma_b``; ``None`` means the paper's ``m / 20``.

    State (``init()``): ``{"clip_norm": float64 scalar array}``. Noise is drawn as by
    :class:`CentralGaussianNoise` (the OS's CSPRNG; under ``simulation`` the keyed server stream,
    pseudo-party 0 for the average, 1 for the count). Under secure aggregation both would need
    distributed noise; this class is the central version, refused with SecAgg+ and HE.
    """

    initial_clip_norm: float
    noise_multiplier: float
    expected_parties: float
    target_quantile: float = 0.5
    learning_rate: float = 0.2
    clipped_count_stddev: float | None = None
    simulation: bool = False

    def __post_init__(self) -> None:
        _check_positive("initial_clip_norm", self.initial_clip_norm)
        _check_positive("noise_multiplier", self.noise_multiplier, allow_zero=True)
        _check_positive("expected_parties", self.expected_parties)
        if not (0.0 < float(self.target_quantile) < 1.0):
            raise ValueError(f"target_quantile must lie in (0, 1), got {self.target_quantile!r}")
        _check_positive("learning_rate", self.learning_rate)
        if self.clipped_count_stddev is not None:
            _check_positive("clipped_count_stddev", self.clipped_count_stddev, allow_zero=True)
        z, sigma_b = float(self.noise_multiplier), self.count_stddev
        if z > 0 and not 2.0 * sigma_b > z:
            raise ValueError(
                f"clipped_count_stddev must exceed noise_multiplier / 2 = {z / 2:g} so that some privacy "
                f"is left for the update sum; got {sigma_b:g} (the default is expected_parties / 20)"
            )

    @property
    def count_stddev(self) -> float:
        """``sigma_b``: noise standard deviation on the unclipped count (default ``m / 20``)."""
        if self.clipped_count_stddev is None:
            return float(self.expected_parties) / 20.0
        return float(self.clipped_count_stddev)

    @property
    def update_noise_multiplier(self) -> float:
        """``z_Delta = (z^-2 - (2 sigma_b)^-2)^(-1/2)``: the multiplier actually used on the update sum."""
        z = float(self.noise_multiplier)
        if z == 0:
            return 0.0
        return (z**-2 - (2.0 * self.count_stddev) ** -2) ** -0.5

    def init(self) -> dict[str, np.ndarray]:
        return {"clip_norm": np.array(float(self.initial_clip_norm), dtype=np.float64)}

    @staticmethod
    def _clip_norm(state: dict[str, np.ndarray]) -> float:
        c = float(np.asarray(state["clip_norm"]))
        if not (math.isfinite(c) and c > 0):
            raise ValueError(f"state['clip_norm'] must be a finite number > 0, got {c!r}")
        return c

    def clip(
        self, updates: np.ndarray, state: dict[str, np.ndarray], ctx: RoundContext
    ) -> tuple[np.ndarray, np.ndarray]:
        """Updates clipped to the current ``C`` and the indicators ``b_i = 1[||Delta_i|| <= C]`` ``[P]``."""
        c = self._clip_norm(state)
        unclipped = np.linalg.norm(np.asarray(updates, dtype=np.float64), axis=1) <= c
        clipped, _ = ClipByNorm(c).apply(updates, None, ctx)
        return clipped, unclipped

    def noisy_unclipped_fraction(self, unclipped: np.ndarray, ctx: RoundContext) -> float:
        """``b~``: the private estimate of the fraction of updates at or under the clip norm."""
        b = np.asarray(unclipped, dtype=np.float64)
        total = float((b - 0.5).sum())
        if self.count_stddev > 0:  # sensitivity 1/2, noise sigma_b: multiplier 2 sigma_b
            count = np.array([total])
            total = float(
                _server_release(
                    count, 2.0 * self.count_stddev, 0.5, ctx, _CLIPPED_COUNT_NOISE_PARTY, self.simulation
                )[0]
            )
        return float(np.clip(total / float(self.expected_parties) + 0.5, 0.0, 1.0))

    def next_state(
        self, state: dict[str, np.ndarray], unclipped: np.ndarray, ctx: RoundContext
    ) -> dict[str, np.ndarray]:
        """The geometric update ``C <- C exp(-eta_C (b~ - gamma))``."""
        c = self._clip_norm(state)
        b_tilde = self.noisy_unclipped_fraction(unclipped, ctx)
        c_next = c * math.exp(-float(self.learning_rate) * (b_tilde - float(self.target_quantile)))
        return {"clip_norm": np.array(c_next, dtype=np.float64)}

    def __call__(
        self, updates: np.ndarray, state: dict[str, np.ndarray], ctx: RoundContext
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One DP-FedAvg round with adaptive clipping: ``(noisy average [dim], next state)``."""
        updates = np.asarray(updates)
        if updates.ndim != 2:
            raise ValueError(f"updates must be a [parties, dim] matrix, got shape {updates.shape}")
        c = self._clip_norm(state)
        clipped, unclipped = self.clip(updates, state, ctx)
        aggregate = dp_fedavg_aggregate(
            clipped,
            self.expected_parties,
            self.update_noise_multiplier,
            c,
            ctx.seed,
            ctx.round,
            self.simulation,
        )
        return aggregate, self.next_state(state, unclipped, ctx)
