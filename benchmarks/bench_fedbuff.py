"""Synchronous FedAvg vs FedBuff (Nguyen et al. 2022) under stragglers: simulated time to a target accuracy.

Digits, 100 parties with Dirichlet(0.5) label skew, logistic regression, 1 local epoch. Synchronous FedAvg
samples 20 parties a round and waits for the slowest; FedBuff keeps 20 parties training and releases a
model after every 10 arrivals, weighting an update ``s`` versions old by ``(1 + s)^-0.5``. Party speeds
are lognormal(0, sigma); simulated time is counted in local steps of a speed-1 party.

    .venv/bin/python benchmarks/bench_fedbuff.py [--target 0.9] [--sigmas 0 1 2]

Writes benchmarks/results/fedbuff.{json,md}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from deai.config import parse_config
from deai.engine.api import run
from deai.report.artifacts import write_artifacts

HERE = Path(__file__).resolve().parent


def config(sigma: float, asynchronous: bool, rounds: int) -> dict:
    participation: dict = {"speed_sigma": sigma, "count": 20}
    if asynchronous:
        participation = {"speed_sigma": sigma, "async_buffer": 10, "concurrency": 20}
    return {
        "run": {"rounds": rounds, "seed": 0, "eval_every": 1},
        "data": {"dataset": "digits", "num_parties": 100, "partition": "dirichlet", "alpha": 0.5,
                 "holdout_fraction": 0.2},
        "model": {"kind": "logreg"},
        "strategy": {"algorithm": "fedavg", "lr": 0.3, "local_epochs": 1},
        "participation": participation,
    }  # fmt: skip


def time_to(history: list[dict], target: float) -> tuple[float | None, int | None]:
    for m in history:
        if m.get("accuracy", 0.0) >= target:
            return m["sim_clock"], m["round"]
    return None, None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", type=float, default=0.9)
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.0, 1.0, 2.0])
    ap.add_argument("--rounds", type=int, default=150, help="synchronous rounds (FedBuff gets twice as many)")
    a = ap.parse_args()
    rows = []
    for sigma in a.sigmas:
        row: dict = {"speed_sigma": sigma}
        for name, asynchronous in (("fedavg", False), ("fedbuff", True)):
            rounds = a.rounds * (2 if asynchronous else 1)
            res = run(parse_config(config(sigma, asynchronous, rounds)), write=False)
            t, r = time_to(res.history, a.target)
            row[name] = {"time_to_target": t, "rounds_to_target": r, "final_accuracy": res.final_accuracy}
            if asynchronous:
                counts = [m["staleness_counts"] for m in res.history]
                hist = np.zeros(max(len(c) for c in counts), dtype=np.int64)
                for c in counts:
                    hist[: len(c)] += c
                row[name]["staleness_histogram"] = hist.tolist()
        f, b = row["fedavg"]["time_to_target"], row["fedbuff"]["time_to_target"]
        row["speedup"] = f / b if f and b else None
        rows.append(row)
        print(json.dumps(row), flush=True)

    def cell(v: float | None) -> str:
        return "not reached" if v is None else f"{v:.0f}"

    lines = [
        f"Simulated time to {a.target:.0%} accuracy (local steps of a speed-1 party; releases in brackets).",
        "",
        "| speed sigma | sync FedAvg | FedBuff (K=10 of 20) | speed-up | FedBuff staleness 0/1/2/3/4+ |",
        "|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        h = r["fedbuff"]["staleness_histogram"] + [0] * 5
        shown = h[:4] + [sum(h[4:])]
        share = "/".join(f"{x / sum(h):.0%}" for x in shown)
        fa, fb = r["fedavg"], r["fedbuff"]
        sp = "-" if r["speedup"] is None else f"{r['speedup']:.2f}x"
        lines.append(
            f"| {r['speed_sigma']:g} | {cell(fa['time_to_target'])} ({fa['rounds_to_target']}) | "
            f"{cell(fb['time_to_target'])} ({fb['rounds_to_target']}) | {sp} | {share} |"
        )
    write_artifacts(HERE / "results", "fedbuff", {"target": a.target, "rows": rows}, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
