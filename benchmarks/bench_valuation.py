"""Contribution valuation: GTG-Shapley's time per round at 50 and 200 parties, and how close GTG-Shapley,
truncated Monte-Carlo and leave-one-out come to exact Shapley on small real federations.

Accuracy: digits, logistic regression, ``--small`` parties (<= 8), Dirichlet 0.5 label skew, 5 rounds, for
each of ``--seeds``; the error is the largest gap to exact Shapley as a share of the exact values' range,
and the rank agreement is Spearman's rho. Time: digits with 50 and 200 parties, 3 rounds, GTG-Shapley
(the valuation's own time per round, training excluded; evaluations = coalition models scored).

    .venv/bin/python benchmarks/bench_valuation.py [--small 8] [--seeds 5] [--sizes 50,200]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deai.config import parse_config  # noqa: E402
from deai.engine.api import build_data, build_model  # noqa: E402
from deai.engine.simulation import Simulation  # noqa: E402
from deai.incentives.valuation import Valuation  # noqa: E402


def config(parties: int, rounds: int, seed: int) -> dict:
    return {
        "run": {"rounds": rounds, "seed": seed, "name": "value"},
        "data": {"dataset": "digits", "num_parties": parties, "partition": "dirichlet", "alpha": 0.5,
                 "holdout_fraction": 0.2},
        "strategy": {"lr": 0.5},
    }  # fmt: skip


def valued(parties: int, rounds: int, seed: int, methods: tuple[str, ...]) -> dict[str, Valuation]:
    cfg = parse_config(config(parties, rounds, seed))
    fed = build_data(cfg)
    sim = Simulation(cfg, fed, build_model(cfg, fed))
    valuers = {m: Valuation.of(sim, m) for m in methods}

    def every(record):
        for v in valuers.values():
            v(record)

    sim.run(None, every)
    return valuers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--sizes", default="50,200")
    a = ap.parse_args()
    print(f"{len(os.sched_getaffinity(0))} CPUs, load average {os.getloadavg()[0]:.1f}")
    print("| seed | method | max error / exact range | Spearman rho | seconds |")
    print("|---|---|---|---|---|")
    for seed in range(a.seeds):
        v = valued(a.small, 5, seed, ("exact", "gtg", "tmc", "loo"))
        exact = np.array([v["exact"].totals.get(p, 0.0) for p in range(a.small)])
        spread = exact.max() - exact.min()
        for m in ("exact", "gtg", "tmc", "loo"):
            est = np.array([v[m].totals.get(p, 0.0) for p in range(a.small)])
            err = np.max(np.abs(est - exact)) / spread
            rho = spearmanr(est, exact).statistic
            print(f"| {seed} | {m} | {err:.3f} | {rho:.3f} | {v[m].seconds:.2f} |")
    for parties in (int(s) for s in a.sizes.split(",")):
        v = valued(parties, 3, 0, ("gtg",))["gtg"]
        rounds = len(v.rounds)
        print(f"GTG-Shapley, {parties} parties: {v.seconds / rounds:.2f} s per round over {rounds} rounds")


if __name__ == "__main__":
    main()
