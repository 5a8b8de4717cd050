"""Refereed disputes: over seeded trials with one wrong step planted at a random position, does the
referee find it and name the cheater; and how does its work grow with the job's length.

Job: digits, logistic regression, 600 rows, SGD of 32 rows, a hash after every step.

    .venv/bin/python benchmarks/bench_disputes.py [--trials 100] [--steps 4096] [--lengths 256,1024,4096]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deai.data.datasets import load_dataset  # noqa: E402
from deai.incentives.disputes import referee, with_wrong_step  # noqa: E402
from deai.incentives.proof_of_learning import Job, honest_training  # noqa: E402
from deai.models import LogisticRegression  # noqa: E402


def make_job(seed: int, steps: int) -> Job:
    ds = load_dataset("digits")
    model = LogisticRegression(ds.x.shape[1], ds.num_classes)
    rows = np.random.default_rng(seed).permutation(len(ds.y))[:600]
    return Job(model, model.init_params(seed), ds.x[rows], ds.y[rows], steps, lr=0.1, seed=seed, every=1)


def trial(seed: int, steps: int) -> tuple[bool, int, int, float, float]:
    job = make_job(seed, steps)
    t0 = time.perf_counter()
    honest = honest_training(job)
    train_s = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    wrong_at = int(rng.integers(0, steps))
    cheat = with_wrong_step(job, honest, wrong_at, rng)
    t0 = time.perf_counter()
    ruling = referee(job, ("cheat", cheat), ("honest", honest))
    referee_s = time.perf_counter() - t0
    ok = ruling.diverged_at == wrong_at and ruling.liars == ("cheat",)
    return ok, ruling.comparisons, ruling.segments_rerun, referee_s, train_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--steps", type=int, default=4096)
    ap.add_argument("--lengths", default="256,1024,4096,16384")
    a = ap.parse_args()
    found = sum(trial(seed, a.steps)[0] for seed in range(a.trials))
    print(f"wrong step found and the cheater named in {found}/{a.trials} trials of {a.steps:,} steps")
    print("| job length (steps) | hash comparisons | steps re-executed | referee ms | training ms |")
    print("|---|---|---|---|---|")
    for n in (int(x) for x in a.lengths.split(",")):
        ok, comparisons, rerun, referee_s, train_s = trial(1000 + n, n)
        assert ok
        print(f"| {n:,} | {comparisons} | {rerun} | {1e3 * referee_s:.2f} | {1e3 * train_s:.0f} |")


if __name__ == "__main__":
    main()
