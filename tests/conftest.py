"""Shared helpers for the test suite."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any


def make_config(**sections: dict[str, Any]) -> dict[str, Any]:
    """A small digits config; keyword sections override or extend the defaults."""
    cfg: dict[str, dict[str, Any]] = {
        "run": {"rounds": 3, "seed": 0},
        "data": {"dataset": "digits", "num_parties": 10},
        "strategy": {"lr": 0.5},
    }
    for name, values in sections.items():
        cfg.setdefault(name, {}).update(values)
    return cfg


def crashed_copy(run_dir: Path, at_round: int) -> Path:
    """A copy of a finished run directory rolled back to its round-``at_round`` checkpoint, as after a crash.

    metrics.jsonl keeps its later lines on purpose: resume must drop them itself.
    """
    crashed = run_dir.with_name(run_dir.name + "-crashed")
    shutil.copytree(run_dir, crashed)
    shutil.copy(crashed / "checkpoints" / f"round-{at_round:05d}.npz", crashed / "checkpoints" / "latest.npz")
    (crashed / "final.npz").unlink()
    return crashed
