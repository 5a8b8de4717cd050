"""Validators: recompute each round from the updates received, then co-sign the result or dissent.

A validator never signs what it did not recompute. For each round it takes the updates it received (in
the simulator, the round's accepted batch; over the network, the parties' signed messages), and checks
three things against the aggregator's ``round_result``: the Merkle root of those updates
(``updates_root``), the aggregate its own copy of the rule computes from them (``aggregate_sha256``),
and the model its own copy of the server optimizer steps to from the previous model it holds
(``model_sha256``). All three equal: it appends ``cosigned`` with the result's entry hash and those three
values. Anything differs: it appends ``dissent`` with what it recomputed and why. A result counts when
more than 2/3 of the task's validators co-signed it (:mod:`deai.verify.quorum`).

What a validator can recompute: a rule that is a pure function of the updates, their weights and the
round's public context (seed, round, party ids, steps). So validators refuse, up front, rules that keep
hidden state across rounds, rules that read the owner's private root data, DP noise (recomputing it would
require knowing the noise, which would void the guarantee) and secure aggregation or HE (the updates are
never revealed to anyone). :func:`validator_limits` says which of these a task hits.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from deai.aggregate.base import traits
from deai.context import RoundContext
from deai.messages import RoundRecord
from deai.params import Layout, params_hash
from deai.verify.commitments import updates_root
from deai.verify.identity import Identity


def validator_limits(aggregator: Any, *, dp: bool, max_parties_per_batch: int, num_parties: int) -> list[str]:
    """Why in-process validators cannot recompute this task's rounds (empty when they can)."""
    rule = traits(aggregator)
    out = []
    if rule.private:
        out.append(f"aggregator {rule.name!r} never reveals an update (secure aggregation or HE)")
    if rule.needs_root:
        out.append(f"aggregator {rule.name!r} reads the task owner's private root data")
    if rule.stateful:
        out.append(f"aggregator {rule.name!r} keeps state across rounds that validators do not hold")
    if dp:
        out.append("DP noise cannot be recomputed without knowing it (which would void the guarantee)")
    if num_parties > max_parties_per_batch:
        out.append(
            f"above {max_parties_per_batch} parties a round is folded batch by batch and no one holds all "
            "its updates"
        )
    return out


class Validator:
    """One in-process validator with its own copy of the rule, the optimizer and the model it last saw."""

    def __init__(
        self,
        identity: Identity,
        aggregator: Any,
        server_opt: Any,
        seed: int,
        layout: Layout,
        params: np.ndarray,
        opt_state: dict[str, np.ndarray],
    ) -> None:
        self.identity = identity
        self.aggregator = copy.deepcopy(aggregator)  # its own rule, not the aggregator's object
        self.server_opt, self.seed, self.layout = server_opt, seed, layout
        self.params = np.array(params, dtype=np.float32, copy=True)
        self.opt_state = {k: np.array(v, copy=True) for k, v in opt_state.items()}

    def recompute(self, record: RoundRecord) -> dict[str, str | None]:
        """The round's root, aggregate and model as this validator computes them; advances its model."""
        r, batch = record.round, record.batch
        aggregate = None
        if batch is not None and len(batch):
            ctx = RoundContext(self.seed, r, batch.party_ids, steps=batch.steps)
            try:
                aggregate = self.aggregator(batch.deltas, batch.weights, ctx)
            except (ValueError, ArithmeticError):
                aggregate = None  # the rule refuses the round: nothing is released
        if aggregate is not None:
            self.params, self.opt_state = self.server_opt.step(self.params, aggregate, self.opt_state)
        return {
            "updates_root": updates_root(batch, r, recompute=True),
            "aggregate_sha256": None if aggregate is None else params_hash(aggregate, self.layout),
            "model_sha256": params_hash(self.params, self.layout),
        }

    def review(self, record: RoundRecord, result: dict[str, Any], result_hash: str) -> tuple[str, dict]:
        """``("cosigned", body)`` when the recomputation matches ``result``, else ``("dissent", body)``."""
        mine = self.recompute(record)
        differ = [k for k, v in mine.items() if result.get(k) != v]
        if not differ:
            return "cosigned", {"result": result_hash, **mine}
        reason = "recomputed " + ", ".join(differ) + " differ from the round result's"
        return "dissent", {"result": result_hash, "reason": reason, "recomputed": mine}
