"""Reports: run pages (HTML with embedded plots) and the JSON/Markdown/PNG artifacts of every study."""

from typing import Any

__all__ = ["write_report"]


def __getattr__(name: str) -> Any:  # matplotlib loads only when a page is written
    if name == "write_report":
        from deai.report.html import write_report

        return write_report
    raise AttributeError(name)
