"""The aggregator node: the simulator's server program, driven by the one round loop over a star of parties.

It holds no party's rows: the task config, the split's ``federation.json`` (party names, declared example
counts, the data's shape), the roster and its own key. Its run directory is a normal deai run directory
(config, metrics.jsonl, checkpoints, ledger, report, summary.json), so ``deai ledger verify``,
``deai run --resume``'s checks and the report work on it unchanged; restarted with the same state
directory, it resumes from its last checkpoint.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from deai.aggregate.base import traits
from deai.config import ConfigError, ExperimentConfig
from deai.data.party_dirs import FederationIndex
from deai.engine.assembly import server_program, task_strategy
from deai.engine.federation import Federation, SimulationState
from deai.models.base import Model
from deai.net.star_transport import StarTransport
from deai.server.registry import PartyRegistry
from deai.state import flatten_tree, unflatten_tree


def network_limits(cfg: ExperimentConfig) -> list[str]:
    """What a network run of ``cfg`` cannot do yet, one fix per line (empty: it can run on nodes)."""
    out = []
    if cfg.attack.kind != "none":
        out.append(
            "attack.kind: simulated attacks wrap the simulator's transport; on a network a Byzantine "
            "party is a node that runs other code. Set attack.kind = 'none'"
        )
    part, net = cfg.participation, cfg.network
    if part.deadline is not None or part.dropout_rate > 0:
        out.append(
            "participation.deadline / dropout_rate are simulated clocks; on a network real nodes are slow "
            "or leave, and network.round_timeout_s bounds a round. Remove them"
        )
    if cfg.strategy.class_weighting == "balanced":
        out.append(
            "strategy.class_weighting = 'balanced' needs the federation's class counts, which no node "
            "holds yet (a secure sum of histograms is future work); remove it"
        )
    if cfg.strategy.personalization_epochs > 0:
        out.append("strategy.personalization_epochs: personalization runs in the simulator only; set it to 0")
    led = cfg.ledger
    if led.enabled and (led.sign_updates or led.commit_reveal):
        if net.topology != "star":
            why = {
                "hierarchical": "an edge forwards one averaged update, not each party's signed one",
                "p2p": "a p2p peer signs every frame and logs each neighbour's signed frame in its own "
                "ledger (deai ledger cross-check), but per-update commitments need an aggregator",
            }[net.topology]
            out.append(
                f"ledger.sign_updates / commit_reveal on network.topology {net.topology!r}: {why}; use "
                "network.topology = 'star' or set them off"
            )
        elif part.async_buffer is not None:
            out.append(
                "ledger.sign_updates / commit_reveal with participation.async_buffer: FedBuff's updates "
                "answer different rounds, which one commit deadline cannot order; remove async_buffer"
            )
        elif led.commit_reveal and cfg.strategy.aggregator == "secagg":
            out.append(
                "ledger.commit_reveal under secagg runs in the simulator only so far (over the wire the "
                "commitments to masked inputs are not carried yet); set ledger.commit_reveal = false"
            )
        else:
            from deai.aggregate import aggregator_class
            from deai.engine.api import ledger_rule_limits  # the simulator's own checks

            out += ledger_rule_limits(led, aggregator_class(cfg.strategy.aggregator or "mean"))
    if led.enabled and led.validators:
        out += _validator_limits(cfg)
    if cfg.valuation.method != "none" or cfg.incentives.reward_per_round > 0:
        out.append("valuation and incentives run in the simulator only so far; set valuation.method = 'none'")
    if net.topology == "hierarchical":
        if net.edge_levels[-1] > cfg.data.num_parties:
            out.append(
                f"network.edges = {net.edges}: {net.edge_levels[-1]} leaf edges for "
                f"{cfg.data.num_parties} parties; lower it"
            )
        if len(net.edge_levels) > 1 and net.edge_aggregator in ("secagg", "he_ckks"):
            out.append(
                f"network.edge_aggregator {net.edge_aggregator!r} needs parties below it, and an inner edge "
                "of a deeper tree has edges below it: use one level of edges, or a mean or robust rule"
            )
        if cfg.privacy.mode != "none" or cfg.strategy.aggregator in ("secagg", "he_ckks"):
            out.append(
                "network.topology 'hierarchical': DP and a private sum at the top are not wired through "
                "edges yet; set network.edge_aggregator = 'secagg' to hide each party's update from its edge"
            )
        if cfg.strategy.algorithm in ("scaffold", "fednova") or part.async_buffer is not None:
            out.append(
                "network.topology 'hierarchical' forwards one averaged delta per edge: scaffold, fednova "
                "and FedBuff need each party's own state upstream; use fedavg, fedprox or a fedopt server"
            )
    if net.topology == "p2p":
        if cfg.privacy.mode != "none" or cfg.strategy.aggregator is not None:
            out.append(
                "network.topology 'p2p': each peer mixes with network.gossip_rule; strategy.aggregator and "
                "user-level DP need a server. Remove them"
            )
        if cfg.strategy.algorithm not in ("fedavg", "fedprox") or part.async_buffer is not None:
            out.append("network.topology 'p2p' runs fedavg or fedprox local training (no server optimizer)")
        if part.fraction is not None or part.count is not None:
            out.append(
                "network.topology 'p2p': every live peer trains every round; remove participation sampling"
            )
    if cfg.data.effective_holdout > 0:
        out.append(
            "data.holdout_fraction: a network run is scored by federated evaluation on the parties' own "
            "test rows; set data.holdout_fraction = 0"
        )
    return out


def _validator_limits(cfg: ExperimentConfig) -> list[str]:
    from deai.verify.validator import validator_limits

    if cfg.network.topology == "p2p":
        return ["ledger.validators: a p2p task has no aggregator whose round results they co-sign; set 0"]
    if cfg.participation.async_buffer is not None:
        return [
            "ledger.validators: FedBuff weighs updates by staleness at release; validators recompute "
            "synchronous rounds only; remove participation.async_buffer or set ledger.validators = 0"
        ]
    strategy, dp = task_strategy(cfg, cfg.data.num_parties)
    limits = validator_limits(
        strategy.aggregator, dp=dp is not None, max_parties_per_batch=1 << 30, num_parties=1
    )
    return [f"ledger.validators: {why}; set ledger.validators = 0" for why in limits]


def check_network(cfg: ExperimentConfig) -> None:
    limits = network_limits(cfg)
    if limits:
        raise ConfigError("this task cannot run on nodes yet:\n  - " + "\n  - ".join(limits))


class _Unseen:
    """The aggregator holds no party program: each party node enforces and reports its own budget."""

    budget = None


class NetworkFederation(Federation):
    """One task's server program over a star transport of party nodes."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        model: Model,
        index: FederationIndex,
        transport: StarTransport,
        validators: list[bytes] | None = None,
        party_keys: list[bytes] | None = None,
    ) -> None:
        self.cfg, self.model, self.transport = cfg, model, transport
        self.party_public_keys = party_keys  # [ledger] sign_updates: each party node signs with its own
        self.remote_validators = None  # the ledger asks these validator nodes to co-sign every round
        if validators:
            from deai.net.remote_validators import RemoteValidators

            self.remote_validators = RemoteValidators(transport, validators, transport.log)
        self.strategy, self.dp = task_strategy(cfg, index.num_parties)
        if traits(self.strategy.aggregator).needs_root:
            raise ConfigError(
                f"strategy.aggregator {cfg.strategy.aggregator!r} needs the task owner's root set, which an "
                "aggregator node does not load yet; choose a root-free rule"
            )
        named = PartyRegistry(index.party_names)
        registry = named if len(named) == index.num_parties else PartyRegistry.dense(index.num_parties)
        self.server = server_program(
            cfg,
            model,
            self.strategy,
            self.dp,
            registry,
            self._evaluate,
            index.train_sizes,
            exchange=transport.exchange,
        )
        self.state = SimulationState(self.server)
        if self.remote_validators is not None:
            self.remote_validators.server_state = self.server.state
        self.party = _Unseen()

    def bind_ledger(self, task: str) -> None:
        """The run's ledger exists: party nodes sign their updates (and commitments) for ``task``."""
        self.transport.ledger_task = task if self.cfg.ledger.sign_updates else None
        self.transport.commit_reveal = self.cfg.ledger.commit_reveal

    def _evaluate(self, params: np.ndarray) -> dict[str, float]:
        """Federated evaluation; nothing (the round's line has no scores) when no party answered."""
        counts = self.transport.evaluate(params)
        return {} if counts is None else counts.scores()

    def state_arrays(self) -> dict[str, np.ndarray]:
        return flatten_tree({"server": self.server.state_tree()})

    def required_state(self) -> dict[str, np.ndarray]:
        return self.state_arrays()

    def load_state(self, params: np.ndarray, arrays: dict[str, np.ndarray]) -> None:
        self.server.load_tree(params, unflatten_tree(arrays)["server"])

    def close(self) -> None:
        """Left open after the rounds: the final ledger head still goes out; the node closes the hub."""

    def example_epsilon(self) -> float | None:
        return None  # each party node counts its own example-level epsilon (its status endpoint)


def run_aggregator(
    cfg: ExperimentConfig,
    index: FederationIndex,
    model: Model,
    transport: StarTransport,
    run_dir: Path,
    log: Any,
    validators: list[bytes] | None = None,
    party_keys: list[bytes] | None = None,
) -> dict[str, Any]:
    """Wait for the parties (and validators), then run (or resume) the task into ``run_dir``, sending
    every node the ledger entries it lacks after each round; the run's summary."""
    from deai.engine.api import execute
    from deai.engine.rundir import RunDirectory
    from deai.net.ledger_feed import LedgerFeed

    t0 = time.perf_counter()
    fed = NetworkFederation(cfg, model, index, transport, validators, party_keys)
    feed = LedgerFeed(transport.hub, lambda: Path(run_dir) / "ledger.db" if cfg.ledger.enabled else None, log)
    transport.hub.on_join = feed.on_join
    rd = RunDirectory(run_dir)
    if rd.config_path.is_file():
        restored = rd.restore(cfg, fed.required_state(), model.layout, fed.load_state)
        fed.state.history = rd.restore_metrics(fed.state.round)
        log("resumed", round=fed.state.round, checkpoint=restored is not None)
    else:
        rd.create(cfg)
    net = cfg.network
    need = net.min_parties or index.num_parties
    have = transport.hub.wait_for(need, net.join_timeout_s)
    log("starting", round=fed.state.round + 1, parties=have, waited_for=need)
    if have < need:
        transport.close()
        raise ConfigError(
            f"only {have} of the {need} parties network.min_parties asks for joined within "
            f"network.join_timeout_s = {net.join_timeout_s:g} s; start more party nodes or lower min_parties"
        )
    if validators:
        got = transport.hub.wait_for(len(validators), net.join_timeout_s, validators=True)
        log("validators", joined=got, of=len(validators))
        st = fed.server.state  # restored by now: where the first round (of this process) starts
        fed.remote_validators.remember(st.params, st.opt_state)

    traffic = transport.hub.traffic
    seen = [traffic.sent, traffic.received]

    def on_round(m: dict[str, Any]) -> None:
        transport.hub.status.update(round=m["round"], accuracy=m.get("accuracy"))
        out, into = traffic.sent - seen[0], traffic.received - seen[1]
        seen[:] = [traffic.sent, traffic.received]
        fields = {k: m[k] for k in ("round", "participants", "dropped", "accuracy") if k in m}
        log("round", **fields, bytes_out=out, bytes_in=into)
        feed.publish(round_=m["round"])  # the round's ledger entries are committed by now

    result = execute(cfg, fed, rd, t0, on_round)
    summary = result.summary()
    if summary.get("ledger"):
        head = {k: v for k, v in summary["ledger"].items() if k != "path"}
        feed.publish(head=head, round_=fed.state.round)
    return summary
