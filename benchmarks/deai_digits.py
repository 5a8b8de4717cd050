"""The benchmark task run by deai's engine on exactly the partition the other sides use.

Prints one JSON line with the same keys as flower_digits.py and plain_loop.py.

    python benchmarks/deai_digits.py --parties 1000 [--backend vectorized] [--replicate 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from digits_task import BATCH_SIZE, LOCAL_EPOCHS, LR, ROUNDS, load_task  # noqa: E402

from deai.config import parse_config  # noqa: E402
from deai.data.federated import FederatedData  # noqa: E402
from deai.engine.api import build_model  # noqa: E402
from deai.engine.simulation import Simulation  # noqa: E402
from deai.verify.run_ledger import RunLedger  # noqa: E402


def federation(parties: int, seed: int, replicate: int) -> FederatedData:
    x_parts, y_parts, x_eval, y_eval = load_task(parties, seed, replicate)
    offsets = np.concatenate([[0], np.cumsum([len(y) for y in y_parts])]).astype(np.int64)
    empty_x = np.zeros((0, x_eval.shape[1]), np.float32)
    return FederatedData(
        x_train=np.concatenate(x_parts),
        y_train=np.concatenate(y_parts),
        train_offsets=offsets,
        x_test=empty_x,
        y_test=np.zeros(0, np.int64),
        test_offsets=np.zeros(parties + 1, np.int64),
        num_classes=10,
        image_shape=(1, 8, 8),
        party_names=tuple(f"party-{i}" for i in range(parties)),
        x_heldout=x_eval,
        y_heldout=y_eval,
    )


def run(parties: int, rounds: int, seed: int, replicate: int, backend: str, ledger: bool = False) -> dict:
    cfg = parse_config(
        {
            "run": {"rounds": rounds, "seed": seed, "backend": backend, "workers": 2, "eval_every": rounds},
            "data": {"dataset": "digits", "num_parties": parties},
            "strategy": {
                "algorithm": "fedavg",
                "lr": LR,
                "batch_size": BATCH_SIZE,
                "local_epochs": LOCAL_EPOCHS,
            },
        }
    )
    fed = federation(parties, seed, replicate)
    t0 = time.perf_counter()
    sim = Simulation(cfg, fed, build_model(cfg, fed))
    if ledger:  # the default ledger of a written run: keys, task entry, one signed round_result per round
        with tempfile.TemporaryDirectory() as tmp:
            book = RunLedger(Path(tmp), cfg.to_toml(), "bench", sim.model.layout)
            sim.run(on_record=book)
            book.close()
    else:
        sim.run()
    return {
        "framework": f"deai-{backend}" + ("+ledger" if ledger else ""),
        "parties": parties,
        "final_accuracy": sim.state.history[-1]["accuracy"],
        "rounds": rounds,
        "inner_wall_s": time.perf_counter() - t0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parties", type=int, required=True)
    ap.add_argument("--rounds", type=int, default=ROUNDS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--replicate", type=int, default=1)
    ap.add_argument("--backend", default="vectorized", choices=["vectorized", "processes", "ray"])
    ap.add_argument("--ledger", action="store_true", help="keep the run's ledger, as a written run does")
    a = ap.parse_args()
    print(json.dumps(run(a.parties, a.rounds, a.seed, a.replicate, a.backend, a.ledger)))


if __name__ == "__main__":
    main()
