"""What :func:`deai.verify.ledger.verify` checks about rounds, beyond links and signatures.

* A ``round_opened`` or ``round_result`` is signed by the aggregator's registered key (or the owner's,
  aggregating itself), and rounds only move forward: a result for a round at or before the last one's
  is a replay or a reordering.
* Signed updates (``task_created.sign_updates``): every round with accepted updates has a
  ``commitments`` entry whose party signatures verify and whose root is the result's ``updates_root``.
* Quorum: when the task has validators, a result counts only once more than 2/3 of them co-signed it
  (``cosigned`` entries naming the result's entry hash, before the next result). A co-signature must
  repeat the result's root, aggregate and model hashes: a validator cannot co-sign one thing and claim
  another. A validator that recomputed something else files ``dissent``; a result that reached its quorum
  despite a dissent is reported as disputed (one side lied: the refereed re-execution of the incentives
  issue settles which), not silently accepted.
* A ``valuation`` is the owner's, for the round under review, and values only that round's participants.
* ``rewards`` (a task with incentives): the owner's, one per valued round, and equal to what the task's
  reward rule gives from the recorded values (:mod:`deai.incentives.rewards`): a changed payout or
  reputation is caught exactly.
* ``gossip_round`` (a p2p peer's own log, :mod:`deai.net.peer_ledger`): the owner's (the peer's), rounds
  only move forward, and every mixed neighbour's model comes with a frame header for that round signed by
  that neighbour's registered key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from deai.incentives.rewards import RewardBook
from deai.verify import commitments
from deai.verify.commit_reveal import COPIED_UPDATE, REVEAL_MISMATCH, mismatch_evidence
from deai.verify.identity import key_id, verify_signature
from deai.verify.update_signing import update_message

AGGREGATES = ("aggregator", "owner")  # roles that may publish a round (an owner may aggregate itself)
ATTESTED = ("updates_root", "aggregate_sha256", "model_sha256")
GOSSIP_ROUND = "gossip_round"  # a p2p peer's own log entry for one round (deai.net.peer_ledger)


def quorum_size(validators: int) -> int:
    """The fewest co-signatures that are more than 2/3 of ``validators``."""
    return validators * 2 // 3 + 1


@dataclass
class _OpenResult:
    seq: int
    round: int
    hash: str
    body: dict[str, Any]
    cosigners: set[str] = field(default_factory=set)
    dissenters: list[str] = field(default_factory=list)
    values: dict[str, float] | None = None  # the owner's valuation of the round, if any
    rewarded: bool = False


class RoundChecks:
    """Fed every entry in order (after its signature checked out); says what is wrong, if anything."""

    def __init__(self, keys: dict[str, tuple[bytes, str]]) -> None:
        self.keys = keys  # key id -> (public key, role), filled by verify from joined entries
        self.signed_updates = False
        self.parties: dict[int, bytes] = {}
        self.open: _OpenResult | None = None
        self.committed = False  # the task uses commit-reveal: every leaf carries its signed commitment
        self.last_commitments: tuple[int, str] | None = None  # (round, root) of the last commitments entry
        self.leaves: dict[str, int] = {}  # digest -> party of the last commitments entry
        self.previous_leaves: dict[str, int] = {}  # ... and of the one before it (what a copier copies)
        self.disputes: list[dict[str, Any]] = []
        self.rounds = 0
        self.last_round = 0  # the round of the last result: rounds only move forward
        self.book: RewardBook | None = None  # the task's reward rule, replayed to check every payout
        self._validators: set[str] = set()  # ids of the registered validator keys (counted once per round)

    @property
    def validators(self) -> int:
        return len(self._validators)

    def apply(self, seq: int, entry: dict[str, Any], digest: str) -> tuple[int, str] | None:
        """``(seq, reason)`` of the first fault this entry reveals, or None."""
        kind, body, signer = entry["kind"], entry["body"], entry["signer"]
        role = self.keys[signer][1]
        if kind == "task_created":
            self.signed_updates = bool(body.get("sign_updates", False))
            self.committed = bool(body.get("commit_reveal", False))
            terms = body.get("incentives")
            if terms is not None:
                try:
                    self.book = RewardBook(float(terms["reward_per_round"]), float(terms["reputation_rate"]))
                except (KeyError, TypeError, ValueError):
                    return seq, "task_created's incentives need reward_per_round and reputation_rate"
        elif kind == "joined" and body.get("role") == "validator":
            self._validators.add(key_id(bytes.fromhex(body["public_key"])))
        elif kind == "joined" and body.get("role") == "party":
            index = body.get("party")
            if not isinstance(index, int) or index < 0 or index in self.parties:
                return seq, "a party joined entry needs a party index not registered before"
            self.parties[index] = bytes.fromhex(body["public_key"])
        elif kind == "commitments":
            if role not in AGGREGATES:
                return seq, "commitments must be signed by the aggregator"
            reason = commitments.check(
                body, entry["task"], entry["round"], self.parties, committed=self.committed
            )
            if reason is not None:
                return seq, reason
            self.last_commitments = (entry["round"], body["root"])
            self.previous_leaves, self.leaves = self.leaves, {leaf[1]: leaf[0] for leaf in body["leaves"]}
        elif kind == "round_opened":
            if role not in AGGREGATES:
                return seq, "a round must be opened by the aggregator"
            if entry["round"] is None or entry["round"] <= self.last_round:
                return seq, f"round {entry['round']} opened after round {self.last_round}'s result"
        elif kind == "round_result":
            return self._result(seq, entry, digest, role)
        elif kind in ("cosigned", "dissent"):
            return self._review(seq, entry, role)
        elif kind == "valuation":
            return self._valuation(seq, entry, role)
        elif kind == "rewards":
            return self._rewards(seq, entry, role)
        elif kind == "slash":
            return self._slash(seq, entry, role)
        elif kind == GOSSIP_ROUND:
            return self._gossip(seq, entry, role)
        return None

    def _gossip(self, seq: int, entry: dict[str, Any], role: str) -> tuple[int, str] | None:
        from deai.net.envelope import header_signed_by

        r, body = entry["round"], entry["body"]
        if role != "owner":
            return seq, "a gossip_round must be signed by the peer that keeps the log"
        if not isinstance(r, int) or r <= self.last_round:
            return seq, f"gossip round {r} recorded after round {self.last_round}"
        received = body.get("received")
        if not isinstance(received, dict):
            return seq, "a gossip_round needs received: {party: {header, signature}}"
        for j, proof in received.items():
            key = self.parties.get(int(j)) if str(j).isdigit() else None
            if key is None:
                return seq, f"round {r} mixes a model of party {j}, which never joined with a key"
            try:
                header, sig = proof["header"], bytes.fromhex(proof["signature"])
            except (KeyError, TypeError, ValueError):
                return seq, f"round {r}: party {j}'s proof needs its frame header and signature (hex)"
            if not isinstance(header, dict) or header.get("sender") != key_id(key):
                return seq, f"round {r}: the frame shown for party {j} names another sender"
            if header.get("round") != r or header.get("kind") != "gossip":
                what = f"a {header.get('kind')!r} of round {header.get('round')!r}"
                return seq, f"round {r}: party {j}'s frame is {what}, not a gossip of this round"
            if not header_signed_by(header, sig, key):
                return seq, f"round {r}: party {j} never signed the frame this log shows for it"
        self.last_round, self.rounds = r, self.rounds + 1
        return None

    def _result(self, seq: int, entry: dict[str, Any], digest: str, role: str) -> tuple[int, str] | None:
        fault = self.close()
        if fault is not None:
            return fault
        if role not in AGGREGATES:
            return seq, "a round result must be signed by the aggregator (or the task owner)"
        body, r = entry["body"], entry["round"]
        if not isinstance(r, int) or r <= self.last_round:
            return seq, f"round {r}'s result comes after round {self.last_round}'s (replayed or reordered)"
        self.last_round = r
        if self.signed_updates and body.get("updates_root") is not None:
            if self.last_commitments is None or self.last_commitments[0] != r:
                return seq, f"round {r}'s result has no signed commitments before it"
            if self.last_commitments[1] != body["updates_root"]:
                return seq, f"round {r}'s updates_root is not the root its signed commitments give"
        self.open = _OpenResult(seq, r, digest, body)
        self.rounds += 1
        return None

    def _review(self, seq: int, entry: dict[str, Any], role: str) -> tuple[int, str] | None:
        body, signer, opened = entry["body"], entry["signer"], self.open
        if role != "validator":
            return seq, f"{entry['kind']} by {signer}, a key not registered as a validator"
        if opened is None or body.get("result") != opened.hash or entry["round"] != opened.round:
            return seq, f"{entry['kind']} names no round result open for review (replayed or misplaced)"
        if signer in opened.cosigners or signer in opened.dissenters:
            return seq, f"validator {signer} reviewed round {opened.round} twice"
        if entry["kind"] == "dissent":
            opened.dissenters.append(signer)
            return None
        wrong = [k for k in ATTESTED if body.get(k) != opened.body.get(k)]
        if wrong:
            return seq, (
                f"validator {signer} co-signed round {opened.round}'s result but attests other "
                f"{', '.join(wrong)} than it carries"
            )
        opened.cosigners.add(signer)
        return None

    def _valuation(self, seq: int, entry: dict[str, Any], role: str) -> tuple[int, str] | None:
        """A round's values: the owner's (it scores on its own rows), for that round's accepted parties."""
        opened, values = self.open, entry["body"].get("values")
        if role != "owner":
            return seq, "a valuation must be signed by the task owner"
        if opened is None or entry["round"] != opened.round or not isinstance(values, dict):
            return seq, "a valuation names no round result open for it"
        outsiders = set(values) - {str(p) for p in opened.body.get("participants", [])}
        if outsiders:
            return seq, f"round {opened.round}'s valuation names parties not accepted: {sorted(outsiders)}"
        opened.values = values
        return None

    def _slash(self, seq: int, entry: dict[str, Any], role: str) -> tuple[int, str] | None:
        """Slashing needs proof the party itself signed something false; the evidence is checked here."""
        body, opened = entry["body"], self.open
        if role not in AGGREGATES:
            return seq, "a slash must be filed by the aggregator"
        if opened is None or entry["round"] != opened.round:
            return seq, "a slash names no round result open for it"
        party, reason = body.get("party"), body.get("reason")
        key = self.parties.get(party) if isinstance(party, int) else None
        if key is None:
            return seq, f"a slash names party {party!r}, which never joined with a key"
        if opened.body.get("rejected", {}).get(str(party)) != reason:
            return (
                seq,
                f"a slash of party {party} for {reason!r}, which round {opened.round} did not reject it for",
            )
        if reason == REVEAL_MISMATCH:
            why = mismatch_evidence(entry["task"], entry["round"], key, body)
        elif reason == COPIED_UPDATE:
            why = self._copy_evidence(entry, key)
        else:
            why = f"{reason!r} is not a slashable offence"
        if why is not None:
            return seq, f"the slash of party {party} does not prove it: {why}"
        return None

    def _copy_evidence(self, entry: dict[str, Any], key: bytes) -> str | None:
        body = entry["body"]
        digest, original = body.get("digest"), body.get("original")
        if self.previous_leaves.get(digest) != original or original == body.get("party"):
            return "no other party's accepted update of the last committed round has that digest"
        try:
            sig = bytes.fromhex(body["signature"])
        except (KeyError, TypeError, ValueError):
            return "the copier's signature is missing"
        if not verify_signature(
            key, sig, update_message(entry["task"], entry["round"], key_id(key), bytes.fromhex(digest))
        ):
            return "the party never signed that update"
        return None

    def _rewards(self, seq: int, entry: dict[str, Any], role: str) -> tuple[int, str] | None:
        """A round's payouts and reputations: re-derived here from its valuation by the task's rule."""
        opened = self.open
        if role != "owner":
            return seq, "rewards must be signed by the task owner"
        if self.book is None:
            return seq, "rewards in a task that set no incentives"
        if opened is None or opened.values is None or opened.rewarded or entry["round"] != opened.round:
            return seq, "rewards name no valued round open for them"
        expected = self.book.settle(opened.values, opened.body.get("rejected", {}))
        opened.rewarded = True
        if entry["body"] != expected:
            wrong = sorted(
                p
                for part in ("paid", "reputation")
                for p in set(expected[part]) | set(entry["body"].get(part, {}))
                if expected[part].get(p) != entry["body"].get(part, {}).get(p)
            )
            return (
                seq,
                f"round {opened.round}'s rewards differ from what its valuation gives, for parties {wrong}",
            )
        return None

    def close(self) -> tuple[int, str] | None:
        """Settle the result under review: it needs its quorum; a dissent makes it disputed."""
        opened, self.open = self.open, None
        if opened is not None and self.book is not None and opened.values is not None and not opened.rewarded:
            return opened.seq, f"round {opened.round} was valued, but its rewards were never recorded"
        n = self.validators
        if opened is None or n == 0:
            return None
        need, got = quorum_size(n), len(opened.cosigners)
        if got < need:
            who = f"; {len(opened.dissenters)} dissented" if opened.dissenters else ""
            return opened.seq, (
                f"round {opened.round}'s result has {got} of {n} validators' co-signatures, "
                f"needs {need} (more than 2/3){who}: it never counted"
            )
        if opened.dissenters:
            self.disputes.append(
                {
                    "round": opened.round,
                    "seq": opened.seq,
                    "cosigned": sorted(opened.cosigners),
                    "dissent": sorted(opened.dissenters),
                }
            )
        return None
