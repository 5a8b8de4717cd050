"""Shared helpers for the test suite."""

from __future__ import annotations

from typing import Any

import pytest


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


@pytest.fixture
def config_factory():
    return make_config
