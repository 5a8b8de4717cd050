"""What per-update signatures and commit–reveal cost a networked round.

The same task (digits, 10 parties, logistic regression, 20 rounds) as 10 party processes and an
aggregator, three ways: plain, ``ledger.sign_updates`` (each party node signs its update for the
ledger), and ``sign_updates`` + ``commit_reveal`` (a commit round, then a reveal round). Reported: the
aggregator's median time per round, the bytes it receives per round, and, as the in-process reference,
the simulator's time per round for the same three (a whole written run, min of 3 after a warm-up). All
runs must reach the plain simulator's model hash (signing and committing change no update).

    .venv/bin/python benchmarks/bench_signed_updates.py
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import star_rounds

MODES = {
    "plain": {},
    "sign_updates": {"sign_updates": True},
    "sign_updates + commit_reveal": {"sign_updates": True, "commit_reveal": True},
}


def _task(ledger: dict) -> object:
    from deai.config import parse_config

    return parse_config(
        {
            "run": {"name": "bench-signed", "rounds": 20, "seed": 3},
            "data": {"dataset": "digits", "num_parties": 10, "partition": "dirichlet", "alpha": 0.5},
            "strategy": {"lr": 0.3},
            "ledger": ledger,
        }
    )


def simulated(mode: str, where: Path) -> dict[str, object]:
    ms, result = star_rounds.simulated(_task(MODES[mode]), where / f"sim-{mode}".replace(" ", ""))
    return {"where": "simulator", "mode": mode, "ms_per_round": ms, "model_hash": result.model_hash}


def networked(mode: str, where: Path) -> dict[str, object]:
    ms, summary, rounds, _ = star_rounds.networked(_task(MODES[mode]), where / f"net-{mode}".replace(" ", ""))
    return {
        "where": "10 party processes",
        "mode": mode,
        "ms_per_round": ms,
        "aggregator_bytes_in_per_round": round(float(np.median([e["bytes_in"] for e in rounds]))),
        "model_hash": summary["model_hash"],
    }


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fn in (simulated, networked):
            for mode in MODES:
                rows.append(fn(mode, Path(tmp)))
                print(json.dumps(rows[-1]), flush=True)
    assert len({r["model_hash"] for r in rows}) == 1, "signatures and commitments must not change the model"
    by = {(r["where"], r["mode"]): r for r in rows}
    summary: dict[str, object] = {"rows": rows}
    for where in ("simulator", "10 party processes"):
        base = by[(where, "plain")]["ms_per_round"]
        for mode in list(MODES)[1:]:
            ms = by[(where, mode)]["ms_per_round"]
            summary[f"{where}: {mode}: extra ms per round"] = round(ms - base, 2)
            summary[f"{where}: {mode}: ratio"] = round(ms / base, 2)
    net = "10 party processes"
    for mode in list(MODES)[1:]:
        extra = (
            by[(net, mode)]["aggregator_bytes_in_per_round"]
            - by[(net, "plain")]["aggregator_bytes_in_per_round"]
        )
        summary[f"{net}: {mode}: extra bytes in per round"] = extra
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=1))
    out = Path(__file__).parent / "results" / "bench_signed_updates.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"written: {out}")


if __name__ == "__main__":
    main()
