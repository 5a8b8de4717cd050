"""Run reports (HTML with embedded plots)."""

from deai.report.html import write_report

__all__ = ["write_report"]
