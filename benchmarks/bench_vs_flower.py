"""deai vs Flower's simulation engine vs a plain NumPy loop, on one task, in one script run.

Task: multinomial logistic regression on digits, FedAvg, 10 rounds, 1 local epoch, lr 0.5, batch 32,
all parties every round, the same IID partition on every side (benchmarks/digits_task.py). Each side
runs as its own process; wall time and peak memory (RSS summed over the process and all its
descendants, e.g. Ray's workers) are measured from outside by benchmarks/procmem.py.

    bash benchmarks/setup_flower.sh          # once: Flower 1.42 + Ray in benchmarks/.venv-flower
    .venv/bin/python benchmarks/bench_vs_flower.py [--sizes 10 100 1000] [--deai-only-sizes 10000]

Writes benchmarks/results/vs_flower.{json,md} (with --ledger: vs_flower_ledger.*) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from procmem import run_measured  # noqa: E402

FLOWER_PY = HERE / ".venv-flower" / "bin" / "python"


def measure(cmd: list[str], timeout: float) -> dict:
    r = run_measured(cmd, timeout=timeout)
    if r["returncode"] != 0 or r["timed_out"]:
        return {"error": f"exit {r['returncode']} timed_out={r['timed_out']}: {r['stderr'][-400:]}"}
    out = json.loads(r["stdout"].strip().splitlines()[-1])
    out.update(wall_s=r["wall_s"], peak_rss_mb=r["peak_rss_mb"], processes=r["peak_processes"])
    return out


def side(name: str, parties: int, replicate: int, timeout: float, ledger: bool = False) -> dict:
    args = ["--parties", str(parties), "--rounds", "10", "--seed", "0", "--replicate", str(replicate)]
    if name == "deai" and ledger:
        args.append("--ledger")
    if name == "flower":
        return measure([str(FLOWER_PY), str(HERE / "flower_digits.py"), *args], timeout)
    script = {"deai": "deai_digits.py", "loop": "plain_loop.py"}[name]
    return measure([sys.executable, str(HERE / script), *args], timeout)


def fmt(x: float | None, spec: str = ".2f") -> str:
    return "—" if x is None else format(x, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[10, 100, 1000])
    ap.add_argument("--deai-only-sizes", type=int, nargs="*", default=[10000])
    ap.add_argument("--timeout", type=float, default=1200)
    ap.add_argument("--ledger", action="store_true", help="deai keeps its default ledger (as a written run)")
    a = ap.parse_args()
    if a.sizes and not FLOWER_PY.exists():
        sys.exit("Flower's venv is missing: run `bash benchmarks/setup_flower.sh` first")

    rows = []
    for parties in [*a.sizes, *a.deai_only_sizes]:
        replicate = 1 if parties <= 1000 else -(-parties // 1437)  # digits has 1,437 training rows
        row = {"parties": parties, "replicate": replicate}
        for name in ["deai", "loop"] + (["flower"] if parties in a.sizes else []):
            print(f"running {name} with {parties} parties ...", file=sys.stderr, flush=True)
            row[name] = side(name, parties, replicate, a.timeout, a.ledger)
        rows.append(row)

    lines = [
        "| parties | deai wall s (inner) | Flower wall s (inner) | loop wall s (inner) | Flower ÷ deai wall "
        "| deai ÷ loop inner | deai MB | Flower MB | deai ÷ Flower MB | acc deai / Flower / loop |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        d, f, lo = row["deai"], row.get("flower", {}), row["loop"]
        ok = "error" not in f and f
        tiled = f" (digits×{row['replicate']})" if row["replicate"] > 1 else ""
        lines.append(
            f"| {row['parties']:,}{tiled} "
            f"| {d['wall_s']:.2f} ({d['inner_wall_s']:.3f}) "
            f"| {fmt(f.get('wall_s')) if ok else '—'} ({fmt(f.get('inner_wall_s')) if ok else '—'}) "
            f"| {lo['wall_s']:.2f} ({lo['inner_wall_s']:.3f}) "
            f"| {fmt(f['wall_s'] / d['wall_s'], '.1f') if ok else '—'} "
            f"| {d['inner_wall_s'] / lo['inner_wall_s']:.2f} "
            f"| {d['peak_rss_mb']:.0f} | {fmt(f.get('peak_rss_mb'), '.0f') if ok else '—'} "
            f"| {fmt(d['peak_rss_mb'] / f['peak_rss_mb'], '.3f') if ok else '—'} "
            f"| {d['final_accuracy']:.4f} / {fmt(f.get('final_accuracy'), '.4f') if ok else '—'} "
            f"/ {lo['final_accuracy']:.4f} |"
        )
    table = "\n".join(lines)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    stem = "vs_flower_ledger" if a.ledger else "vs_flower"
    (out / f"{stem}.json").write_text(json.dumps(rows, indent=2))
    (out / f"{stem}.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
