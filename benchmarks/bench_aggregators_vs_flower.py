"""deai's robust aggregators against Flower's own, in one script run.

1. every deai rule on a [100, 1_000_000] float32 matrix, as a ratio to deai's weighted mean
   (target: all but Bulyan and the geometric median within 20x);
2. deai's and Flower's mean, Krum, Multi-Krum, median, trimmed mean and Bulyan on [50, 1_000_000]
   (Flower 1.42's aggregation functions, run by benchmarks/flower_aggregators.py in Flower's venv;
   target: deai at least 5x faster on each robust rule).

    bash benchmarks/setup_flower.sh
    .venv/bin/python benchmarks/bench_aggregators_vs_flower.py

Writes benchmarks/results/aggregators_vs_flower.{json,md}.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_aggregators import EXEMPT, TARGET, run  # noqa: E402

FLOWER_PY = HERE / ".venv-flower" / "bin" / "python"
COMPARED = ("mean", "krum", "multi_krum", "median", "trimmed_mean", "bulyan")


def main() -> None:
    if not FLOWER_PY.exists():
        sys.exit("Flower's venv is missing: run `bash benchmarks/setup_flower.sh` first")
    print("deai rules on [100, 1e6] ...", file=sys.stderr, flush=True)
    wide = run(100, 1_000_000, 10, 3, 0)
    print("deai rules on [50, 1e6] ...", file=sys.stderr, flush=True)
    narrow = run(50, 1_000_000, 10, 3, 0)
    print("Flower rules on [50, 1e6] ...", file=sys.stderr, flush=True)
    proc = subprocess.run(
        [
            str(FLOWER_PY),
            str(HERE / "flower_aggregators.py"),
            "--parties",
            "50",
            "--dim",
            "1000000",
            "--byzantine",
            "10",
            "--repeats",
            "3",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    flower = json.loads(proc.stdout.strip().splitlines()[-1])["results"]

    lines = [
        "### deai, [100, 1,000,000] float32, f = 10 (min of 3)",
        "",
        "| rule | ms | ÷ mean | target ≤ 20× |",
        "|---|---|---|---|",
    ]
    for name, s in wide.items():
        ratio = s / wide["mean"]
        verdict = (
            "baseline"
            if name == "mean"
            else "exempt"
            if name in EXEMPT
            else ("met" if ratio <= TARGET else "MISSED")
        )
        lines.append(f"| {name} | {1e3 * s:.1f} | {ratio:.1f} | {verdict} |")
    lines += [
        "",
        "### deai vs Flower 1.42, [50, 1,000,000] float32, f = 10 (min of 3)",
        "",
        "| rule | deai ms | Flower ms | Flower ÷ deai | target ≥ 5× |",
        "|---|---|---|---|---|",
    ]
    for name in COMPARED:
        speedup = flower[name] / narrow[name]
        verdict = "—" if name == "mean" else ("met" if speedup >= 5 else "MISSED")
        lines.append(
            f"| {name} | {1e3 * narrow[name]:.1f} | {1e3 * flower[name]:.1f} | {speedup:.1f} | {verdict} |"
        )
    table = "\n".join(lines)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "aggregators_vs_flower.json").write_text(
        json.dumps({"deai_100": wide, "deai_50": narrow, "flower_50": flower}, indent=2)
    )
    (out / "aggregators_vs_flower.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
