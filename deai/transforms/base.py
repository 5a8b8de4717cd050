"""Client-side update transforms: ``(init, apply)`` pairs over rows of the update matrix.

Like optax's gradient transformations, each transform is small, keeps explicit state, and
composes with :func:`chain`; clipping, DP noise, compression and masking all take this shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from deai.context import RoundContext


class UpdateTransform(Protocol):
    def init(self, dim: int) -> Any: ...

    def apply(self, updates: np.ndarray, state: Any, ctx: RoundContext) -> tuple[np.ndarray, Any]: ...


@dataclass(frozen=True)
class Chain:
    """Apply transforms in order; the state is the tuple of their states."""

    transforms: tuple[UpdateTransform, ...]

    def init(self, dim: int) -> tuple:
        return tuple(t.init(dim) for t in self.transforms)

    def apply(self, updates: np.ndarray, state: tuple, ctx: RoundContext) -> tuple[np.ndarray, tuple]:
        new_states = []
        for t, s in zip(self.transforms, state, strict=True):
            updates, s = t.apply(updates, s, ctx)
            new_states.append(s)
        return updates, tuple(new_states)

    def to_tree(self, state: tuple) -> dict[str, Any]:
        """The states worth keeping across a restart (transforms with ``to_tree``), by position."""
        return {
            str(i): t.to_tree(s)
            for i, (t, s) in enumerate(zip(self.transforms, state, strict=True))
            if hasattr(t, "to_tree")
        }

    def from_tree(self, tree: dict[str, Any], state: tuple) -> tuple:
        return tuple(
            t.from_tree(tree[str(i)]) if str(i) in tree and hasattr(t, "from_tree") else s
            for i, (t, s) in enumerate(zip(self.transforms, state, strict=True))
        )


def chain(*transforms: UpdateTransform) -> Chain:
    return Chain(tuple(transforms))


@dataclass(frozen=True)
class ClipByNorm:
    """Scale each row to L2 norm at most ``max_norm`` (the clip step of DP-FedAvg and norm bounding)."""

    max_norm: float

    def init(self, dim: int) -> None:
        return None

    def apply(self, updates: np.ndarray, state: None, ctx: RoundContext) -> tuple[np.ndarray, None]:
        norms = np.linalg.norm(updates, axis=1)
        scale = np.minimum(1.0, self.max_norm / np.maximum(norms, 1e-12)).astype(updates.dtype)
        return updates * scale[:, None], None
