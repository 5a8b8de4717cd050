"""Who takes part in a round: sampling, dropouts and stragglers against a deadline.

A party's speed is fixed for the run (lognormal around 1), its dropout draw is fresh each
round; both come from its own key, so they do not depend on who else was sampled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deai.privacy.dp.sampling import SystemBits, bernoulli
from deai.rng import Purpose, generator, key, party_normal, party_uniform


@dataclass
class RoundPlan:
    sampled: np.ndarray  # int64, parties asked to train
    participants: np.ndarray  # int64, parties whose update arrives in time
    step_budget: np.ndarray | None  # int64 [len(participants)] steps allowed, or None for no cap
    dropped: int  # vanished mid-round
    stragglers: int  # missed the deadline (dropped) or were cut short (partial)
    sim_time: float  # simulated duration of the round: slowest arriving party


def party_speeds(seed: int, num_parties: int, speed_sigma: float) -> np.ndarray:
    """Steps per unit of simulated time for every party (1.0 everywhere when sigma is 0)."""
    if speed_sigma == 0:
        return np.ones(num_parties)
    z = party_normal(key(seed, 0, Purpose.SPEED), np.arange(num_parties), 1)[:, 0]
    return np.exp(speed_sigma * z)


def sample_parties(
    seed: int,
    round_: int,
    num_parties: int,
    fraction: float | None,
    count: int | None,
    poisson: bool,
    secure: bool = False,
) -> np.ndarray:
    """Sorted ids of the parties asked to train: all, a fixed-size sample, or a Poisson sample.

    ``secure`` draws the Poisson sample from the OS's CSPRNG: the amplification a DP accountant counts
    on holds only if nobody can tell who was sampled, so it must not follow from the seed.
    """
    if poisson:
        # each party joins independently with probability `fraction`: what DP accounting assumes
        if secure:
            return np.flatnonzero(bernoulli(float(fraction), np.arange(num_parties), SystemBits()))
        draws = party_uniform(key(seed, round_, Purpose.SELECT), np.arange(num_parties), 1)[:, 0]
        return np.flatnonzero(draws < fraction).astype(np.int64)
    if count is None:
        count = num_parties if fraction is None else max(1, int(round(fraction * num_parties)))
    if count >= num_parties:
        return np.arange(num_parties, dtype=np.int64)
    rng = generator(seed, round_, Purpose.SELECT)
    return np.sort(rng.choice(num_parties, size=count, replace=False)).astype(np.int64)


@dataclass
class Arrivals:
    """Which asked parties report, with how many steps, and when (simulated time after the round opens)."""

    parties: np.ndarray  # int64, parties whose update arrives in time
    step_budget: np.ndarray | None  # int64 [len(parties)] steps allowed, or None for no cap
    times: np.ndarray  # float64 [len(parties)] arrival times
    dropped: np.ndarray  # int64, parties that vanished mid-round
    late: np.ndarray  # int64, parties that missed the deadline and send nothing
    cut_short: np.ndarray  # bool [len(parties)] stopped at the deadline, still reporting (policy "partial")


def simulate_arrivals(
    seed: int,
    round_: int,
    sampled: np.ndarray,
    planned_steps: np.ndarray,
    speeds: np.ndarray,
    *,
    dropout_rate: float,
    deadline: float | None,
    straggler_policy: str,
) -> Arrivals:
    """The simulated network and clocks of a round: dropouts, then the deadline, for the ``sampled`` ids."""
    alive = np.ones(len(sampled), dtype=bool)
    if dropout_rate > 0:
        alive = party_uniform(key(seed, round_, Purpose.DROPOUT), sampled, 1)[:, 0] >= dropout_rate
    parties = sampled[alive]
    need = planned_steps[parties]
    times = need / speeds[parties]
    budget = None
    late_ids = np.zeros(0, dtype=np.int64)
    cut_short = np.zeros(len(parties), dtype=bool)
    if deadline is not None:
        late = times > deadline
        if straggler_policy == "drop":
            late_ids = parties[late]
            parties, times, cut_short = parties[~late], times[~late], cut_short[~late]
        else:
            budget = np.minimum(need, np.floor(deadline * speeds[parties]).astype(np.int64))
            keep = budget > 0  # a party too slow to finish one step sends nothing
            late_ids = parties[~keep]
            cut_short = late[keep]
            parties, budget = parties[keep], budget[keep]
            times = np.minimum(times[keep], deadline)
    return Arrivals(parties, budget, times.astype(np.float64), sampled[~alive], late_ids, cut_short)


def plan_round(
    seed: int,
    round_: int,
    num_parties: int,
    planned_steps: np.ndarray,
    speeds: np.ndarray,
    *,
    fraction: float | None,
    count: int | None,
    dropout_rate: float,
    deadline: float | None,
    straggler_policy: str,
    poisson: bool = False,
) -> RoundPlan:
    """Sample parties, remove dropouts, and apply the deadline; ``planned_steps`` is per party id."""
    sampled = sample_parties(seed, round_, num_parties, fraction, count, poisson)
    a = simulate_arrivals(
        seed,
        round_,
        sampled,
        planned_steps,
        speeds,
        dropout_rate=dropout_rate,
        deadline=deadline,
        straggler_policy=straggler_policy,
    )
    return RoundPlan(
        sampled=sampled,
        participants=a.parties,
        step_budget=a.step_budget,
        dropped=len(a.dropped),
        stragglers=len(a.late) + int(a.cut_short.sum()),
        sim_time=float(a.times.max(initial=0.0)),
    )
