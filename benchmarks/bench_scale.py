"""A million parties on one machine: time per round and peak memory of the whole process, data included.

Digits tiled 1,000 times (1.8 M rows) over 1,000,000 IID parties, logistic regression, FedAvg. Two
settings: every party in every round (the in-process transport trains in chunks and the server folds
the weighted mean chunk by chunk), and 1,000 of the 1,000,000 sampled per round.

    .venv/bin/python benchmarks/bench_scale.py [--parties 1000000] [--rounds 3]

Each setting runs in its own process (peak RSS measured from outside by benchmarks/procmem.py); writes
benchmarks/results/scale.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def one(parties: int, rounds: int, count: int | None) -> dict:
    from deai.config import parse_config
    from deai.engine.api import build_data, build_model
    from deai.engine.simulation import Simulation

    cfg = parse_config(
        {
            "run": {"rounds": rounds, "seed": 0, "eval_every": rounds},
            "data": {"dataset": "digits", "num_parties": parties, "replicate": max(1, parties // 1000)},
            "model": {"kind": "logreg"},
            "strategy": {"algorithm": "fedavg", "lr": 0.5, "batch_size": 32},
            "participation": {} if count is None else {"count": count},
        }
    )
    t0 = time.perf_counter()
    fed = build_data(cfg)
    t_data = time.perf_counter() - t0
    sim = Simulation(cfg, fed, build_model(cfg, fed))
    times: list[float] = []
    sim.run(on_round=lambda m: times.append(time.perf_counter()))
    starts = [t0 + t_data] + times[:-1]
    per_round = [b - a for a, b in zip(starts, times, strict=True)]
    return {
        "parties": parties,
        "per_round": count or parties,
        "rounds": rounds,
        "data_s": t_data,
        "round_s": per_round,
        "median_round_s": sorted(per_round)[len(per_round) // 2],
        "final_accuracy": sim.state.history[-1].get("accuracy"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parties", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sampled", type=int, default=1000, help="parties per round in the sampled setting")
    ap.add_argument("--one", choices=["full", "sampled"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.parties, a.rounds, None if a.one == "full" else a.sampled)))
        return
    from procmem import run_measured

    from deai.report.artifacts import write_artifacts

    rows = []
    for setting, rounds in (("full", a.rounds), ("sampled", 20)):
        cmd = [
            sys.executable,
            __file__,
            "--one",
            setting,
            "--parties",
            str(a.parties),
            "--rounds",
            str(rounds),
        ]
        cmd += ["--sampled", str(a.sampled)]
        r = run_measured(cmd, timeout=3600)
        if r["returncode"] != 0:
            raise SystemExit(f"{setting}: exit {r['returncode']}: {r['stderr'][-2000:]}")
        row = json.loads(r["stdout"].strip().splitlines()[-1]) | {
            "peak_rss_mb": r["peak_rss_mb"],
            "wall_s": r["wall_s"],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    lines = [
        "| parties | per round | median round (s) | peak RSS, process (MB) | data load (s) | accuracy |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['parties']:,} | {r['per_round']:,} | {r['median_round_s']:.3f} | {r['peak_rss_mb']:.0f} | "
            f"{r['data_s']:.1f} | {r['final_accuracy']:.3f} |"
        )
    write_artifacts(HERE / "results", "scale", rows, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
