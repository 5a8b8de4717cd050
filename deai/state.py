"""Named, nested state: every component returns its state as a tree, and checkpoint keys are its paths.

``flatten_tree({"server": {"opt": {"m": a}}})`` is ``{"server/opt/m": a}``; ``unflatten_tree`` inverts
it. So no component builds keys with prefixes or slices them off again, and a component added later
cannot clash with another's names. Checkpoints written before this (flat names such as ``server_m``,
``agg_center``) are read through :func:`upgrade_legacy`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

SEP = "/"

Tree = Mapping[str, Any]


def flatten_tree(tree: Tree, prefix: str = "") -> dict[str, np.ndarray]:
    """The leaves of ``tree`` (arrays or numbers) under their ``/``-joined paths; empty subtrees vanish."""
    out: dict[str, np.ndarray] = {}
    for name, value in tree.items():
        if SEP in name or not name:
            raise ValueError(f"state name {name!r} must be non-empty and must not contain {SEP!r}")
        path = f"{prefix}{name}"
        if isinstance(value, Mapping):
            out.update(flatten_tree(value, path + SEP))
        elif value is not None:
            out[path] = np.asarray(value)
    return out


def unflatten_tree(arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The tree of flat ``/``-joined keys (the inverse of :func:`flatten_tree`); plain keys stay leaves."""
    tree: dict[str, Any] = {}
    for key, value in arrays.items():
        *parents, leaf = key.split(SEP)
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


# flat checkpoint names before named state -> their paths now
_LEGACY_NAMES = {
    "wall_time_s": "server/wall_time_s",
    "version": "server/version",
    "sim_clock": "server/sim_clock",
    "trained_rounds": "party/trained_rounds",
    "scaffold_c": "server/control/c",
    "scaffold_c_parties": "party/scaffold/c_parties",
}
_LEGACY_PREFIXES = {
    "server_": "server/opt/",
    "agg_": "server/rule/",
    "dpclip_": "server/dp/clip/",
    "dp_": "server/dp/accountant/",
}


def upgrade_legacy(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A checkpoint's arrays under today's names (unchanged if it already uses named state)."""
    if any(SEP in k for k in arrays):
        return dict(arrays)
    out: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        if key in ("round", "config_toml"):
            out[key] = value
            if key == "round":
                out["server/round"] = value
            continue
        if key in _LEGACY_NAMES:
            out[_LEGACY_NAMES[key]] = value
            continue
        for old, new in _LEGACY_PREFIXES.items():
            if key.startswith(old):
                out[new + key[len(old) :]] = value
                break
        else:
            out[key] = value
    return out
