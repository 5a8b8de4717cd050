"""Reference: the benchmark task as a plain single-process NumPy loop, with no framework at all.

This is the floor deai is compared against: for round, for party, for mini-batch: gradient and SGD step;
then the example-weighted average. Prints one JSON line (same keys as flower_digits.py).

    python benchmarks/plain_loop.py --parties 1000 --rounds 10 --seed 0 [--replicate 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from digits_task import (  # noqa: E402
    BATCH_SIZE,
    LR,
    ROUNDS,
    accuracy,
    initial_weights,
    load_task,
    party_rng,
    softmax_grad,
)


def run(parties: int, rounds: int = ROUNDS, seed: int = 0, replicate: int = 1) -> dict:
    """Train with FedAvg in one process; return the result dict."""
    x_parts, y_parts, x_eval, y_eval = load_task(parties, seed, replicate)
    t0 = time.perf_counter()
    W, b = initial_weights()
    total = sum(len(y) for y in y_parts)
    for rnd in range(1, rounds + 1):
        W_sum, b_sum = np.zeros_like(W), np.zeros_like(b)
        for party, (x, y) in enumerate(zip(x_parts, y_parts, strict=True)):
            Wp, bp = W, b
            order = party_rng(seed, party, rnd).permutation(len(x))
            for start in range(0, len(x), BATCH_SIZE):
                idx = order[start : start + BATCH_SIZE]
                gW, gb = softmax_grad(Wp, bp, x[idx], y[idx])
                Wp = Wp - LR * gW
                bp = bp - LR * gb
            W_sum += Wp * (len(y) / total)
            b_sum += bp * (len(y) / total)
        W, b = W_sum, b_sum
    acc = accuracy(W, b, x_eval, y_eval)
    return {
        "framework": "numpy_loop",
        "parties": parties,
        "final_accuracy": acc,
        "rounds": rounds,
        "inner_wall_s": time.perf_counter() - t0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parties", type=int, required=True)
    ap.add_argument("--rounds", type=int, default=ROUNDS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--replicate", type=int, default=1, help="tile the training rows (10 for 10,000 parties)")
    a = ap.parse_args()
    print(json.dumps(run(a.parties, a.rounds, a.seed, a.replicate)), flush=True)


if __name__ == "__main__":
    main()
