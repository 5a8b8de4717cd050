"""A rich progress bar on stderr that follows a run round by round."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

err_console = Console(stderr=True, soft_wrap=True)


def round_progress(total: int, label: str) -> tuple[Progress, Callable[[dict[str, Any]], None]]:
    """A progress bar and the ``on_round`` callback that advances it (use the bar as a context manager)."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    )
    task = progress.add_task(label, total=total, status="")

    def on_round(m: dict[str, Any]) -> None:
        acc, bal = m.get("accuracy"), m.get("balanced_accuracy")
        status = f"acc {100 * acc:.1f}%  balanced {100 * bal:.1f}%" if acc is not None else ""
        progress.update(task, completed=m["round"], status=status)

    return progress, on_round
