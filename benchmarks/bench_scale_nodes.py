"""Many party processes in one star federation on one machine: join time, time per round, memory.

Starts an aggregator and ``--parties`` party processes (digits, logistic regression, ``--rounds`` rounds),
samples every process's resident memory twice a second, and reports the peak summed and per-process RSS.

    .venv/bin/python benchmarks/bench_scale_nodes.py [--parties 50] [--rounds 10]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import psutil

from deai.config import parse_config
from deai.net.launch import LocalFederation


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parties", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    cfg = parse_config({
        "run": {"name": "scale-nodes", "rounds": args.rounds, "seed": 1},
        "data": {"dataset": "digits", "num_parties": args.parties},
        "strategy": {"lr": 0.3},
        "network": {"join_timeout_s": 900},
    })  # fmt: skip
    peak = {"sum": 0, "max": 0}
    done = threading.Event()

    def sample(fed: LocalFederation) -> None:
        while not done.is_set():
            rss = []
            for proc in list(fed.procs.values()):
                try:
                    rss.append(psutil.Process(proc.pid).memory_info().rss)
                except psutil.Error:
                    pass
            if rss:
                peak["sum"], peak["max"] = max(peak["sum"], sum(rss)), max(peak["max"], max(rss))
            time.sleep(0.5)

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, LocalFederation(cfg, Path(tmp) / "fed") as fed:
        fed.prepare()
        fed.start_aggregator()
        threading.Thread(target=sample, args=(fed,), daemon=True).start()
        for p in range(args.parties):
            fed.start_party(p)
        code = fed.wait_aggregator(3600)
        done.set()
        summary, events = fed.summary(), fed.events("aggregator")
    listening = next(e["t"] for e in events if e["event"] == "listening")
    starting = next(e["t"] for e in events if e["event"] == "starting")
    rounds = [e["t"] for e in events if e["event"] == "round"]
    result = {
        "parties": args.parties,
        "exit": code,
        "rounds": summary["rounds"],
        "accuracy": summary["final_accuracy"],
        "wall_s": round(time.perf_counter() - t0, 1),
        "all_joined_after_s": round(starting - listening, 1),
        "s_per_round": round((rounds[-1] - starting) / len(rounds), 3),
        "peak_summed_rss_gb": round(peak["sum"] / 2**30, 2),
        "peak_process_rss_mb": round(peak["max"] / 2**20),
    }
    print(json.dumps(result))
    (Path(__file__).parent / "results" / "bench_scale_nodes.json").write_text(
        json.dumps(result, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
