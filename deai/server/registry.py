"""The parties a server knows: a name or public key -> a dense index, stable for the run.

The engine's per-party arrays (sampling, SCAFFOLD weights, in-flight flags) are indexed densely; a
registry is where an identity becomes such an index. A party registered twice keeps its index, and a
late joiner gets the next one, so ids derived from keys (the ledger issue) fit without renumbering.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def key_id(public_key: bytes) -> str:
    """A party id derived from its public key: the first 16 bytes of SHA-256, in hex."""
    if not isinstance(public_key, bytes | bytearray) or not public_key:
        raise ValueError("public_key must be non-empty bytes")
    return hashlib.sha256(bytes(public_key)).hexdigest()[:32]


class PartyRegistry:
    def __init__(self, names: Iterable[str] = ()) -> None:
        self._index: dict[str, int] = {}
        self._names: list[str] = []
        for name in names:
            self.register(name)

    @classmethod
    def dense(cls, n: int) -> PartyRegistry:
        """``n`` parties named ``party-00000`` ... (a simulation's anonymous parties)."""
        return cls(f"party-{i:05d}" for i in range(n))

    def register(self, name: str) -> int:
        """The index of ``name``, registering it if it is new."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a party name must be a non-empty string; got {name!r}")
        if name not in self._index:
            self._index[name] = len(self._names)
            self._names.append(name)
        return self._index[name]

    def index(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"party {name!r} is not registered with this server") from None

    def name(self, index: int) -> str:
        if not 0 <= index < len(self._names):
            raise IndexError(f"no party has index {index}; {len(self._names)} are registered")
        return self._names[index]

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._index
