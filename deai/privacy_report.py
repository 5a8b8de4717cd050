"""``deai privacy sweep``: the privacy–utility trade-off of one config, measured, in one report.

The same seeded run is repeated at several noise multipliers (and once without DP); each run is
audited with the membership-inference attacks of :mod:`deai.privacy.audit`, so a reader sees,
side by side, the epsilon spent, the accuracy kept, and how much an attacker still learns.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from deai.config import ConfigError, ExperimentConfig
from deai.engine.api import as_config, run
from deai.report.artifacts import write_artifacts


def sweep(
    base: ExperimentConfig | str | Path,
    noise_multipliers: Sequence[float],
    out: Path,
    *,
    audit: bool = True,
    on_run: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """One non-private run plus one DP run per noise multiplier, each audited; returns the table."""
    base = as_config(base)
    if any(not (z > 0 and math.isfinite(z)) for z in noise_multipliers):
        raise ConfigError(f"--noise-multipliers must be positive numbers, got {list(noise_multipliers)}")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"--out {out} is not empty; choose a new directory for the sweep")
    mode = base.privacy.mode if base.privacy.mode != "none" else "central"
    variants = []
    for z in [None, *noise_multipliers]:
        label = "non-private" if z is None else f"z={z:g}"
        privacy = {
            "mode": "none" if z is None else mode,
            "target_epsilon": None,
            "budget_epsilon": None,
            "noise_multiplier": z if z is not None else 1.0,
        }
        # every variant is validated before the first run writes anything
        variants.append((z, label, base.with_sections(source=f"sweep variant {label}", privacy=privacy)))
    rows = []
    for z, label, cfg in variants:
        if on_run:
            on_run(label)
        run_dir = out / label.replace("=", "_")
        result = run(cfg, out=run_dir)
        row: dict[str, Any] = {
            "run": label,
            "noise_multiplier": z,
            "epsilon": math.inf if z is None else (result.privacy or {}).get("epsilon", math.nan),
            "delta": base.privacy.delta,
            "accuracy": result.final_accuracy,
            "run_dir": str(run_dir),
        }
        if audit:
            from deai.privacy.audit.report import audit_run

            report = audit_run(run_dir)
            row.update(
                mia_loss_auc=report["mia_loss_auc"],
                mia_shadow_auc=report["mia_shadow_auc"],
                mia_advantage=report["mia_advantage"],
            )
        rows.append(row)
    table = {"mode": mode, "rows": rows}
    _write(table, out)
    return table


def _write(table: dict[str, Any], out: Path) -> None:
    lines = [
        f"DP-FedAvg ({table['mode']} noise): accuracy and membership-inference AUC against epsilon",
        "",
        "| run | noise multiplier | epsilon | accuracy | MIA AUC (loss) | MIA AUC (shadow) |",
        "|---|---|---|---|---|---|",
    ]
    for r in table["rows"]:
        eps = "∞" if r["epsilon"] == math.inf else f"{r['epsilon']:.3g}"
        z = "—" if r["noise_multiplier"] is None else f"{r['noise_multiplier']:g}"
        lines.append(
            f"| {r['run']} | {z} | {eps} | {100 * r['accuracy']:.2f}% | {_f(r.get('mia_loss_auc'))} "
            f"| {_f(r.get('mia_shadow_auc'))} |"
        )
    markdown = "\n".join(lines) + "\n"
    title = "Privacy–utility report"
    write_artifacts(out, "privacy_utility", table, markdown, _figure(table), page_title=title)


def _figure(table: dict[str, Any]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    private = [r for r in table["rows"] if r["noise_multiplier"] is not None]
    baseline = next(r for r in table["rows"] if r["noise_multiplier"] is None)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    eps = [r["epsilon"] for r in private]
    ax.plot(eps, [100 * r["accuracy"] for r in private], "o-", label="accuracy (DP)")
    ax.axhline(100 * baseline["accuracy"], ls="--", color="gray", label="accuracy (no DP)")
    ax.set(
        xscale="log",
        xlabel="epsilon (log scale)",
        ylabel="test accuracy (%)",
        title="Privacy–utility trade-off",
    )
    if "mia_loss_auc" in baseline:
        ax2 = ax.twinx()
        ax2.plot(eps, [r["mia_loss_auc"] for r in private], "s:", color="tab:red", label="MIA AUC (DP)")
        ax2.axhline(baseline["mia_loss_auc"], ls=":", color="tab:red", alpha=0.5)
        ax2.set_ylabel("membership-inference AUC", color="tab:red")
        handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
        ax.legend(handles=handles, loc="lower right")
    else:
        ax.legend(loc="lower right")
    return fig


def _f(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"
