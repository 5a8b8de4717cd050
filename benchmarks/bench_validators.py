"""What validator nodes and ledger replicas cost a networked round.

The same task (digits, 10 parties, logistic regression, 20 rounds) as 10 party processes and an
aggregator, with no validators and with 4 validator nodes; and, as the in-process reference, the
simulator with no validators and with 4 in-process ones. Reported: the aggregator's median time per
round (the simulator's: a whole written run over its rounds, set-up and report included, min of 3),
the bytes it sends per round, the ledger's entries, and that every node's replica verifies against
the signed head. All runs must reach the simulator's model hash (validators only watch).

    .venv/bin/python benchmarks/bench_validators.py
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import star_rounds


def _task(validators: int):  # noqa: ANN202
    from deai.config import parse_config

    return parse_config(
        {
            "run": {"name": "bench-val", "rounds": 20, "seed": 3},
            "data": {"dataset": "digits", "num_parties": 10, "partition": "dirichlet", "alpha": 0.5},
            "strategy": {"lr": 0.3},
            "ledger": {"validators": validators},
        }
    )


def simulated(validators: int, where: Path) -> dict[str, float]:
    ms, result = star_rounds.simulated(_task(validators), where / f"sim-{validators}")
    return {
        "where": "simulator",
        "validators": validators,
        "ms_per_round": ms,
        "ledger_entries": result.ledger["entries"],
        "model_hash": result.model_hash,
    }


def networked(validators: int, where: Path) -> dict[str, float]:
    from deai.verify.ledger import Head, verify

    out = where / f"net-{validators}"
    ms, summary, rounds, wall = star_rounds.networked(_task(validators), out)
    head = Head.from_dict(summary["ledger"])
    replicas = [p / "ledger.db" for p in (out / "nodes").iterdir() if (p / "ledger.db").is_file()]
    valid = sum(verify(p, head).valid for p in replicas)
    return {
        "where": "10 party processes",
        "validators": validators,
        "ms_per_round": ms,
        "aggregator_bytes_out_per_round": round(float(np.median([e["bytes_out"] for e in rounds]))),
        "ledger_entries": head.entries,
        "replicas_verified": f"{valid} of {len(replicas)}",
        "launch_wall_s": round(wall, 1),
        "model_hash": summary["model_hash"],
    }


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fn in (simulated, networked):
            for v in (0, 4):
                rows.append(fn(v, Path(tmp)))
                print(json.dumps(rows[-1]), flush=True)
    hashes = {r["model_hash"] for r in rows}
    assert len(hashes) == 1, "validators must not change the model"
    by = {(r["where"], r["validators"]): r for r in rows}
    net0, net4 = by[("10 party processes", 0)], by[("10 party processes", 4)]
    sim0, sim4 = by[("simulator", 0)], by[("simulator", 4)]
    summary = {
        "rows": rows,
        "network_validator_overhead_ms_per_round": round(net4["ms_per_round"] - net0["ms_per_round"], 2),
        "network_ratio": round(net4["ms_per_round"] / net0["ms_per_round"], 2),
        "simulator_validator_overhead_ms_per_round": round(sim4["ms_per_round"] - sim0["ms_per_round"], 2),
        "extra_bytes_out_per_round": net4["aggregator_bytes_out_per_round"]
        - net0["aggregator_bytes_out_per_round"],
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}))
    out = Path(__file__).parent / "results" / "bench_validators.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"written: {out}")


if __name__ == "__main__":
    main()
