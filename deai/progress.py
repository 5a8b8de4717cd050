"""A rich progress bar on stderr that follows a run round by round."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

err_console = Console(stderr=True, soft_wrap=True)


class LazyProgress(Progress):
    """A Progress that appears at its first update, so a run that fails validation prints only the error."""

    def __enter__(self) -> LazyProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live.is_started:
            self.stop()

    def update(self, *args: Any, **kwargs: Any) -> None:
        if not self.live.is_started:
            self.start()
        super().update(*args, **kwargs)


def round_progress(total: int, label: str) -> tuple[LazyProgress, Callable[[dict[str, Any]], None]]:
    """A progress bar and the ``on_round`` callback that advances it (use the bar as a context manager)."""
    progress = LazyProgress(
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
