"""``report.html``: a self-contained page (plots embedded as PNG) for one run or a comparison."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

from deai import jsonio
from deai.report.artifacts import atomic_write, embedded_png, figure_png, page

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def curves_png(runs: Sequence[tuple[str, list[dict[str, Any]]]]) -> bytes:
    """Accuracy and loss per round for one or more runs, as PNG."""
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.6))
    for label, history in runs:
        evald = [m for m in history if m.get("accuracy") is not None]
        rounds = [m["round"] for m in evald]
        (line,) = ax_acc.plot(rounds, [100 * m["accuracy"] for m in evald], marker=".", label=label)
        if any("balanced_accuracy" in m for m in evald):
            ax_acc.plot(
                rounds,
                [100 * m.get("balanced_accuracy", float("nan")) for m in evald],
                ls="--",
                color=line.get_color(),
                label=f"{label} (balanced)",
            )
        ax_loss.plot(rounds, [m["loss"] for m in evald], marker=".", label=label)
    ax_acc.set(xlabel="round", ylabel="test accuracy (%)", title="Global model accuracy")
    ax_loss.set(xlabel="round", ylabel="test cross-entropy", title="Global model loss")
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend()
    return figure_png(fig)


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    cols = list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in cols) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def write_report(
    path: Path,
    title: str,
    summary_rows: list[dict[str, Any]],
    runs: Sequence[tuple[str, list[dict[str, Any]]]],
    config_text: str = "",
    notes: str = "",
    sections: Sequence[tuple[str, str, list[dict[str, Any]]]] = (),
) -> Path:
    """Write the page (atomically) and return its path."""
    body = f"""<p>{html.escape(notes)}</p>
<h2>Summary</h2>{_table(summary_rows)}
{"".join(f"<h2>{html.escape(t)}</h2><p>{html.escape(txt)}</p>{_table(rows)}" for t, txt, rows in sections)}
<h2>Learning curves</h2>{embedded_png(curves_png(runs), "accuracy and loss per round")}
<h2>Per-round metrics</h2>
{"".join(f"<h3>{html.escape(label)}</h3>" + _table(_round_rows(h)) for label, h in runs)}
<h2>Configuration</h2><pre>{html.escape(config_text)}</pre>
<script type="application/json" id="metrics">{html.escape(jsonio.dumps(dict(runs)))}</script>"""
    atomic_write(path, page(title, body))
    return path


def _round_rows(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = [
        "round",
        "accuracy",
        "balanced_accuracy",
        "loss",
        "train_loss",
        "participants",
        "dropped",
        "stragglers",
        "rejected",
        "epsilon",
        "wall_time_s",
    ]
    return [{k: m.get(k) for k in keys} for m in history]
