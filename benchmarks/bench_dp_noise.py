"""Distributed discrete Gaussian under SecAgg+ against central DP, and what secure sampling costs.

Part 1 (accuracy and epsilon): digits, 60 parties, MLP, Poisson q = 0.5, 20 rounds, C = 1, at equal
noise multipliers z: central DP-FedAvg (the server adds N(0, (zC)^2) to the sum) against the
distributed discrete Gaussian (each party adds a discrete Gaussian share to its SecAgg+-encoded update;
Kairouz, Liu and Steinke 2021). Both are accounted by the same RDP accountant; distributed noise is
counted with the shares that reached the sum. Mean and spread over seeds; chance is 10%.

Part 2 (cost of secure sampling): round time with DP noise and Poisson sampling from the OS's CSPRNG
(the default) against keyed noise (``privacy.simulation = true``), at 1,000 parties: central DP,
distributed DP under SecAgg+, and example-level DP-SGD (noise on every local step).

    .venv/bin/python benchmarks/bench_dp_noise.py [--seeds 3] [--skip-accuracy] [--skip-cost]

Writes benchmarks/results/dp_noise.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from deai.config import parse_config
from deai.engine.api import run
from deai.report.artifacts import write_artifacts

HERE = Path(__file__).resolve().parent


def accuracy_config(mode: str, z: float, seed: int) -> dict:
    cfg: dict = {
        "run": {"rounds": 20, "seed": seed},
        "data": {"dataset": "digits", "num_parties": 60, "holdout_fraction": 0.2},
        "model": {"kind": "mlp"},
        "strategy": {"algorithm": "fedavg", "lr": 0.3, "local_epochs": 5},
        "participation": {"fraction": 0.5, "poisson": True},
    }
    if mode != "none":
        cfg["privacy"] = {"mode": mode, "noise_multiplier": z, "clip_norm": 1.0}
    if mode == "distributed":
        cfg["strategy"] |= {"aggregator": "secagg", "aggregator_options": {"clip": 1.0}}
    return cfg


def cost_config(kind: str, simulation: bool) -> dict:
    cfg: dict = {
        "run": {"rounds": 3, "seed": 0},
        "data": {"dataset": "digits", "num_parties": 1000, "holdout_fraction": 0.2},
        "model": {"kind": "mlp"},
        "strategy": {"algorithm": "fedavg", "lr": 0.3, "local_epochs": 1},
        "participation": {"fraction": 1.0, "poisson": True},
        "privacy": {"mode": "central", "noise_multiplier": 1.0, "clip_norm": 1.0, "simulation": simulation},
    }
    if kind == "distributed (SecAgg+)":
        cfg["privacy"]["mode"] = "distributed"
        cfg["strategy"] |= {"aggregator": "secagg", "aggregator_options": {"clip": 1.0}}
    if kind == "example-level DP-SGD":
        cfg["privacy"] = {"example_noise_multiplier": 1.0, "example_clip_norm": 1.0, "simulation": simulation}
        cfg["strategy"]["batch_size"] = 1
    return cfg


def round_seconds(cfg: dict) -> float:
    times = []
    res = run(parse_config(cfg), write=False, on_round=lambda m: times.append(time.perf_counter()))
    assert res.rounds == cfg["run"]["rounds"]
    return statistics.median(b - a for a, b in zip(times, times[1:], strict=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--noise", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--skip-cost", action="store_true")
    a = ap.parse_args()
    out: dict = {"accuracy": [], "cost": []}
    lines: list[str] = []
    if not a.skip_accuracy:
        lines += [
            "Digits, 60 parties, MLP, q = 0.5, 20 rounds, C = 1; balanced accuracy on held-out rows "
            f"(mean ± sd over {a.seeds} seeds; chance 10%), epsilon at delta = 1e-5 (RDP).",
            "",
            "| z | central DP: accuracy | central: epsilon | distributed DDG (SecAgg+): accuracy "
            "| DDG: epsilon |",
            "|---:|---:|---:|---:|---:|",
        ]
        base = [run(parse_config(accuracy_config("none", 0, s)), write=False) for s in range(a.seeds)]
        no_dp = [r.final_balanced_accuracy for r in base]
        for z in a.noise:
            row: dict = {"noise_multiplier": z}
            for mode in ("central", "distributed"):
                rs = [run(parse_config(accuracy_config(mode, z, s)), write=False) for s in range(a.seeds)]
                acc = [r.final_balanced_accuracy for r in rs]
                eps = [r.summary()["privacy"]["epsilon"] for r in rs]
                row[mode] = {"balanced_accuracy": acc, "epsilon": eps}
            out["accuracy"].append(row)
            print(json.dumps(row), flush=True)
            cells = []
            for mode in ("central", "distributed"):
                acc, eps = row[mode]["balanced_accuracy"], row[mode]["epsilon"]
                cells.append(f"{statistics.mean(acc):.3f} ± {statistics.pstdev(acc):.3f}")
                cells.append(f"{statistics.mean(eps):.2f}")
            lines.append(f"| {z:g} | " + " | ".join(cells) + " |")
        out["no_dp_balanced_accuracy"] = no_dp
        lines += ["", f"Without DP: {statistics.mean(no_dp):.3f} ± {statistics.pstdev(no_dp):.3f}.", ""]
    if not a.skip_cost:
        lines += [
            "Median round time at 1,000 parties (digits, MLP, every party every round, 1 local epoch).",
            "",
            "| mechanism | keyed noise (simulation) | OS-entropy discrete noise (default) | ratio |",
            "|---|---:|---:|---:|",
        ]
        for kind in ("central", "distributed (SecAgg+)", "example-level DP-SGD"):
            keyed = round_seconds(cost_config(kind, True))
            secure = round_seconds(cost_config(kind, False))
            row = {"mechanism": kind, "keyed_s": keyed, "secure_s": secure, "ratio": secure / keyed}
            out["cost"].append(row)
            print(json.dumps(row), flush=True)
            lines.append(f"| {kind} | {keyed:.3f} s | {secure:.3f} s | {secure / keyed:.2f}x |")
    write_artifacts(HERE / "results", "dp_noise", out, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
