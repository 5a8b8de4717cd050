"""Flower side of the benchmark: the digits task in Flower's simulation engine (run in .venv-flower).

Uses Flower 1.42's Message API (ServerApp + ClientApp + serverapp FedAvg, weighted by "num-examples")
under run_simulation with the Ray backend, one CPU per client as ENVIRONMENT.md advises. Each client does
the same arithmetic as plain_loop.py via digits_task.local_epoch; the final global model is evaluated
centrally on the held-out set. Prints ONE JSON line on stdout; Flower's and Ray's logs go to stderr.

    benchmarks/.venv-flower/bin/python benchmarks/flower_digits.py --parties 100 --rounds 10 --seed 0
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
# Ray workers must import digits_task too; they inherit the environment Ray starts with.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p)
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

from digits_task import ROUNDS, accuracy, initial_weights, load_task_cached  # noqa: E402


def build_apps(parties: int, rounds: int, seed: int, replicate: int, box: dict) -> tuple[Any, Any]:
    """ServerApp and ClientApp for the task; the final global arrays are put in box["arrays"]."""
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg

    client_app = ClientApp()

    @client_app.train()
    def train(msg: Message, context: Context) -> Message:
        import digits_task as t  # imported in the Ray worker, cached per actor process

        cfg = msg.content["config"]
        party = int(context.node_config["partition-id"])
        x_parts, y_parts, _, _ = t.load_task_cached(
            int(cfg["parties"]), int(cfg["seed"]), int(cfg["replicate"])
        )
        x, y = x_parts[party], y_parts[party]
        W, b = msg.content["arrays"].to_numpy_ndarrays()
        rng = t.party_rng(int(cfg["seed"]), party, int(cfg["server-round"]))
        W, b = t.local_epoch(W, b, x, y, rng, lr=float(cfg["lr"]), batch_size=int(cfg["batch-size"]))
        content = RecordDict(
            {"arrays": ArrayRecord([W, b]), "metrics": MetricRecord({"num-examples": len(y)})}
        )
        return Message(content=content, reply_to=msg)

    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        from digits_task import BATCH_SIZE, LR

        strategy = FedAvg(
            fraction_train=1.0,
            fraction_evaluate=0.0,  # no federated evaluation; centralized evaluation at the end
            min_train_nodes=parties,
            min_available_nodes=parties,
        )
        W0, b0 = initial_weights()
        config = ConfigRecord(
            {"parties": parties, "seed": seed, "replicate": replicate, "lr": LR, "batch-size": BATCH_SIZE}
        )
        result = strategy.start(grid, ArrayRecord([W0, b0]), num_rounds=rounds, train_config=config)
        box["arrays"] = result.arrays

    return server_app, client_app


def run(
    parties: int, rounds: int = ROUNDS, seed: int = 0, replicate: int = 1, cpus_per_client: float = 1.0
) -> dict:
    """Run the simulation; return the result dict (inner_wall_s times run_simulation alone)."""
    from flwr.simulation import run_simulation

    _, _, x_eval, y_eval = load_task_cached(parties, seed, replicate)
    box: dict = {}
    server_app, client_app = build_apps(parties, rounds, seed, replicate, box)
    backend_config = {"client_resources": {"num_cpus": cpus_per_client, "num_gpus": 0.0}}
    t0 = time.perf_counter()
    run_simulation(server_app, client_app, num_supernodes=parties, backend_config=backend_config)
    inner = time.perf_counter() - t0
    if "arrays" not in box:
        raise RuntimeError("Flower simulation finished without a final model (see the log above)")
    W, b = box["arrays"].to_numpy_ndarrays()
    return {
        "framework": "flower",
        "parties": parties,
        "final_accuracy": accuracy(W, b, x_eval, y_eval),
        "rounds": rounds,
        "inner_wall_s": inner,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parties", type=int, required=True)
    ap.add_argument("--rounds", type=int, default=ROUNDS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--replicate", type=int, default=1, help="tile the training rows (10 for 10,000 parties)")
    ap.add_argument("--cpus-per-client", type=float, default=1.0)
    a = ap.parse_args()
    # Keep stdout for the JSON line alone: send everything else at the fd level (Ray, Flower) to stderr.
    sys.stdout.flush()
    json_fd = os.dup(1)
    os.dup2(2, 1)
    res = run(a.parties, a.rounds, a.seed, a.replicate, a.cpus_per_client)
    sys.stdout.flush()
    with os.fdopen(json_fd, "w") as out:
        out.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
