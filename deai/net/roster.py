"""The task's roster: who may speak in it, by Ed25519 public key.

``roster.json`` names the aggregator's key, each party's key with its dense index, the edges of a tree
and the task's validators (their sessions on the top's hub carry negative indices, ``-1 - j``, so they
are never mistaken for parties); every node loads
the same file and its gate accepts frames only from the keys it lists. In a deployment each party makes
its key with ``deai keygen --role party`` and sends the owner only the public half; ``deai launch``
writes a roster for a local federation. The task id every frame is bound to is the SHA-256 of the
resolved task config, so nodes given different configs cannot talk past each other.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from deai import jsonio
from deai.config import ExperimentConfig
from deai.report.artifacts import atomic_write
from deai.verify.identity import key_id

FORMAT = 1


def task_id(cfg: ExperimentConfig) -> str:
    """The id frames are bound to: the first 16 bytes of SHA-256 of the resolved config, in hex."""
    return hashlib.sha256(cfg.to_toml().encode()).digest()[:16].hex()


@dataclass(frozen=True)
class Edge:
    """An edge aggregator of a tree: its key, its parent edge (global index; None: the top), and for a
    leaf edge the parties (global indices) below it. An inner edge's children are the edges naming it."""

    public_key: bytes
    children: list[int]
    parent: int | None = None

    @property
    def id(self) -> str:
        return key_id(self.public_key)


@dataclass(frozen=True)
class Roster:
    aggregator: bytes  # raw public key
    parties: list[bytes]  # raw public key of party i
    names: list[str]
    edges: list[Edge] | None = None  # hierarchical: the top aggregator's children, each over parties
    validators: list[bytes] | None = None  # ledger.validators: nodes that recompute and co-sign rounds

    @property
    def aggregator_id(self) -> str:
        return key_id(self.aggregator)

    @property
    def party_ids(self) -> list[str]:
        return [key_id(k) for k in self.parties]

    def party_index(self) -> dict[str, int]:
        """Key id -> dense party index."""
        return {k: i for i, k in enumerate(self.party_ids)}

    def children_of_top(self) -> dict[str, int]:
        """Who dials the top aggregator: the parties, or in a tree the top's edges (key id -> index)."""
        if self.edges is None:
            return self.party_index()
        return {self.edges[i].id: self.local_index(i) for i in self.child_edges(None)}

    def child_edges(self, edge: int | None) -> list[int]:
        """The global indices of the edges under ``edge`` (None: under the top), in order."""
        return [i for i, e in enumerate(self.edges or []) if e.parent == edge]

    def local_index(self, edge: int) -> int:
        """Edge ``edge``'s index as its parent sees it: its place among its siblings."""
        return self.child_edges(self.edges[edge].parent).index(edge)

    def edge_parent(self, edge: int) -> tuple[str, bytes]:
        """The key id and key edge ``edge`` dials: its parent edge's, or the top's."""
        parent = self.edges[edge].parent
        if parent is None:
            return self.aggregator_id, self.aggregator
        return self.edges[parent].id, self.edges[parent].public_key

    def parties_under(self, edge: int) -> list[int]:
        """Every party in edge ``edge``'s subtree."""
        return sorted(
            [*self.edges[edge].children, *(p for c in self.child_edges(edge) for p in self.parties_under(c))]
        )

    def validator_index(self) -> dict[str, int]:
        """Validator key id -> its session index on the top's hub, ``-1 - j``."""
        return {key_id(k): -1 - j for j, k in enumerate(self.validators or [])}

    def parent_of(self, party: int) -> tuple[str, bytes]:
        """The key id and key a party's frames go to and come from: the top, or its edge."""
        for e in self.edges or []:
            if party in e.children:
                return e.id, e.public_key
        return self.aggregator_id, self.aggregator

    def keys(self) -> dict[str, bytes]:
        """Every key id this roster lets speak, with its public key."""
        out = {key_id(k): k for k in self.parties}
        out |= {e.id: e.public_key for e in self.edges or []}
        out |= {key_id(k): k for k in self.validators or []}
        out[self.aggregator_id] = self.aggregator
        return out

    def save(self, path: Path) -> None:
        doc = {
            "format": FORMAT,
            "aggregator": {"id": self.aggregator_id, "public_key": self.aggregator.hex()},
            "parties": [
                {"index": i, "name": n, "id": key_id(k), "public_key": k.hex()}
                for i, (k, n) in enumerate(zip(self.parties, self.names, strict=True))
            ],
        }
        if self.edges is not None:
            doc["edges"] = [
                {"index": i, "id": e.id, "public_key": e.public_key.hex(), "children": e.children,
                 "parent": e.parent}
                for i, e in enumerate(self.edges)
            ]  # fmt: skip
        if self.validators:
            doc["validators"] = [
                {"index": j, "id": key_id(k), "public_key": k.hex()} for j, k in enumerate(self.validators)
            ]
        atomic_write(Path(path), jsonio.dumps(doc, indent=1))

    @classmethod
    def load(cls, path: Path, num_parties: int | None = None) -> Roster:
        """Read ``path``; a missing, damaged or inconsistent roster raises ``ValueError`` saying which."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"roster {path} does not exist; `deai launch` writes one, or list the keys")
        try:
            doc = json.loads(path.read_text())
            if doc.get("format") != FORMAT:
                raise ValueError(f"format {doc.get('format')!r}, expected {FORMAT}")
            agg = bytes.fromhex(doc["aggregator"]["public_key"])
            entries = sorted(doc["parties"], key=lambda e: e["index"])
            parties = [bytes.fromhex(e["public_key"]) for e in entries]
            names = [str(e.get("name", e["index"])) for e in entries]
            if [e["index"] for e in entries] != list(range(len(entries))):
                raise ValueError("party indices must be 0..N-1, each once")
            edges = None
            if "edges" in doc:
                edges = [
                    Edge(
                        bytes.fromhex(e["public_key"]),
                        [int(c) for c in e["children"]],
                        None if e.get("parent") is None else int(e["parent"]),
                    )
                    for e in sorted(doc["edges"], key=lambda e: e["index"])
                ]
                covered = sorted(c for e in edges for c in e.children)
                if covered != list(range(len(parties))):
                    raise ValueError("the edges' children must cover every party exactly once")
                for i, e in enumerate(edges):  # a parent comes before its children: no cycles
                    if e.parent is not None and not 0 <= e.parent < i:
                        raise ValueError(f"edge {i}'s parent must be an earlier edge; got {e.parent}")
                    if e.parent is not None and edges[e.parent].children:
                        raise ValueError(f"edge {e.parent} holds parties, so it cannot have child edges")
                    if not e.children and not any(c.parent == i for c in edges):
                        raise ValueError(f"edge {i} has neither parties nor edges below it")
            found = sorted(doc.get("validators", []), key=lambda v: v["index"])
            validators = [bytes.fromhex(v["public_key"]) for v in found] or None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"roster {path} is not a deai roster ({err})") from None
        all_keys = [agg, *parties, *(e.public_key for e in edges or []), *(validators or [])]
        if any(len(k) != 32 for k in all_keys):
            raise ValueError(f"roster {path}: every public key must be 32 raw Ed25519 bytes in hex")
        if len(set(all_keys)) != len(all_keys):
            raise ValueError(f"roster {path}: a key appears twice")
        if num_parties is not None and len(parties) != num_parties:
            raise ValueError(
                f"roster {path} lists {len(parties)} parties; the task (data.num_parties) has {num_parties}"
            )
        return cls(agg, parties, names, edges, validators)
