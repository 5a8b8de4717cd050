"""A leakage audit strong enough to fail: LiRA and one-run canary auditing of DP-FedAvg on Fashion-MNIST.

The task is built to leak: 200 clients with 10 training images each, an MLP, 30 local epochs, 10 rounds,
every client every round (q = 1), each update clipped to C = 1 under DP. Five mechanisms:

- no DP;
- central DP-FedAvg calibrated (RDP, delta = 1e-5) to epsilon = 1, 4 and 16;
- a deliberately broken mechanism: the accountant is told the epsilon = 1 noise multiplier, the noise
  actually added is 10 times smaller.

LiRA (Carlini et al. 2022) at the client level: 16 models, each on a random half of the 200 clients;
each model attacked with the other 15 as shadows; AUC and TPR at 1% FPR pooled over 3,200 (model,
client) pairs. One-run auditing (Steinke, Nasr and Jagielski 2023): one more run of each mechanism with
1,000 canary clients (each included with probability 1/2, sending ``C u_i`` along a secret random unit
direction) beside the 200 real ones; the auditor guesses the 100 highest-scoring canaries in and the
100 lowest out, and certifies an empirical epsilon at 95% confidence. A mechanism whose certified
epsilon exceeds its claimed epsilon is flagged. 200 guesses can certify at most about 4.2, which this
script reports as the audit's ceiling: claims above it (epsilon 16) cannot be falsified in one run.

    .venv/bin/python benchmarks/bench_privacy_audit.py [--models 16] [--canaries 1000]

Needs Fashion-MNIST (``make fashion-mnist``). Writes benchmarks/results/privacy_audit.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from deai.attacks import choose_malicious
from deai.config import parse_config
from deai.engine.api import _execute, build_data, build_model
from deai.engine.simulation import Simulation
from deai.privacy.audit.lira import lira_metrics, logit_confidence
from deai.privacy.audit.membership import log_probs
from deai.privacy.audit.one_run import audit_canaries
from deai.privacy.dp.accountant import calibrate_noise_multiplier
from deai.report.artifacts import write_artifacts

HERE = Path(__file__).resolve().parent
CLIENTS, PER_CLIENT, ROUNDS, CLIP, DELTA = 200, 10, 10, 1.0, 1e-5


def base_config(num_parties: int, privacy: dict, attack: dict | None = None) -> dict:
    cfg = {
        "run": {"rounds": ROUNDS, "seed": 0},
        "data": {
            "dataset": "fashion_mnist",
            "num_parties": num_parties,
            "max_examples": int(num_parties * PER_CLIENT / 0.8),
            "holdout_fraction": 0.2,
            "test_fraction": 0.0,
        },
        "model": {"kind": "mlp"},
        "strategy": {"algorithm": "fedavg", "lr": 0.1, "local_epochs": 30, "batch_size": 10},
        "privacy": privacy,
    }
    if attack is not None:
        cfg["attack"] = attack
    return cfg


def mechanisms() -> list[tuple[str, float | None, dict]]:
    """(name, claimed epsilon, privacy section); noise multipliers calibrated for q = 1 over ROUNDS."""
    z1 = calibrate_noise_multiplier(1.0, 1.0, ROUNDS, DELTA, "rdp")
    out: list[tuple[str, float | None, dict]] = [("no DP", None, {})]
    for eps in (1.0, 4.0, 16.0):
        z = calibrate_noise_multiplier(eps, 1.0, ROUNDS, DELTA, "rdp")
        out.append((f"DP eps={eps:g}", eps, {"mode": "central", "noise_multiplier": z, "clip_norm": CLIP}))
    broken = {"mode": "central", "noise_multiplier": z1 / 10, "clip_norm": CLIP}
    out.append(("broken (noise z/10, claims eps=1)", 1.0, broken))
    return out


def train(cfg_dict: dict, fed=None, parties: np.ndarray | None = None):
    cfg = parse_config(cfg_dict)
    fed = build_data(cfg) if fed is None else fed
    model = build_model(cfg, fed)
    sub = fed if parties is None else fed.subset(parties)
    sim = Simulation(cfg, sub, model)
    start = sim.state.params.astype(np.float64).copy()
    result = _execute(cfg, sim, None, time.perf_counter(), None)
    return model, result, start


def lira_for(privacy: dict, models: int, fed, rng: np.random.Generator) -> dict:
    member = rng.random((models, CLIENTS)) < 0.5
    owner = np.repeat(np.arange(CLIENTS), fed.train_sizes)
    phi, accuracy = [], []
    for k in range(models):
        model, result, _ = train(base_config(CLIENTS, privacy), fed, np.flatnonzero(member[k]))
        phi.append(logit_confidence(log_probs(model, result.params, fed.x_train), fed.y_train))
        accuracy.append(result.final_accuracy)
    return {**lira_metrics(np.stack(phi), member, owner), "test_accuracy": float(np.mean(accuracy))}


def one_run_for(privacy: dict, canaries: int, guesses: int) -> dict:
    total = CLIENTS + canaries
    attack = {"kind": "canary", "fraction": canaries / total, "options": {"audit_seed": 7, "norm": CLIP}}
    _, result, start = train(base_config(total, privacy, attack))
    ids = np.flatnonzero(choose_malicious(total, canaries / total, 0))
    audit = audit_canaries(result.params.astype(np.float64) - start, 7, ids, guesses, DELTA)
    return {
        "canaries": audit.canaries,
        "guesses": audit.guesses,
        "correct": audit.correct,
        "epsilon_lower_bound": audit.epsilon_lower_bound,
        "ceiling": audit.ceiling,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=16)
    ap.add_argument("--canaries", type=int, default=1000)
    ap.add_argument("--guesses", type=int, default=200)
    a = ap.parse_args()
    fed = build_data(parse_config(base_config(CLIENTS, {})))
    rows = []
    for name, claimed, privacy in mechanisms():
        t0 = time.perf_counter()
        row = {"mechanism": name, "claimed_epsilon": claimed, "privacy": privacy}
        row["lira"] = lira_for(privacy, a.models, fed, np.random.default_rng(1))
        row["one_run"] = one_run_for(privacy, a.canaries, a.guesses)
        lb = row["one_run"]["epsilon_lower_bound"]
        row["flagged"] = claimed is not None and lb > claimed
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        print(json.dumps(row), flush=True)
    ceiling = rows[0]["one_run"]["ceiling"]
    lines = [
        f"Fashion-MNIST, {CLIENTS} clients x {PER_CLIENT} images, MLP, 30 local epochs, {ROUNDS} rounds, "
        f"q = 1, C = {CLIP:g}, delta = {DELTA:g}. LiRA: {a.models} models, pooled over (model, client) "
        f"pairs. One run: {a.canaries} canary clients, {a.guesses} guesses, 95% confidence; the audit's "
        f"ceiling is {ceiling:.2f} (no claim above it can be rejected).",
        "",
        "| mechanism | claimed eps | LiRA AUC | LiRA TPR @ 1% FPR "
        "| one-run eps lower bound (correct/guesses) | flagged | test accuracy |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        claimed = "-" if r["claimed_epsilon"] is None else f"{r['claimed_epsilon']:g}"
        o, li = r["one_run"], r["lira"]
        lines.append(
            f"| {r['mechanism']} | {claimed} | {li['auc']:.3f} | {li['tpr_at_1pct_fpr']:.3f} | "
            f"{o['epsilon_lower_bound']:.2f} ({o['correct']}/{o['guesses']}) | "
            f"{'**yes**' if r['flagged'] else 'no'} | {li['test_accuracy']:.3f} |"
        )
    write_artifacts(HERE / "results", "privacy_audit", {"rows": rows}, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
