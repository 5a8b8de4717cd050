"""The aggregator's side of validator nodes: each round, show each validator the evidence, append its entry.

Right after the aggregator appends a round's ``round_result`` (inside the round's ledger transaction), it
sends every validator, in turn, a ``review``: the result entry as appended, the ledger slot (``seq``,
``prev``) the validator's entry must take, the accepted updates as the frames their senders signed, and
the model (with the server optimizer's state) the round started from, so a validator that missed rounds
(restarted, or joined late) can take up the ledger's last co-signed model instead of declining every
later round. The validator answers with its own signed ``cosigned`` or ``dissent`` entry for that slot,
and the aggregator appends it as is (:meth:`deai.verify.ledger.Ledger.append_signed` checks its link
and signature). A review is refused, logged and left out when it names another result,
co-signs other hashes than the result carries (a validator cannot attest one thing and sign another), or
does not verify. A validator that does not answer within the phase timeout is skipped: the round then
lacks its co-signature, which ``deai ledger verify`` reports if the quorum (more than 2/3) is missed.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from deai.messages import RoundRecord
from deai.net.codec import WireError, decode, encode
from deai.net.events import EventLog
from deai.net.payloads import REVIEW, REVIEWED
from deai.net.star_transport import StarTransport
from deai.verify.ledger import Ledger
from deai.verify.quorum import ATTESTED


def review_problem(entry: dict[str, Any], round_: int, result: dict[str, Any], digest: str) -> str | None:
    """Why a validator's signed entry cannot stand beside this round's result, or None."""
    body = entry.get("body") if isinstance(entry.get("body"), dict) else {}
    if entry.get("kind") not in ("cosigned", "dissent") or entry.get("round") != round_:
        kind, at = entry.get("kind"), entry.get("round")
        return f"a {kind!r} entry for round {at!r}, not a review of round {round_}"
    if body.get("result") != digest:
        return "it reviews another result"
    wrong = [k for k in ATTESTED if body.get(k) != result.get(k)]
    if entry["kind"] == "cosigned" and wrong:
        return f"it co-signs other {', '.join(wrong)} than the result carries"
    return None


class RemoteValidators:
    def __init__(self, transport: StarTransport, public_keys: list[bytes], log: EventLog) -> None:
        self.transport, self.public_keys, self.log = transport, list(public_keys), log
        self.start: dict[str, np.ndarray] = {}  # the next round's starting model and optimizer state
        self.server_state: Any = None  # the server program's state (set by the federation)

    def remember(self, params: np.ndarray, opt_state: dict[str, np.ndarray]) -> None:
        """The server's state the next round starts from (at the run's start, then after each round)."""
        self.start = {"start.params": np.array(params, copy=True)}
        self.start |= {f"start.opt.{k}": np.array(v, copy=True) for k, v in opt_state.items()}

    def review(
        self, record: RoundRecord, result: dict[str, Any], digest: str, ledger: Ledger, model_before: str
    ) -> None:
        r, frames = record.round, self.transport.frames
        accepted = [int(p) for p in record.accepted]
        missing = [p for p in accepted if p not in frames]
        if missing:  # cannot happen on a synchronous star; say so rather than show validators half a round
            self.log("no_review", round=r, detail=f"no frames of accepted parties {missing}")
            return
        fields = {
            "result_entry": ledger.last_text,
            "model_before": model_before,
            "frames": [
                {"header": frames[p].header, "signature": frames[p].signature.hex()} for p in accepted
            ],
        }
        arrays = {f"u{i}": np.frombuffer(frames[p].body, dtype=np.uint8) for i, p in enumerate(accepted)}
        arrays |= self.start
        hub = self.transport.hub
        for j, key in enumerate(self.public_keys):
            index = -1 - j
            seq, prev = ledger.slot()
            if not hub.send(index, REVIEW, r, encode(fields | {"seq": seq, "prev": prev}, arrays)):
                self.log("no_review", round=r, validator=j, detail="not connected")
                continue
            for _, env in self.transport.replies({index}, REVIEWED, r):
                self._append(env, j, key, r, result, digest, ledger)
        if self.server_state is not None:  # the server has stepped: that is where the next round starts
            self.remember(self.server_state.params, self.server_state.opt_state)

    def _append(
        self, env: Any, j: int, key: bytes, r: int, result: dict[str, Any], digest: str, ledger: Ledger
    ) -> None:
        try:
            reply = decode(env.body)[0]
            if "declined" in reply:
                self.log("review_declined", round=r, validator=j, reason=str(reply["declined"]))
                return
            text, signature = str(reply["entry"]), str(reply["signature"])
            problem = review_problem(json.loads(text), r, result, digest)
            if problem is None:
                ledger.append_signed(text, signature, key)
                self.log("reviewed", round=r, validator=j, kind=json.loads(text)["kind"])
                return
        except (WireError, KeyError, TypeError, json.JSONDecodeError, AttributeError) as err:
            problem = f"unreadable ({type(err).__name__})"
        except ValueError as err:
            problem = str(err)
        self.log("refused", reason="bad_review", validator=j, round=r, detail=problem)
