"""Every report deai writes, one way: strict JSON, a Markdown table, a PNG figure and an HTML page,
each replaced atomically so a reader (or a crash) never sees half a file."""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path
from typing import Any

from deai import jsonio

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}pre{background:#f7f7f7;padding:1em;overflow:auto}img{max-width:100%}
"""


def atomic_write_bytes(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` via a tmp file, fsync and rename; no tmp file is left on failure. ``mode`` (e.g.
    ``0o600`` for a private key) is set on the tmp file before a byte is written; default: the umask's."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666 if mode is None else mode)
        if mode is not None:
            os.fchmod(fd, mode)  # a tmp file left over from a crash keeps its old mode otherwise
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def figure_png(fig: Any) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def embedded_png(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def page(title: str, body: str) -> str:
    """A self-contained HTML page (no external resources)."""
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body>\n<h1>{html.escape(title)}</h1>\n{body}\n</body></html>"
    )


def write_artifacts(
    out: Path,
    stem: str,
    data: Any,
    markdown: str,
    figure: Any = None,
    *,
    figure_name: str | None = None,
    page_title: str | None = None,
) -> None:
    """``{stem}.json``, ``{stem}.md``, the figure as ``{figure_name or stem}.png`` and, with ``page_title``,
    ``report.html`` showing the figure and the table, in ``out`` (created if needed)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / f"{stem}.json", jsonio.dumps(data, indent=2) + "\n")
    atomic_write(out / f"{stem}.md", markdown)
    png = None
    if figure is not None:
        png = figure_png(figure)
        atomic_write_bytes(out / f"{figure_name or stem}.png", png)
    if page_title is not None:
        shown = "" if png is None else embedded_png(png, page_title)
        atomic_write(out / "report.html", page(page_title, f"{shown}<pre>{html.escape(markdown)}</pre>"))
