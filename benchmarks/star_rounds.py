"""Time per round of one task in the simulator and as local party processes (``deai launch``): shared by
the benchmarks that measure what a layer on the star (validators, signed updates) costs a round."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np


def simulated(cfg: Any, where: Path) -> tuple[float, Any]:
    """Milliseconds per round of a whole written run (set-up and report included) and its result: the
    first of four runs pays the imports and caches, the minimum of the other three counts."""
    import deai

    walls = []
    for i in range(4):
        t0 = time.perf_counter()
        result = deai.run(cfg, where / f"sim-{i}")
        walls.append(time.perf_counter() - t0)
    return round(1000 * min(walls[1:]) / len(result.history), 2), result


def networked(cfg: Any, out: Path) -> tuple[float, dict[str, Any], list[dict[str, Any]], float]:
    """Launch ``cfg`` as a local federation into ``out``: the aggregator's median milliseconds per round,
    the run's summary, the aggregator's per-round log events (bytes in and out) and the launch's wall
    seconds."""
    from deai.net.launch import LocalFederation, launch

    t0 = time.perf_counter()
    summary = launch(cfg, out, timeout=600)
    wall = time.perf_counter() - t0
    lines = [json.loads(x) for x in (out / "nodes/aggregator/run/metrics.jsonl").read_text().splitlines()]
    walls = [m["wall_time_s"] for m in lines]
    rounds = [e for e in LocalFederation(cfg, out).events("aggregator") if e["event"] == "round"]
    return round(1000 * float(np.median(np.diff([0.0, *walls]))), 2), summary, rounds, wall
