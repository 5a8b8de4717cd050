"""Rewards and reputation, re-derivable from the ledger alone.

Each round a task pays ``reward_per_round`` among the parties it accepted, in proportion to their
non-negative value scaled by their reputation:

    paid_i = pool * max(v_i, 0) * rep_i / sum_j max(v_j, 0) * rep_j     (nothing if the sum is 0)

then updates each reputation as an exponential moving average of the round's outcome ``s_i``:

    rep_i <- (1 - rate) * rep_i + rate * s_i,   s_i = max(v_i, 0) / max_j max(v_j, 0)   (accepted)
                                                s_i = 0                                  (rejected)

Reputation starts at 1. A rejection by the robust aggregator or validation lowers reputation but never
takes stake: such rejections also hit honest parties with unusual data, so they are not evidence of
cheating. Slashing (taking stake) needs cryptographic evidence that the party itself signed something
false: a reveal that breaks its signed commitment, or a signed exact copy of another party's accepted
update (``slash`` entries, :mod:`deai.verify.commit_reveal`). A bad signature is not such evidence against
the party it names, since anyone can send garbage under someone's name.

The writer (a run) and the checker (:func:`deai.verify.ledger.verify`) both run :class:`RewardBook` on the
values as the ledger stores them, so a tampered payout or reputation is caught exactly, not within a
tolerance. A party's balance is its stake plus what it was paid (:func:`balances`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PRECISION = 10  # decimals every amount is rounded to before it is written


@dataclass
class RewardBook:
    """The reward and reputation rule of one task, and each party's reputation so far."""

    reward_per_round: float
    reputation_rate: float = 0.5
    reputation: dict[str, float] = field(default_factory=dict)

    def settle(self, values: dict[str, float], rejected: dict[str, str]) -> dict[str, Any]:
        """One round's payouts and the reputations after it, as the ledger's ``rewards`` body.

        ``rejected`` maps party to reason, as the round result records it; a row dropped for a bad
        signature does not count against the party it names (anyone can forge a name).
        """
        gains = {p: max(float(v), 0.0) for p, v in values.items()}
        scaled = {p: g * self.reputation.get(p, 1.0) for p, g in gains.items()}
        total = sum(scaled.values())
        paid = {
            p: round(self.reward_per_round * s / total, PRECISION) if total > 0 else 0.0
            for p, s in scaled.items()
        }
        best = max(gains.values(), default=0.0)
        outcome = {p: (g / best if best > 0 else 0.0) for p, g in gains.items()}
        outcome |= {p: 0.0 for p, why in rejected.items() if why != "bad_signature"}
        rate = self.reputation_rate
        for p, s in outcome.items():
            self.reputation[p] = round((1 - rate) * self.reputation.get(p, 1.0) + rate * s, PRECISION)
        return {"paid": paid, "reputation": {p: self.reputation[p] for p in sorted(outcome)}}


def balances(path: Path) -> dict[str, Any]:
    """Each party's stake, what was slashed, total paid and balance, from a ledger's entries alone
    (unchecked: verify first). A proven offence takes ``slash_fraction`` of the stake that remains."""
    from deai.verify.ledger import read_entries

    stake: dict[str, float] = {}
    slashed: dict[str, float] = {}
    paid: dict[str, float] = {}
    fraction = 1.0
    for e in read_entries(path):
        body = e.get("body", {})
        kind = e.get("kind")
        if kind == "task_created":
            fraction = float((body.get("incentives") or {}).get("slash_fraction", 1.0))
        elif kind == "joined" and body.get("role") == "party":
            stake[str(body["party"])] = float(body.get("stake", 0.0))
        elif kind == "rewards":
            for p, amount in body.get("paid", {}).items():
                paid[p] = paid.get(p, 0.0) + float(amount)
        elif kind == "slash":
            p = str(body["party"])
            taken = round(fraction * (stake.get(p, 0.0) - slashed.get(p, 0.0)), PRECISION)
            slashed[p] = slashed.get(p, 0.0) + taken
    parties = sorted(set(stake) | set(paid), key=lambda p: (len(p), p))
    out = {}
    for p in parties:
        kept = stake.get(p, 0.0) - slashed.get(p, 0.0)
        out[p] = {
            "stake": stake.get(p, 0.0),
            "slashed": round(slashed.get(p, 0.0), PRECISION),
            "paid": round(paid.get(p, 0.0), PRECISION),
            "balance": round(kept + paid.get(p, 0.0), PRECISION),
        }
    return out
