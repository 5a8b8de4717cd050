"""Time every robust aggregation rule on one [parties, dim] float32 round, as a ratio to the weighted mean.

Ratios are taken in the same run, with the repeats interleaved (repeat 1 of every rule, then repeat 2, ...)
so that load from other processes spreads over all rules instead of skewing one; each rule reports the
minimum of its repeats. Target: every rule except Bulyan and the geometric median within 20x the mean.

    .venv/bin/python benchmarks/bench_aggregators.py [--parties 100] [--dim 1000000] [--byzantine 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

import numpy as np

from deai.aggregate.base import RoundContext
from deai.aggregate.mean import WeightedMean
from deai.aggregate.robust import make_robust

TARGET = 20.0
EXEMPT = {"bulyan", "geometric_median"}


def build_rules(parties: int, byzantine: int, scale: float) -> dict[str, Callable]:
    """Every rule with benchmark parameters; ``scale`` is a typical update norm (clip radii follow it)."""
    return {
        "mean": WeightedMean(),
        "median": make_robust("median"),
        "trimmed_mean": make_robust("trimmed_mean", trim_fraction=byzantine / parties),
        "krum": make_robust("krum", num_byzantine=byzantine),
        "multi_krum": make_robust("multi_krum", num_byzantine=byzantine),
        "bulyan": make_robust("bulyan", num_byzantine=byzantine),
        "geometric_median": make_robust("geometric_median"),
        "centered_clipping": make_robust("centered_clipping", clip_radius=scale),
        "norm_bound": make_robust("norm_bound", max_norm=scale),
        "fltrust": make_robust("fltrust"),
        "foolsgold": make_robust("foolsgold", num_parties=parties),
        "reputation": make_robust("reputation", num_parties=parties),
        "dnc": make_robust("dnc", f_max=byzantine / parties),
        "flame": make_robust("flame"),
        "signguard": make_robust("signguard"),
        "recommended": make_robust("recommended"),
        "root_guided": make_robust("root_guided"),
    }


def run(
    parties: int, dim: int, byzantine: int, repeats: int, seed: int, only: tuple[str, ...] = ()
) -> dict[str, float]:
    """Minimum seconds per rule over ``repeats`` interleaved calls."""
    rng = np.random.default_rng(seed)
    updates = rng.standard_normal((parties, dim), dtype=np.float32)
    updates[:byzantine] *= 50.0  # a few large updates, so clipping and trust actually act
    weights = rng.integers(10, 1000, parties).astype(np.float64)
    server_update = rng.standard_normal(dim, dtype=np.float32)
    rules = build_rules(parties, byzantine, scale=float(np.sqrt(dim)))
    unknown = set(only) - set(rules)
    if unknown:
        names = ", ".join(sorted(unknown))
        raise SystemExit(f"--only: unknown rule(s) {names}; choose from {', '.join(rules)}")
    if only:
        rules = {k: v for k, v in rules.items() if k == "mean" or k in only}
    best = dict.fromkeys(rules, float("inf"))
    for r in range(repeats):
        for name, rule in rules.items():
            ctx = RoundContext(round=r + 1, party_ids=np.arange(parties), steps=np.ones(parties, np.int64))
            ctx.signals["server_update"] = server_update
            t0 = time.perf_counter()
            out = rule(updates, weights, ctx)
            best[name] = min(best[name], time.perf_counter() - t0)
            assert out.shape == (dim,) and out.dtype == np.float32, name
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parties", type=int, default=100)
    ap.add_argument("--dim", type=int, default=1_000_000)
    ap.add_argument("--byzantine", type=int, default=10, help="f for the rules that assume one")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default="", help="comma-separated rules to time besides mean (default: all)")
    a = ap.parse_args()
    only = tuple(x for x in a.only.split(",") if x)
    best = run(a.parties, a.dim, a.byzantine, a.repeats, a.seed, only)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"[{a.parties}, {a.dim}] float32, f={a.byzantine}, min of {a.repeats}; "
        f"numpy {np.__version__}, {cpus} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'rule':<18} {'ms':>9} {'x mean':>8}  target")
    misses = []
    for name, seconds in best.items():
        ratio = seconds / best["mean"]
        if name == "mean":
            verdict = "baseline"
        elif name in EXEMPT:
            verdict = "exempt"
        else:
            verdict = "ok" if ratio <= TARGET else f"MISSED (> {TARGET:g}x)"
            if ratio > TARGET:
                misses.append(name)
        print(f"{name:<18} {seconds * 1e3:9.1f} {ratio:8.1f}  {verdict}")
    sys.exit(1 if misses else 0)


if __name__ == "__main__":
    main()
