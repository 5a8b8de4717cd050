"""The ledger's cost: appends/s and full verifications/s over 100,000 entries, and its overhead per round.

Per round, the ledger hashes every accepted update (SHA-256 of its float32 bytes), builds the Merkle root of
the leaves, signs one entry and commits one SQLite transaction. That is timed on synthetic rounds of the
given sizes (digits' logistic regression: 650 parameters) and, for the whole engine, as the same written
run (digits, FedAvg, 10 rounds): ledger off, the default ledger, 3 validators, signed updates, and both,
alternated.

    .venv/bin/python benchmarks/bench_ledger.py [--entries 100000] [--parties 1000,100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from deai.messages import RoundRecord, UpdateBatch
from deai.params import Layout
from deai.verify.identity import Identity
from deai.verify.ledger import Ledger, verify
from deai.verify.run_ledger import RunLedger

DIM = 650  # digits' logistic regression: 64 x 10 weights + 10 biases


def chain_throughput(entries: int, where: Path) -> tuple[float, float]:
    """(appends per second, entries verified per second) for a chain of ``entries`` round results."""
    owner, aggregator = Identity.generate("owner"), Identity.generate("aggregator")
    path = where / "chain.db"
    ledger = Ledger(path, "bench")
    t0 = time.perf_counter()
    ledger.append("task_created", {"owner_key": owner.public_key.hex()}, owner)
    ledger.append("joined", {"public_key": aggregator.public_key.hex(), "role": "aggregator"}, owner)
    body = {
        "model_sha256": "ab" * 32,
        "participants": list(range(10)),
        "rejected": {},
        "updates_root": "cd" * 32,
    }
    for r in range(entries - 2):
        ledger.append("round_result", body, aggregator, r + 1)
    appended = time.perf_counter() - t0
    head = ledger.head(owner)
    ledger.close()
    t0 = time.perf_counter()
    verdict = verify(path, head)
    checked = time.perf_counter() - t0
    assert verdict.valid and verdict.entries == entries
    return entries / appended, entries / checked


def round_overhead(parties: int, repeats: int, where: Path) -> float:
    """Best seconds the run ledger takes for one round of ``parties`` accepted updates."""
    rng = np.random.default_rng(0)
    deltas = rng.standard_normal((parties, DIM), dtype=np.float32)
    layout = Layout.from_shapes({"w": (DIM,)})
    run_dir = where / f"run-{parties}"
    run_dir.mkdir()
    ledger = RunLedger(run_dir, "bench config", "bench", layout)
    best = float("inf")
    for r in range(1, repeats + 1):
        batch = UpdateBatch(
            party_ids=np.arange(parties, dtype=np.int64),
            round=np.full(parties, r, np.int64),
            base_version=np.full(parties, r - 1, np.int64),
            deltas=deltas,
            weights=np.ones(parties),
            steps=np.ones(parties, np.int64),
        )
        record = RoundRecord(r, r, deltas[0], batch.party_ids, {}, None, {}, True, batch=batch)
        record.asked = batch.party_ids
        t0 = time.perf_counter()
        ledger(record)
        best = min(best, time.perf_counter() - t0)
    ledger.close()
    return best


VARIANTS = {
    "off": {"enabled": False},
    "default": {},
    "3 validators": {"validators": 3},
    "signed updates": {"sign_updates": True},
    "3 validators + signed updates": {"validators": 3, "sign_updates": True},
}


def engine_overhead(parties: int, repeats: int, where: Path) -> dict[str, float]:
    """Best wall seconds of a written 10-round digits run per ledger variant, the variants alternated."""
    from deai.engine.api import run

    cfg = {
        "run": {"rounds": 10, "seed": 0, "name": "bench"},
        "data": {"dataset": "digits", "num_parties": parties, "holdout_fraction": 0.2},
        "strategy": {"lr": 0.5},
    }
    best = dict.fromkeys(VARIANTS, float("inf"))
    for i in range(repeats):
        for name, ledger in VARIANTS.items():
            out = where / f"engine-{parties}-{i}-{name.replace(' ', '_')}"
            t0 = time.perf_counter()
            run({**cfg, "ledger": ledger}, out)
            best[name] = min(best[name], time.perf_counter() - t0)
            shutil.rmtree(out)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--parties", default="1000,100000", help="round sizes for the per-round overhead")
    ap.add_argument("--engine-parties", type=int, default=1000, help="parties of the whole-engine A/B")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        cpus = len(os.sched_getaffinity(0))
        print(f"{cpus} CPUs, load average {os.getloadavg()[0]:.1f}")
        appends, checks = chain_throughput(a.entries, where)
        print(f"chain of {a.entries:,} entries: {appends:,.0f} appends/s, {checks:,.0f} entries verified/s")
        for parties in (int(p) for p in a.parties.split(",")):
            seconds = round_overhead(parties, a.repeats, where)
            print(f"one round, {parties:,} parties x {DIM} params: ledger {1e3 * seconds:.1f} ms")
        best = engine_overhead(a.engine_parties, a.repeats, where)
        off = best["off"]
        print(f"written run, digits, {a.engine_parties:,} parties, 10 rounds, best of {a.repeats}:")
        for name, seconds in best.items():
            extra = (
                ""
                if name == "off"
                else f", +{1e3 * (seconds - off) / 10:.1f} ms/round ({seconds / off:.2f}x)"
            )
            print(f"  ledger {name}: {seconds:.3f} s{extra}")


if __name__ == "__main__":
    main()
