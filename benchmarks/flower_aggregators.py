"""Flower's own robust aggregation functions on one [parties, dim] float32 round, the peer numbers for
bench_aggregators.py (run in benchmarks/.venv-flower, made by setup_flower.sh).

Times the functions in ``flwr.server.strategy.aggregate`` that Flower's strategies call (Krum, MultiKrum,
FedMedian, FedTrimmedAvg, Bulyan) against its weighted ``aggregate`` (FedAvg) as the baseline. Flower
takes ``list[(list-of-ndarrays, num_examples)]``; each party is one 1-D layer (a row of the matrix),
built outside the timed region. The data match bench_aggregators.py: standard normal (seed 0), the first
f rows scaled by 50, example counts drawn in [10, 1000). Repeats are interleaved (repeat 1 of every
rule, then repeat 2, ...) so load spreads over all rules; min and median seconds go to stderr, and ONE
JSON object with the minima to stdout.

    benchmarks/.venv-flower/bin/python benchmarks/flower_aggregators.py [--parties 50] [--dim 1000000] \
        [--byzantine 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import numpy as np
from flwr.server.strategy.aggregate import (
    aggregate,
    aggregate_bulyan,
    aggregate_krum,
    aggregate_median,
    aggregate_trimmed_avg,
)


def build_rules(parties: int, byzantine: int) -> dict[str, Callable[[list], Any]]:
    """Each rule as Flower's strategies call it (same parameters as the legacy strategy classes)."""
    to_keep = parties - byzantine  # Multi-Krum keeps the n - f best-scored updates
    return {
        "mean": aggregate,  # FedAvg
        "krum": lambda res: aggregate_krum(res, num_malicious=byzantine, to_keep=0),
        "multi_krum": lambda res: aggregate_krum(res, num_malicious=byzantine, to_keep=to_keep),
        "median": aggregate_median,  # FedMedian
        "trimmed_mean": lambda res: aggregate_trimmed_avg(res, proportiontocut=byzantine / parties),
        # Bulyan strategy default: Krum as the selection rule (to_keep=0); needs n >= 4f + 3.
        "bulyan": lambda res: aggregate_bulyan(
            res, num_malicious=byzantine, aggregation_rule=aggregate_krum, to_keep=0
        ),
    }


def run(parties: int, dim: int, byzantine: int, repeats: int, seed: int) -> dict[str, list[float]]:
    """Seconds per rule per repeat."""
    rng = np.random.default_rng(seed)
    updates = rng.standard_normal((parties, dim), dtype=np.float32)
    updates[:byzantine] *= 50.0
    examples = rng.integers(10, 1000, parties)
    base = [([updates[i]], int(examples[i])) for i in range(parties)]
    rules = build_rules(parties, byzantine)
    times: dict[str, list[float]] = {name: [] for name in rules}
    for r in range(repeats):
        for name, rule in rules.items():
            results = list(base)  # aggregate_bulyan pops from the list it is given
            t0 = time.perf_counter()
            out = rule(results)
            dt = time.perf_counter() - t0
            times[name].append(dt)
            assert len(out) == 1 and out[0].shape == (dim,), name
            print(f"repeat {r + 1} {name:<13} {dt:8.3f} s  out dtype {out[0].dtype}", file=sys.stderr)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parties", type=int, default=50)
    ap.add_argument("--dim", type=int, default=1_000_000)
    ap.add_argument("--byzantine", type=int, default=10, help="f (num_malicious); Bulyan needs n >= 4f+3")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    load0 = os.getloadavg()
    times = run(a.parties, a.dim, a.byzantine, a.repeats, a.seed)
    load1 = os.getloadavg()
    print(
        f"flwr {version('flwr')}, numpy {np.__version__}, {os.cpu_count()} CPUs, "
        f"load average {load0[0]:.2f} before / {load1[0]:.2f} after",
        file=sys.stderr,
    )
    print(f"{'rule':<13} {'min s':>8} {'median s':>9} {'min x mean':>11}", file=sys.stderr)
    best = {name: min(ts) for name, ts in times.items()}
    for name, ts in times.items():
        print(
            f"{name:<13} {min(ts):8.3f} {statistics.median(ts):9.3f} {min(ts) / best['mean']:11.1f}",
            file=sys.stderr,
        )
    out = {
        "n": a.parties,
        "dim": a.dim,
        "f": a.byzantine,
        "results": best,
        "median_s": {name: statistics.median(ts) for name, ts in times.items()},
        "repeats": a.repeats,
        "flwr": version("flwr"),
        "loadavg_1min": [load0[0], load1[0]],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
