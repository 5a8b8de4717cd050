"""``deai node``: one long-running process of a task: party, aggregator, edge, validator or peer.

Everything a node needs is on its command line: the task config, its data directory (a party's own
``party-NNNNN``, or for the aggregator the split's root with ``federation.json``), its key, the roster of
the task's keys, and where to listen or whom to dial. It keeps its own state directory, writes one
strict-JSON event per line to ``STATE/node.log`` and stderr, and serves ``/status`` and ``/metrics``
when given ``--status``. SIGTERM ends it cleanly: an aggregator keeps its last finished round (restart
it with the same state directory to resume), a party saves its state and leaves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deai.config import ConfigError, ExperimentConfig
from deai.net.envelope import Gate, Sealer
from deai.net.events import EventLog
from deai.net.roster import Roster, task_id
from deai.report.artifacts import atomic_write
from deai.verify.identity import Identity, KeyFileError

ADDRESS_FILE = "address"


@dataclass
class NodeArgs:
    role: str
    task: Path
    data: Path
    key: Path
    roster: Path
    state: Path
    listen: str | None = None
    connect: str | None = None
    status: str | None = None
    passphrase: str | None = None
    fault: str | None = None
    tls: Path | None = None  # a directory with ca.crt, node.crt, node.key (deai tls issue)
    relays: list[str] | None = None  # a p2p peer behind a NAT: circuit relays to be reached through


def _common(args: NodeArgs, cfg: ExperimentConfig) -> tuple[Identity, Roster, str, EventLog]:
    try:
        identity = Identity.load(args.key, args.passphrase)
    except KeyFileError as err:
        raise ConfigError(f"--key: {err}") from None
    try:
        roster = Roster.load(args.roster, cfg.data.num_parties)
    except ValueError as err:
        raise ConfigError(f"--roster: {err}") from None
    args.state.mkdir(parents=True, exist_ok=True)
    name = args.data.name if args.role in ("party", "peer") else args.key.stem
    log = EventLog(name, args.state / "node.log")
    return identity, roster, task_id(cfg), log


def _own_party(args: NodeArgs, cfg: ExperimentConfig) -> tuple[Any, int, Identity, Roster, str, EventLog]:
    """A party's own rows (validated), its index, and its key, which must be that index's in the roster."""
    from deai.party import PartyShards

    try:
        shards = PartyShards.from_party_dir(args.data)
    except ValueError as err:
        raise ConfigError(f"--data: {err}") from None
    index = int(shards.ids[0])
    identity, roster, tid, log = _common(args, cfg)
    if index >= len(roster.parties) or roster.parties[index] != identity.public_key:
        raise ConfigError(
            f"--key {args.key} is not party {index}'s key in the roster; each party uses its own"
        )
    return shards, index, identity, roster, tid, log


def run_node(args: NodeArgs, cfg: ExperimentConfig) -> dict[str, Any]:
    """Run the node until its task ends; a summary of what it did."""
    from deai.net.aggregator_node import check_network

    check_network(cfg)
    if args.relays and args.role != "peer":
        raise ConfigError(
            "--relay is for p2p peers behind a NAT (--role peer); star and tree nodes only dial out"
        )
    if args.role == "aggregator":
        return _aggregator(args, cfg)
    if args.role == "party":
        return _party(args, cfg)
    if args.role == "edge":
        return _edge(args, cfg)
    if args.role == "peer":
        return _peer(args, cfg)
    if args.role == "validator":
        return _validator(args, cfg)
    raise ConfigError(f"--role {args.role!r}: give party, aggregator, edge, validator or peer")


def _aggregator(args: NodeArgs, cfg: ExperimentConfig) -> dict[str, Any]:
    from deai.data.party_dirs import load_federation_index
    from deai.engine.api import build_model
    from deai.net.aggregator_node import run_aggregator
    from deai.net.star import StarHub
    from deai.net.star_transport import StarTransport
    from deai.net.status import StatusServer

    if not args.listen:
        raise ConfigError(
            "--listen HOST:PORT is needed by the aggregator (parties dial it; port 0: any free)"
        )
    try:
        index = load_federation_index(args.data)
    except ValueError as err:
        raise ConfigError(f"--data: {err}") from None
    if index.num_parties != cfg.data.num_parties:
        raise ConfigError(
            f"--data {args.data} holds {index.num_parties} parties; the task's data.num_parties is "
            f"{cfg.data.num_parties}: split the data with this task's config"
        )
    identity, roster, tid, log = _common(args, cfg)
    if identity.public_key != roster.aggregator:
        raise ConfigError(
            f"--key {args.key} is not the aggregator key the roster names ({roster.aggregator_id})"
        )
    if cfg.network.topology == "hierarchical":
        index = _top_index(index, roster)  # the top's children are the edges
    validators = _roster_validators(cfg, roster)
    max_bytes = int(cfg.network.max_message_mb * 2**20)
    gate = Gate(tid, identity.id, roster.keys(), max_bytes)
    status: dict[str, Any] = {"role": "aggregator", "round": 0}
    try:
        creds = None
        if args.tls is not None:
            from deai.net.tls import server_credentials

            creds = server_credentials(args.tls)
        hub = StarHub(
            args.listen,
            gate,
            Sealer(identity, tid),
            roster.children_of_top() | roster.validator_index(),
            log,
            status=status,
            credentials=creds,
        )
    except ValueError as err:
        raise ConfigError(str(err)) from None
    except (OSError, RuntimeError) as err:
        raise ConfigError(f"--listen {args.listen}: cannot listen there ({err})") from None
    hosts = [a.strip().rpartition(":")[0] for a in args.listen.split(",")]
    addresses = ",".join(f"{h}:{hub.port}" for h in hosts)
    atomic_write(args.state / ADDRESS_FILE, addresses + "\n")
    log("listening", address=addresses, task=tid, parties=index.num_parties)
    model = build_model(cfg, index)
    transport = StarTransport(
        hub,
        model.layout.dim,
        index.num_classes,
        log,
        round_timeout_s=cfg.network.round_timeout_s,
        min_round_s=cfg.network.min_round_s,
        asynchronous=cfg.participation.async_buffer is not None,
        keep_frames=bool(validators),
    )

    def snapshot() -> dict[str, Any]:
        t = hub.traffic
        return status | {
            "peers": len(hub.connected()),
            "bytes_sent": t.sent,
            "bytes_received": t.received,
            "refused": t.refused,
            "last_model_sha256": status.get("last_model_sha256"),
        }

    server = StatusServer(args.status, snapshot) if args.status else None
    if server is not None:
        log("status", address=server.address)
    try:
        summary = run_aggregator(
            cfg, index, model, transport, args.state / "run", log, validators, roster.parties
        )
    finally:
        transport.close()
        if server is not None:
            server.close()
        log("exit", bytes_sent=hub.traffic.sent, bytes_received=hub.traffic.received)
        log.close()
    return summary


def _party(args: NodeArgs, cfg: ExperimentConfig) -> dict[str, Any]:
    from deai.engine.api import build_model
    from deai.engine.assembly import party_budget, task_strategy
    from deai.net.party_node import PartyNode
    from deai.net.status import StatusServer
    from deai.party import PartyProgram

    if not args.connect:
        raise ConfigError("--connect HOST:PORT (the aggregator's address) is needed by a party node")
    shards, index, identity, roster, tid, log = _own_party(args, cfg)
    strategy, dp = task_strategy(cfg, cfg.data.num_parties)
    model = build_model(cfg, _Shape(shards))
    pv = cfg.privacy
    opacus = pv.example_dp_engine == "opacus"
    party = PartyProgram(
        model,
        shards,
        strategy.transforms,
        scaffold=strategy.control_variates,
        backend="opacus" if opacus else "vectorized",
        example_dp=(pv.example_noise_multiplier, pv.example_clip_norm) if opacus else None,
        budget=party_budget(cfg, dp),
    )
    max_bytes = int(cfg.network.max_message_mb * 2**20)
    parent_id, parent_key = roster.parent_of(index)  # the top, or this party's edge
    keys = {parent_id: parent_key}

    gate = Gate(tid, identity.id, keys, max_bytes)  # one gate across redials: replays stay refused
    connect = _dialer(args, identity, tid, gate, parent_id, log)

    ring = None if dp is None else dp.ring_noise
    try:
        node = PartyNode(
            cfg,
            party,
            strategy.local,
            connect,
            args.state,
            log,
            ring_noise=ring,
            fault=args.fault,
            task_id=tid,
            identity=identity,
        )
    except ValueError as err:
        raise ConfigError(str(err)) from None
    server = StatusServer(args.status, node.snapshot) if args.status else None
    if server is not None:
        log("status", address=server.address)
    log("dialing", aggregator=args.connect, party=index, task=tid)
    try:
        code = node.run()
    finally:
        party.close()
        if server is not None:
            server.close()
        log("exit")
        log.close()
    return node.snapshot() | {"exit": code}


def _dialer(args: NodeArgs, identity: Identity, tid: str, gate: Gate, parent_id: str, log: EventLog) -> Any:
    """A function that opens a new stream to the parent at ``--connect`` (over mutual TLS with ``--tls``);
    every stream shares ``gate``, so replays stay refused across redials."""
    from deai.net.star import StarLink

    creds = None
    if args.tls is not None:
        from deai.net.tls import channel_credentials

        try:
            creds = channel_credentials(args.tls)
        except ValueError as err:
            raise ConfigError(str(err)) from None

    def connect() -> StarLink:
        return StarLink(args.connect, gate, Sealer(identity, tid), parent_id, log, credentials=creds)

    return connect


def _roster_validators(cfg: ExperimentConfig, roster: Roster) -> list[bytes]:
    """The validator keys the task's ledger registers: the roster must list ``ledger.validators`` of them."""
    want = cfg.ledger.validators if cfg.ledger.enabled else 0
    have = list(roster.validators or [])
    if len(have) != want:
        raise ConfigError(
            f"--roster lists {len(have)} validators; the task's ledger.validators is {want}: list each "
            "validator node's public key in the roster (deai launch writes them)"
        )
    return have


def _validator(args: NodeArgs, cfg: ExperimentConfig) -> dict[str, Any]:
    """A validator: dials the top aggregator, recomputes every round it is shown, signs its review."""
    from deai.data.party_dirs import load_federation_index
    from deai.engine.api import build_model
    from deai.engine.assembly import task_strategy
    from deai.net.status import StatusServer
    from deai.net.validator_node import ValidatorNode

    if not args.connect:
        raise ConfigError("--connect HOST:PORT (the aggregator's address) is needed by a validator node")
    try:
        index = load_federation_index(args.data)
    except ValueError as err:
        raise ConfigError(f"--data: {err}") from None
    identity, roster, tid, log = _common(args, cfg)
    if identity.public_key not in _roster_validators(cfg, roster):
        raise ConfigError(f"--key {args.key} is not a validator key in the roster")
    if cfg.network.topology == "hierarchical":
        index = _top_index(index, roster)  # the top aggregates the edges' updates: so does its validator
    strategy, _ = task_strategy(cfg, index.num_parties)
    model = build_model(cfg, index)
    max_bytes = int(cfg.network.max_message_mb * 2**20) * max(1, cfg.data.num_parties)  # a round's updates
    gate = Gate(tid, identity.id, {roster.aggregator_id: roster.aggregator}, max_bytes)
    connect = _dialer(args, identity, tid, gate, roster.aggregator_id, log)

    try:
        node = ValidatorNode(
            cfg, identity, roster, model, strategy, connect, args.state, log, task_id=tid, fault=args.fault
        )
    except ValueError as err:
        raise ConfigError(str(err)) from None
    server = StatusServer(args.status, node.snapshot) if args.status else None
    log("dialing", aggregator=args.connect, task=tid)
    try:
        code = node.run()
    finally:
        if server is not None:
            server.close()
        log("exit")
        log.close()
    return node.snapshot() | {"exit": code}


def _top_index(index: Any, roster: Roster) -> Any:
    """The federation as the top of a tree sees it: one member per edge, holding its parties' examples."""
    import dataclasses

    import numpy as np

    if not roster.edges:
        raise ConfigError(
            "network.topology = 'hierarchical' needs a roster with edges (deai launch writes one)"
        )
    top = roster.child_edges(None)
    sizes = np.array([int(index.train_sizes[roster.parties_under(e)].sum()) for e in top], dtype=np.int64)
    names = [f"edge-{e}" for e in top]
    return dataclasses.replace(index, num_parties=len(top), party_names=names, train_sizes=sizes)


def _edge(args: NodeArgs, cfg: ExperimentConfig) -> dict[str, Any]:
    """An edge aggregator: waits for its own parties, then serves the top as one of its members."""
    from deai.aggregate import make_aggregator
    from deai.data.party_dirs import load_federation_index
    from deai.engine.api import build_model
    from deai.engine.assembly import task_strategy
    from deai.net.dialer import REPLICA_FILE
    from deai.net.edge_node import EdgeProgram
    from deai.net.ledger_feed import LedgerFeed
    from deai.net.party_node import PartyNode
    from deai.net.star import StarHub, StarLink
    from deai.net.star_transport import StarTransport
    from deai.verify.identity import key_id

    net = cfg.network
    if net.topology != "hierarchical":
        raise ConfigError("--role edge needs network.topology = 'hierarchical'")
    if not args.listen or not args.connect:
        raise ConfigError("an edge needs --listen (its parties dial it) and --connect (the top's address)")
    try:
        index = load_federation_index(args.data)
    except ValueError as err:
        raise ConfigError(f"--data: {err}") from None
    identity, roster, tid, log = _common(args, cfg)
    mine = [i for i, e in enumerate(roster.edges or []) if e.public_key == identity.public_key]
    if not mine:
        raise ConfigError(f"--key {args.key} is not an edge key in the roster")
    e = mine[0]
    inner = roster.child_edges(e)  # an inner edge of a deeper tree aggregates edges, not parties
    if inner:
        below = {roster.edges[c].id: roster.local_index(c) for c in inner}
        below_keys = {roster.edges[c].id: roster.edges[c].public_key for c in inner}
    else:
        below = {key_id(roster.parties[c]): c for c in roster.edges[e].children}
        below_keys = {key_id(roster.parties[c]): roster.parties[c] for c in roster.edges[e].children}
    children = sorted(below.values())
    max_bytes = int(net.max_message_mb * 2**20)
    gate = Gate(tid, identity.id, below_keys, max_bytes)
    try:
        hub = StarHub(args.listen, gate, Sealer(identity, tid), below, log)
    except (OSError, RuntimeError) as err:
        raise ConfigError(f"--listen {args.listen}: cannot listen there ({err})") from None
    host = args.listen.split(",")[0].rpartition(":")[0]
    atomic_write(args.state / ADDRESS_FILE, f"{host}:{hub.port}\n")
    log("listening", address=f"{host}:{hub.port}", edge=e, children=len(children), inner=bool(inner))
    model = build_model(cfg, index)
    transport = StarTransport(
        hub, model.layout.dim, index.num_classes, log, round_timeout_s=net.round_timeout_s
    )
    try:
        rule = make_aggregator(
            net.edge_aggregator,
            net.edge_aggregator_options,
            num_parties=len(children),
            f_max=cfg.strategy.f_max,
        )
    except (TypeError, ValueError) as err:
        raise ConfigError(f"network.edge_aggregator: {err}") from None
    have = hub.wait_for(len(children), net.join_timeout_s)
    log("group", joined=have, of=len(children))
    strategy, _ = task_strategy(cfg, cfg.data.num_parties)
    program = EdgeProgram(roster.local_index(e), children, model, rule, transport, cfg, log)
    parent_id, parent_key = roster.edge_parent(e)
    up_gate = Gate(tid, identity.id, {parent_id: parent_key}, max_bytes)

    def connect() -> StarLink:
        return StarLink(args.connect, up_gate, Sealer(identity, tid), parent_id, log)

    # the edge's replica is its parties' source: what the top sends it goes on down the tree
    feed = LedgerFeed(hub, lambda: args.state / REPLICA_FILE if cfg.ledger.enabled else None, log)
    hub.on_join = feed.on_join
    try:
        node = PartyNode(
            cfg,
            program,
            strategy.local,
            connect,
            args.state,
            log,
            task_id=tid,
            on_ledger=lambda head: feed.publish(head=head),
        )
    except ValueError as err:
        raise ConfigError(str(err)) from None
    node.status["role"] = "edge"
    try:
        code = node.run()
    finally:
        program.close()
        log("exit")
        log.close()
    return node.snapshot() | {"exit": code}


def _peer(args: NodeArgs, cfg: ExperimentConfig) -> dict[str, Any]:
    """A coordinatorless peer (network.topology = 'p2p'), gossiping over hivemind."""
    from deai import jsonio
    from deai.engine.api import build_model
    from deai.engine.assembly import task_strategy
    from deai.engine.driver import drive
    from deai.engine.rundir import RunDirectory
    from deai.net.peer_ledger import PeerLedger
    from deai.net.peer_node import GossipServer, GossipTransport, HivemindLink
    from deai.net.relay import check_relay_address
    from deai.params import params_hash, save_params
    from deai.party import PartyProgram

    if cfg.network.topology != "p2p":
        raise ConfigError("--role peer needs network.topology = 'p2p'")
    try:
        import hivemind  # noqa: F401
    except ImportError:
        raise ConfigError("--role peer needs hivemind: pip install 'deai[p2p]'") from None
    shards, index, identity, roster, tid, log = _own_party(args, cfg)
    attack, equivocate = None, args.fault == "equivocate"
    if args.fault and not equivocate:
        kind, _, scale = args.fault.partition(":")
        if kind != "sign_flip" or not scale.replace(".", "", 1).isdigit():
            raise ConfigError(
                f"--fault {args.fault!r}: a peer takes sign_flip:SCALE or equivocate (a Byzantine peer)"
            )
        attack = ("sign_flip", float(scale))
    strategy, _ = task_strategy(cfg, cfg.data.num_parties)
    model = build_model(cfg, _Shape(shards))
    party = PartyProgram(model, shards, strategy.transforms)
    max_bytes = int(cfg.network.max_message_mb * 2**20)
    gate = Gate(tid, identity.id, roster.keys(), max_bytes)
    initial = [a for a in (args.connect or "").split(",") if a]
    relays = [check_relay_address(a) for a in args.relays or []]
    if relays:
        log("reserving", relays=relays)
    link = HivemindLink(
        args.listen or "127.0.0.1:0", initial, log, relays=relays, relay_wait_s=cfg.network.join_timeout_s
    )
    atomic_write(args.state / ADDRESS_FILE, ",".join(link.maddrs) + "\n")
    log("listening", maddrs=link.maddrs, party=index, task=tid)
    server = GossipServer(
        cfg, index, model.init_params(cfg.run.seed), strategy.local, lambda w: party.evaluate(w).scores()
    )
    transport = GossipTransport(
        cfg,
        server,
        party,
        link,
        gate,
        Sealer(identity, tid),
        roster,
        tid,
        log,
        attack=attack,
        equivocate=equivocate,
    )
    rd = RunDirectory(args.state / "run")
    resumed = False
    if rd.config_path.is_file():

        def load(params: Any, arrays: dict[str, Any]) -> None:
            server.state.round, server.state.params = int(arrays["round"]), params.astype("float32")

        resumed = rd.restore(cfg, {}, model.layout, load) is not None
        log("resumed", round=server.state.round, checkpoint=resumed)
    else:
        rd.create(cfg)
    want = cfg.network.min_parties or cfg.data.num_parties
    ahead = transport.progress()
    if ahead > server.state.round:  # late, or back after a crash while the others went on: catch up from
        # the live peers' current model (its own checkpoint would be rounds behind what they expect)
        fetched = transport.fetch_state()
        if fetched is not None:
            server.state.round, server.state.params = fetched
            log("fetched_state", round=fetched[0], peers_ahead_at=ahead)
    transport.joined_at = server.state.round + 1
    have = transport.wait_for_members(1 if ahead else want, cfg.network.join_timeout_s)
    if resumed or ahead:
        transport.deadline.first_s = transport.deadline.floor_s  # the others are already running
    log("members", have=have, want=want)
    book = PeerLedger(rd.path, identity, roster, index, cfg.to_toml()) if cfg.ledger.enabled else None
    before = params_hash(server.state.params, model.layout)  # the model the next round starts from

    def record(rec: Any) -> None:
        nonlocal before
        after = params_hash(rec.params, model.layout)
        sent = transport.sent.pop(rec.round, None)
        if book is not None:  # before the checkpoint: a resumed peer replays, and skips, what is logged
            proofs = transport.mailbox.proofs_of(rec.round, rec.accepted.tolist())
            book.record(rec.round, before, after, sent, proofs)
        before = after
        rd.append_metrics(rec.metrics)
        rd.checkpoint(rec.round, rec.params, model.layout, {}, cfg, cfg.run.checkpoint_every)
        log("round", **{k: rec.metrics[k] for k in ("round", "received", "missing") if k in rec.metrics},
            accuracy=rec.metrics.get("accuracy"))  # fmt: skip

    try:
        drive(server, transport, cfg.run.rounds + cfg.network.consensus_rounds, [record])
        params = server.state.params
        save_params(rd.path / "final.npz", params, model.layout)
        scores = party.evaluate(params).scores()
        digest = params_hash(params, model.layout)
        summary = {"party": index, "rounds": server.state.round, "model_hash": digest, **scores}
        if book is not None:
            summary["ledger"] = book.head().as_dict()
        rd.write_text("summary.json", jsonio.dumps(summary, indent=2))
        time.sleep(3.0)  # keep answering: slower neighbours may still want this peer's last model
    finally:
        link.close()
        party.close()
        if book is not None:
            book.close()
        log("exit")
        log.close()
    return summary


class _Shape:
    """The data's shape as the model builder reads it, from a party's own rows."""

    def __init__(self, shards: Any) -> None:
        self.num_features = int(shards.x_train.shape[1])
        self.num_classes = int(shards.num_classes)
        self.image_shape = shards.image_shape
