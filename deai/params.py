"""A model's trainable state as one contiguous float32 vector plus a Layout.

Every mechanism in deai (aggregation, privacy, signing, transport) sees an update as one
row of a ``[parties, dim]`` matrix; the Layout maps that row back to named tensors.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Entry:
    """One named tensor inside the flat vector."""

    name: str
    offset: int
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1


@dataclass(frozen=True)
class Layout:
    """Name -> (slice, shape) map; the dtype of every entry is float32."""

    entries: tuple[Entry, ...]

    @classmethod
    def from_shapes(cls, shapes: dict[str, tuple[int, ...]]) -> Layout:
        entries, offset = [], 0
        for name, shape in shapes.items():
            entry = Entry(name, offset, tuple(int(s) for s in shape))
            entries.append(entry)
            offset += entry.size
        return cls(tuple(entries))

    @property
    def dim(self) -> int:
        return sum(e.size for e in self.entries)

    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    def to_json(self) -> str:
        return json.dumps([[e.name, e.offset, list(e.shape)] for e in self.entries], separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Layout:
        return cls(tuple(Entry(n, int(o), tuple(s)) for n, o, s in json.loads(text)))

    def view(self, vector: np.ndarray, name: str) -> np.ndarray:
        """A view (no copy) of one tensor; works on ``[dim]`` and batched ``[..., dim]`` vectors."""
        for e in self.entries:
            if e.name == name:
                lead = vector.shape[:-1]
                return vector[..., e.offset : e.offset + e.size].reshape(lead + e.shape)
        raise KeyError(f"no tensor named {name!r} in layout; names are {self.names()}")


def flatten(tensors: dict[str, np.ndarray]) -> tuple[np.ndarray, Layout]:
    """Pack named tensors into one float32 vector and its Layout (order is the dict's order)."""
    layout = Layout.from_shapes({k: np.shape(v) for k, v in tensors.items()})
    vector = np.empty(layout.dim, dtype=np.float32)
    for e in layout.entries:
        vector[e.offset : e.offset + e.size] = np.asarray(tensors[e.name], dtype=np.float32).reshape(-1)
    return vector, layout


def unflatten(vector: np.ndarray, layout: Layout) -> dict[str, np.ndarray]:
    """Named tensors (copies) from a flat vector."""
    if vector.shape != (layout.dim,):
        raise ValueError(f"vector has shape {vector.shape}, layout expects ({layout.dim},)")
    return {e.name: layout.view(vector, e.name).copy() for e in layout.entries}


def params_hash(vector: np.ndarray, layout: Layout) -> str:
    """Stable SHA-256 over the layout and the little-endian float32 bytes."""
    h = hashlib.sha256()
    h.update(layout.to_json().encode())
    h.update(np.ascontiguousarray(vector, dtype="<f4").tobytes())
    return h.hexdigest()


def save_params(path: str | Path, vector: np.ndarray, layout: Layout, **extra: np.ndarray) -> None:
    """Write vector, layout and optional extra arrays to ``.npz`` atomically (tmp file + rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            vec = np.asarray(vector, dtype=np.float32)
            np.savez(f, vector=vec, layout=np.array(layout.to_json()), **extra)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed write (disk full) leaves no partial file behind
        raise


def load_params(path: str | Path) -> tuple[np.ndarray, Layout, dict[str, np.ndarray]]:
    """Inverse of :func:`save_params`: ``(vector, layout, extra arrays)``."""
    with np.load(Path(path), allow_pickle=False) as z:
        extra = {k: z[k] for k in z.files if k not in ("vector", "layout")}
        return z["vector"].copy(), Layout.from_json(str(z["layout"])), extra
