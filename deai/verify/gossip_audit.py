"""Cross-checking p2p peers' own ledgers (:mod:`deai.net.peer_ledger`): ``deai ledger cross-check``.

Each peer's log holds, for every neighbour model it mixed, the frame header that neighbour signed (it
names the model body's SHA-256). Read together, the logs prove two offences without any model:

* ``equivocation``: a peer signed two different model bodies for one round (to two neighbours). The two
  signed headers are the proof; each verifies against the peer's roster key alone.
* ``false_log``: a peer's own log says it sent one body in a round while it signed another to a
  neighbour. The peer's signed log entry and its signed header are the proof.

Every log is first checked whole by :func:`deai.verify.ledger.verify` (so every header in it is known to
be signed by the party it names); logs of different tasks (another config) are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deai.verify.ledger import read_entries, verify
from deai.verify.quorum import GOSSIP_ROUND

EQUIVOCATION, FALSE_LOG = "equivocation", "false_log"


@dataclass
class Audit:
    """What the logs show: the peers and rounds covered, and each proven offence with its proof."""

    peers: list[int]
    rounds: int
    receipts: int  # signed headers compared
    findings: list[dict[str, Any]] = field(default_factory=list)
    invalid: dict[str, str] = field(default_factory=dict)  # a log that does not verify -> why

    @property
    def clean(self) -> bool:
        return not self.findings and not self.invalid


def cross_check(paths: list[Path]) -> Audit:
    """Read each peer's ``ledger.db`` (or run directory) and compare what they signed and received."""
    invalid: dict[str, str] = {}
    signed: dict[tuple[int, int], dict[str, dict[str, Any]]] = {}  # (sender, round) -> body sha -> proof
    claims: dict[tuple[int, int], tuple[str, dict[str, Any]]] = {}  # (peer, round) -> (sent, its entry)
    configs: dict[str, str] = {}
    peers, rounds, receipts = [], set(), 0
    for path in paths:
        db = Path(path) / "ledger.db" if Path(path).is_dir() else Path(path)
        verdict = verify(db)
        if not verdict.valid:
            invalid[str(db)] = str((verdict.first_bad or {}).get("reason"))
            continue
        entries = read_entries(db)
        created = entries[0]["body"]
        if created.get("topology") != "p2p" or not isinstance(created.get("peer"), int):
            invalid[str(db)] = "not a p2p peer's ledger (task_created names no peer)"
            continue
        configs[str(db)] = created.get("config_sha256", "")
        me = created["peer"]
        peers.append(me)
        for e in entries:
            if e["kind"] != GOSSIP_ROUND:
                continue
            r, body = e["round"], e["body"]
            rounds.add(r)
            if body.get("sent") is not None:
                claims[(me, r)] = (body["sent"], e)
            for j, proof in body["received"].items():
                receipts += 1
                digest = proof["header"]["body_sha256"]
                signed.setdefault((int(j), r), {}).setdefault(digest, {**proof, "shown_by": me})
    if len(set(configs.values())) > 1:
        raise ValueError(
            "these ledgers belong to different tasks (their config_sha256 differ): cross-check the logs of "
            "one task's peers"
        )
    findings = []
    for (j, r), by_digest in sorted(signed.items()):
        if len(by_digest) > 1:
            two = list(by_digest.values())[:2]
            findings.append({"offence": EQUIVOCATION, "party": j, "round": r, "proof": two})
    for (j, r), (sent, entry) in sorted(claims.items()):
        got = signed.get((j, r), {})
        if got and sent not in got:
            header = next(iter(got.values()))
            findings.append({"offence": FALSE_LOG, "party": j, "round": r, "proof": [entry, header]})
    return Audit(sorted(peers), len(rounds), receipts, findings, invalid)
