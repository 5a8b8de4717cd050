"""deai's SecAgg+ against Flower 1.42's SecAgg+, and each against plaintext aggregation, in one run.

Sizes from the privacy issue: 100 parties x 100,000 parameters and 1,000 x 10,000. deai runs the full
protocol (every party and the server simulated in this process, one party after another); Flower runs
its SecAgg+ workflow in its simulation engine (benchmarks/flower_secagg.py, Flower's venv), timed per
round at steady state (round 2). Flower's 1,000-party SecAgg+ round is given --flower-timeout seconds.

    bash benchmarks/setup_flower.sh
    .venv/bin/python benchmarks/bench_secagg_vs_flower.py [--flower-timeout 900]

Writes benchmarks/results/secagg_vs_flower.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_secagg import bench  # noqa: E402

FLOWER_PY = HERE / ".venv-flower" / "bin" / "python"
CASES = [(100, 100_000), (1000, 10_000)]


def flower(parties: int, params: int, mode: str, timeout: float) -> dict:
    cmd = [
        str(FLOWER_PY),
        str(HERE / "flower_secagg.py"),
        "--parties",
        str(parties),
        "--params",
        str(params),
        "--mode",
        mode,
        "--rounds",
        "2",
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish 2 rounds in {timeout:.0f} s"}
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}: {proc.stderr[-300:]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flower-timeout", type=float, default=900.0)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    if not FLOWER_PY.exists():
        sys.exit("Flower's venv is missing: run `bash benchmarks/setup_flower.sh` first")
    rows = []
    for parties, params in CASES:
        print(f"deai SecAgg+ {parties} x {params} ...", file=sys.stderr, flush=True)
        d = bench(parties, params, a.repeats)
        print(f"Flower SecAgg+ {parties} x {params} ...", file=sys.stderr, flush=True)
        fs = flower(parties, params, "secagg", a.flower_timeout)
        fp = flower(parties, params, "plain", a.flower_timeout)
        rows.append(
            {"parties": parties, "params": params, "deai": d, "flower_secagg": fs, "flower_plain": fp}
        )

    lines = [
        "| parties × params | deai SecAgg+ s | deai ÷ plaintext | deai bytes/party | Flower SecAgg+ s/round "
        "| Flower plaintext s/round | Flower bytes up/party | Flower SecAgg+ ÷ deai |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        d, fs, fp = r["deai"], r["flower_secagg"], r["flower_plain"]
        f_s, f_p = fs.get("round2_s"), fp.get("round2_s")
        flower_secagg = f"{f_s:.2f}" if f_s else fs.get("error", "—")
        flower_plain = f"{f_p:.2f}" if f_p else fp.get("error", "—")
        speedup = f"{f_s / d['secagg_wall_s']:.1f}×" if f_s else "—"
        up = fs.get("bytes_up_per_client_round1")
        lines.append(
            f"| {r['parties']:,} × {r['params']:,} | {d['secagg_wall_s']:.2f} | {d['time_ratio']:,.0f}× "
            f"| {d['secagg_bytes_per_party']:,.0f} | {flower_secagg} | {flower_plain} "
            f"| {'—' if up is None else f'{up:,.0f}'} | {speedup} |"
        )
    table = "\n".join(lines)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "secagg_vs_flower.json").write_text(json.dumps(rows, indent=2))
    (out / "secagg_vs_flower.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
