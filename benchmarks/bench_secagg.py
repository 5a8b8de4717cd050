"""Cost of secure aggregation: deai's SecAgg+ against plaintext aggregation, measured in one run.

For each (parties, params) the script times ``deai.privacy.secagg.secure_sum`` (every party and
the server simulated in this process, parties one after another, all four protocol rounds) and
plaintext aggregation (``np.sum`` of the ``[parties, params]`` float32 matrix), and counts the
bytes each party uploads (plaintext: ``params`` float32 values). Ratios are taken within the run.
It also checks the decoded sum against the plaintext one.

The 100 x 650 row is the digits logistic regression of ENVIRONMENT.md, where Flower 1.42's
SecAgg+ took 5.4 s per round at 100 parties (1.45 s without it).

    python benchmarks/bench_secagg.py [--repeats 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from deai.privacy.secagg import secure_sum

CASES = [(100, 100_000), (1000, 10_000), (100, 650)]
CLIP = 1.0


def bench(parties: int, params: int, repeats: int, seed: int = 0) -> dict:
    updates = np.random.default_rng(seed).uniform(-CLIP, CLIP, (parties, params)).astype(np.float32)

    plain_times = []
    for _ in range(max(repeats, 20)):
        t0 = time.perf_counter()
        np.sum(updates, axis=0)
        plain_times.append(time.perf_counter() - t0)

    runs = []
    for r in range(repeats):
        t0 = time.perf_counter()
        result = secure_sum(updates, seed=seed, round=r, clip=CLIP)
        runs.append((time.perf_counter() - t0, result))
    wall, result = min(runs, key=lambda run: run[0])

    truth = updates.astype(np.float64).sum(axis=0)
    error = float(np.abs(result.sum.astype(np.float64) - truth).max())
    party_compute = sum(v for k, v in result.timings.items() if k.startswith("parties/"))
    server_compute = sum(v for k, v in result.timings.items() if k.startswith("server/"))
    plain_wall = float(np.median(plain_times))
    plain_bytes = params * np.dtype(np.float32).itemsize
    return {
        "parties": parties,
        "params": params,
        "degree_k": result.config.degree,
        "threshold_t": result.config.threshold,
        "scale": result.config.encoding.scale,
        "secagg_wall_s": wall,
        "plain_wall_s": plain_wall,
        "time_ratio": wall / plain_wall,
        "party_compute_s": party_compute / parties,
        "server_compute_s": server_compute,
        "secagg_bytes_per_party": result.bytes_sent_per_party,
        "plain_bytes_per_party": plain_bytes,
        "bytes_ratio": result.bytes_sent_per_party / plain_bytes,
        "server_bytes_sent": result.bytes_server,
        "max_abs_error": error,
        "error_bound": result.error_bound + float(np.abs(truth).max()) * 2.0**-24,
    }


def table(rows: list[dict]) -> str:
    head = (
        "| parties | params | k | t | SecAgg+ wall (s) | np.sum (s) | time ratio | per-party compute (s) "
        "| server compute (s) | bytes sent/party | plaintext bytes/party | bytes ratio | max error (bound) |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {r['parties']:,} | {r['params']:,} | {r['degree_k']} | {r['threshold_t']} "
            f"| {r['secagg_wall_s']:.3f} | {r['plain_wall_s']:.2e} | {r['time_ratio']:,.0f}x "
            f"| {r['party_compute_s']:.4f} | {r['server_compute_s']:.3f} "
            f"| {r['secagg_bytes_per_party']:,.0f} | {r['plain_bytes_per_party']:,} "
            f"| {r['bytes_ratio']:.3f}x "
            f"| {r['max_abs_error']:.1e} ({r['error_bound']:.1e}) |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="secure_sum runs per case (best is kept)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per case on stdout")
    args = parser.parse_args()
    rows = []
    for parties, params in CASES:
        row = bench(parties, params, args.repeats)
        rows.append(row)
        if row["max_abs_error"] > row["error_bound"]:
            print(
                f"error: decoded sum off by {row['max_abs_error']:.3g} > {row['error_bound']:.3g}",
                file=sys.stderr,
            )
            return 1
        if args.json:
            print(json.dumps(row), flush=True)
    print(table(rows), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
