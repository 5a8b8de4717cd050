"""Coordinatorless gossip, measured: rounds to 90% of the star's accuracy, spread between peers' models,
and a Byzantine peer against plain and screened gossip, at 5 and 10 peers (digits, Dirichlet 0.5).

Per-round figures come from the in-process gossip reference (``tests/net/gossip_reference.py``), which
the network tests show real peer processes reach bit for bit; one real 5-peer run per graph is timed.

    .venv/bin/python benchmarks/bench_p2p.py [--rounds 20] [--skip-processes]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "net"))

from gossip_reference import gossip_reference  # noqa: E402

import deai  # noqa: E402
from deai.config import parse_config  # noqa: E402
from deai.engine.api import build_data, build_model  # noqa: E402
from deai.evaluation import evaluation_counts  # noqa: E402


def task(n: int, rounds: int, rule: str = "gossip", graph: str = "ring_matching"):  # noqa: ANN201
    return parse_config({
        "run": {"name": f"p2p-{n}", "rounds": rounds, "seed": 7},
        "data": {"dataset": "digits", "num_parties": n, "partition": "dirichlet", "alpha": 0.5},
        "strategy": {"lr": 0.3, "f_max": 0.25},
        "network": {"topology": "p2p", "gossip_rule": rule, "gossip_graph": graph},
    })  # fmt: skip


def curve(cfg, byzantine=None):  # noqa: ANN001, ANN201
    fed = build_data(cfg)
    model = build_model(cfg, fed)
    rows = []

    def on_round(r: int, x: np.ndarray) -> None:
        accs = [evaluation_counts(model, w, fed.x_test, fed.y_test).scores()["accuracy"] for w in x]
        honest = [a for i, a in enumerate(accs) if i != byzantine]
        spread = float(np.linalg.norm(x - x.mean(axis=0), axis=1).max() / np.linalg.norm(x.mean(axis=0)))
        rows.append(
            {"round": r, "worst_honest": min(honest), "mean": float(np.mean(honest)), "spread": spread}
        )

    gossip_reference(cfg, byzantine=byzantine, on_round=on_round)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--skip-processes", action="store_true")
    args = ap.parse_args()
    out = {}
    for n in (5, 10):
        star = deai.run(task(n, args.rounds).with_sections(network={"topology": "star"}), write=False)
        target = 0.9 * star.final_accuracy
        for graph in ("ring_matching", "complete"):
            rows = curve(task(n, args.rounds, graph=graph))
            reached = next((r["round"] for r in rows if r["worst_honest"] >= target), None)
            star_reached = next((i + 1 for i, m in enumerate(star.history) if m["accuracy"] >= target), None)
            key = f"{n} peers, {graph}"
            out[key] = {
                "star_final": star.final_accuracy, "star_rounds_to_90pct": star_reached,
                "gossip_final_worst_peer": rows[-1]["worst_honest"], "rounds_to_90pct_of_star": reached,
                "spread_by_round": [round(r["spread"], 4) for r in rows],
            }  # fmt: skip
            print(key, json.dumps({k: v for k, v in out[key].items() if k != "spread_by_round"}), flush=True)
            print(
                "   spread (max distance to the mean model / its norm) by round:", out[key]["spread_by_round"]
            )
        for rule in ("gossip", "screened_gossip"):
            rows = curve(task(n, args.rounds, rule=rule, graph="complete"), byzantine=0)
            key = f"{n} peers, complete, {rule}, peer 0 sign-flips x10"
            out[key] = {"worst_honest_final": rows[-1]["worst_honest"]}
            print(key, json.dumps(out[key]), flush=True)
    if not args.skip_processes:
        from deai.net.launch import launch

        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            summary = launch(task(5, args.rounds), Path(tmp) / "p2p", timeout=600)
            out["5 peer processes wall_s"] = round(time.perf_counter() - t0, 1)
            out["5 peer processes worst peer (own test rows)"] = summary["worst_peer_accuracy"]
            print("5 peer processes:", out["5 peer processes wall_s"], "s including start-up", flush=True)
    path = Path(__file__).parent / "results" / "bench_p2p.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"written: {path}")


if __name__ == "__main__":
    main()
