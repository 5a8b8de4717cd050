"""Proof-of-learning: detection rate of each spoofing strategy, honest false positives, and the cost of
verification as a share of training, over seeded trials.

Job: digits, logistic regression, 600 rows, ``--steps`` SGD steps of 32 rows, a checkpoint every
``--every`` steps; the verifier re-executes ``--segments`` random segments with zero tolerance.

    .venv/bin/python benchmarks/bench_proof_of_learning.py [--trials 100] [--steps 500] [--every 5] \\
        [--segments 9]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deai.data.datasets import load_dataset  # noqa: E402
from deai.incentives.proof_of_learning import SPOOFERS, Job, honest_training, verify_proof  # noqa: E402
from deai.models import LogisticRegression  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--segments", type=int, default=9)
    a = ap.parse_args()
    ds = load_dataset("digits")
    model = LogisticRegression(ds.x.shape[1], ds.num_classes)
    caught = dict.fromkeys(SPOOFERS, 0)
    false_positives, train_s, verify_s, rerun = 0, 0.0, 0.0, 0
    for trial in range(a.trials):
        rows = np.random.default_rng(trial).permutation(len(ds.y))[:600]
        job = Job(model, model.init_params(trial), ds.x[rows], ds.y[rows], a.steps, lr=0.1, seed=trial,
                  every=a.every)  # fmt: skip
        t0 = time.perf_counter()
        honest = honest_training(job)
        train_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        verdict = verify_proof(job, honest, a.segments, seed=10_000 + trial)
        verify_s += time.perf_counter() - t0
        rerun += verdict.steps_rerun
        false_positives += not verdict.accepted
        for name, spoof in SPOOFERS.items():
            proof = spoof(job, np.random.default_rng(trial), honest)
            caught[name] += not verify_proof(job, proof, a.segments, seed=20_000 + trial).accepted
    print(
        f"{a.trials} trials, {a.steps} steps, a checkpoint every {a.every}, {a.segments} segments re-executed"
    )
    print("| strategy | detected |")
    print("|---|---|")
    for name, n in caught.items():
        print(f"| {name} | {n}/{a.trials} ({100 * n / a.trials:.0f}%) |")
    print(f"honest proofs rejected: {false_positives}/{a.trials}")
    print(
        f"verification cost: {rerun / (a.trials * a.steps):.1%} of the steps, {verify_s / train_s:.1%} of "
        f"training time ({1e3 * verify_s / a.trials:.1f} ms against {1e3 * train_s / a.trials:.1f} ms a job)"
    )


if __name__ == "__main__":
    main()
