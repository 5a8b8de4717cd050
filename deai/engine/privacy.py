"""User-level DP-FedAvg in the round loop: clipping, noise, and the accountant's ledger of rounds.

The mechanisms live in :mod:`deai.privacy.dp` and the arithmetic of epsilon in ``dp_accounting``;
this module only decides, per config, which pieces run where (McMahan et al. 2018):

* ``central`` — each party clips its update to C; the server sums, divides by the *expected*
  number of parties ``qN`` and adds ``N(0, (zC/qN)^2)`` (optionally with adaptive clipping,
  Andrew et al. 2021);
* ``distributed`` — each party clips and adds its share ``N(0, (zC)^2 / qN)``, so the sum (for
  example under secure aggregation) carries the noise and no one sees a noise-free update; when
  only ``m`` parties report, the round's effective multiplier ``z sqrt(m/qN)`` is what is recorded.

Under SecAgg+ the distributed shares are discrete Gaussians that each party adds to its *encoded*
update (the distributed discrete Gaussian of Kairouz, Liu and Steinke 2021; :class:`RingNoise`); under
HE they are lattice-valued Gaussians added before encryption.

Every draw (noise and the Poisson sample) comes from the OS's CSPRNG unless ``privacy.simulation``,
which keys them by the run's seed: reproducible, and private against no one who holds the config.

Party sampling is Poisson with rate ``q`` (``participation.fraction``, or 1). The run refuses to
start when the planned rounds would exceed ``privacy.budget_epsilon``, and stops before a round
that would exceed it (distributed mode, where the effective noise depends on who reports).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deai.config import ConfigError, ExperimentConfig
from deai.privacy.dp.accountant import (
    BudgetExceededError,
    PrivacyAccountant,
    calibrate_noise_multiplier,
    compute_epsilon,
)
from deai.privacy.dp.mechanisms import (
    AdaptiveClipping,
    CentralGaussianNoise,
    DistributedGaussianNoise,
    RingNoise,
)
from deai.transforms import ClipByNorm, RoundContext, UpdateTransform


class DPFedAvg:
    """The privacy side of a run: client transforms, the noisy aggregate, and the accountant."""

    def __init__(self, cfg: ExperimentConfig, num_parties: int) -> None:
        try:
            self._setup(cfg, num_parties)
        except ValueError as err:
            if isinstance(err, ConfigError):
                raise
            raise ConfigError(f"privacy: {err}") from None

    def _setup(self, cfg: ExperimentConfig, num_parties: int) -> None:
        pv = cfg.privacy
        self.cfg = cfg
        self.q = cfg.participation.fraction if cfg.participation.fraction is not None else 1.0
        self.expected = self.q * num_parties
        rounds = cfg.run.rounds
        z = pv.noise_multiplier
        if pv.target_epsilon is not None:
            z = calibrate_noise_multiplier(pv.target_epsilon, self.q, rounds, pv.delta, pv.accountant)
        self.noise_multiplier = z
        self.clip_norm = pv.clip_norm
        planned = compute_epsilon(z, self.q, rounds, pv.delta, pv.accountant)
        if pv.budget_epsilon is not None and planned > pv.budget_epsilon * (1 + 1e-9):
            raise ConfigError(
                f"privacy.budget_epsilon={pv.budget_epsilon} (delta={pv.delta}) would be exceeded: "
                f"{rounds} rounds at noise_multiplier={z:.4g} and sampling rate {self.q:.4g} spend "
                f"epsilon={planned:.4g}; lower run.rounds, raise privacy.noise_multiplier, or set "
                f"privacy.target_epsilon"
            )
        self.planned_epsilon = planned
        self.accountant = PrivacyAccountant(pv.delta, pv.accountant, pv.budget_epsilon)
        if pv.adaptive_clipping and cfg.strategy.aggregator in ("secagg", "he_ckks"):
            raise ConfigError(
                "privacy.adaptive_clipping computes its clipped sum and unclipped count on the server in "
                f"the clear, so under strategy.aggregator '{cfg.strategy.aggregator}' the server would see "
                "every update; use a fixed privacy.clip_norm with secure aggregation, or aggregator 'mean'"
            )
        self.adaptive = (
            AdaptiveClipping(
                initial_clip_norm=pv.clip_norm,
                noise_multiplier=z,
                expected_parties=self.expected,
                target_quantile=pv.target_quantile,
                learning_rate=pv.clip_learning_rate,
                simulation=pv.simulation,
            )
            if pv.adaptive_clipping
            else None
        )
        self.adaptive_state = self.adaptive.init() if self.adaptive is not None else None
        self.simulation = pv.simulation
        per_round = max(1, int(round(self.expected)))
        self.distributed = (
            DistributedGaussianNoise(z, pv.clip_norm, per_round, pv.simulation)
            if pv.mode == "distributed"
            else None
        )
        # under SecAgg+ the shares are discrete and added by each party after encoding, inside the protocol
        self.ring_noise = (
            RingNoise(z, pv.clip_norm, per_round, pv.simulation, cfg.run.seed)
            if pv.mode == "distributed" and cfg.strategy.aggregator == "secagg"
            else None
        )
        self.lost = 0  # updates of the last aggregated round that a secure aggregator lost mid-protocol

    def client_transforms(self) -> list[UpdateTransform]:
        """What every party applies to its own update before sending it."""
        if self.adaptive is not None:
            return []  # adaptive clipping clips with the current (server-tracked) norm itself
        out: list[UpdateTransform] = [ClipByNorm(self.clip_norm)]
        if self.distributed is not None and self.ring_noise is None:
            out.append(self.distributed)
        return out

    def round_noise_multiplier(self, reported: int) -> float:
        if self.distributed is not None:
            return self.distributed.effective_noise_multiplier(reported)
        return self.noise_multiplier

    def check_budget(self, round_: int, reported: int) -> None:
        """Raise BudgetExceededError before a round whose release would overshoot the budget."""
        if self.cfg.privacy.budget_epsilon is not None:
            self.accountant.check_budget(self.round_noise_multiplier(reported), self.q, round=round_)

    def aggregate(self, updates: np.ndarray, ctx: RoundContext, sum_aggregate: Any) -> np.ndarray:
        """The DP-FedAvg average: fixed denominator ``qN``; noise added here in central mode.

        ``sum_aggregate`` is the task's sum rule (mean, SecAgg+, CKKS), called with uniform weights.
        """
        m, dim = updates.shape
        self.lost = 0
        if self.adaptive is not None:
            aggregate, self.adaptive_state = self.adaptive(updates, self.adaptive_state, ctx)
            return aggregate.astype(np.float32)
        if self.distributed is None:
            # The server enforces the clip too: a party that skipped it must not exceed the sensitivity.
            updates, _ = ClipByNorm(self.clip_norm).apply(updates, None, ctx)
        if m == 0:
            fixed = np.zeros(dim)
        else:
            mean = sum_aggregate(updates, np.ones(m), ctx)  # uniform: a party is one record
            # SecAgg+ may lose parties after masking; its mean then covers the survivors only.
            survivor = ctx.signals.get("secagg_survivor")
            summed = m if survivor is None else int(np.count_nonzero(survivor))
            self.lost = m - summed
            fixed = mean.astype(np.float64) * (summed / self.expected)
        if self.distributed is None:
            central = CentralGaussianNoise(
                self.noise_multiplier, self.clip_norm, self.expected, self.simulation
            )
            fixed = central(fixed, ctx)
        return fixed.astype(np.float32)

    def record(self, reported: int) -> dict[str, float]:
        """Record the round just aggregated; ``reported`` counts the updates that carry a noise share.

        Shares lost mid-protocol are not in the sum: at least ``reported - lost`` shares reached it,
        and that is what distributed noise is accounted with (the budget check before the round could
        not know of those losses, so such a round can end slightly past ``budget_epsilon``).
        """
        self.accountant.record(self.round_noise_multiplier(max(0, reported - self.lost)), self.q)
        out = {"epsilon": self.accountant.epsilon(), "delta": self.cfg.privacy.delta}
        if self.adaptive_state is not None:
            out["clip_norm"] = float(self.adaptive_state["clip_norm"])
        return out

    def state_tree(self) -> dict[str, Any]:
        """The accountant's ledger of rounds and, with adaptive clipping, the clip's state."""
        return {
            "accountant": self.accountant.state(),
            "clip": None if self.adaptive_state is None else dict(self.adaptive_state),
        }

    def load_tree(self, tree: dict[str, Any]) -> None:
        self.accountant.load(dict(tree["accountant"]))
        if self.adaptive is not None:
            self.adaptive_state = dict(tree["clip"])


__all__ = ["BudgetExceededError", "DPFedAvg"]
