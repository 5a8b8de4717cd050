"""Slower peer-to-peer variants, behind ``pytest -m network_slow`` (CI runs them too): churn (a late
peer and a killed one) and a peer with no inbound port in a test-made network namespace.

Every process is started through :class:`LocalFederation` and ended by PID; the namespace fixture
removes what it made.
"""

import json
import signal
import socket
import time

import numpy as np
import pytest

from deai.net.launch import LocalFederation

from .gossip_reference import gossip_reference
from .test_gossip_rules import p2p_task
from .test_p2p_processes import final_models

pytestmark = [pytest.mark.network_slow, pytest.mark.slow]
pytest.importorskip("hivemind")


def test_a_late_peer_fetches_the_current_model_and_a_killed_peer_resumes(tmp_path):
    cfg = p2p_task(run={"rounds": 80, "checkpoint_every": 1}, network={"min_parties": 4})
    with LocalFederation(cfg, tmp_path / "p2p") as fed:
        fed.prepare()
        fed.start_peers(0, 1, 2, 3)
        path = fed.state_dir("party-00001") / "run" / "metrics.jsonl"
        end = time.monotonic() + 120
        while (not path.is_file() or len(path.read_text().splitlines()) < 10) and time.monotonic() < end:
            time.sleep(0.1)
        fed.start_peers(4)  # late: the others are past round 10
        fed.kill("party-00002", signal.SIGKILL)
        fed.start_peers(2)  # the same state directory
        for p in range(5):
            assert fed.procs[fed.party_name(p)].wait(300) == 0, fed.stderr(fed.party_name(p))
        late = fed.events("party-00004")
        again = fed.events("party-00002")
        models = final_models(fed)
        rounds = [
            json.loads(x)["round"]
            for x in (fed.state_dir("party-00004") / "run" / "metrics.jsonl").read_text().splitlines()
        ]
    import psutil

    # SIGKILL left the killed peer's DHT child and p2pd orphaned: the federation ended its whole group
    left = [p for p in psutil.process_iter(["cmdline"]) if str(tmp_path) in " ".join(p.info["cmdline"] or [])]
    assert not left, [p.info["cmdline"][:4] for p in left]
    fetched = [e for e in late if e["event"] == "fetched_state"]
    assert fetched and fetched[0]["round"] >= 10 and rounds[0] == fetched[0]["round"] + 1
    assert [e for e in again if e["event"] == "resumed" and e["round"] > 0]
    spread = np.linalg.norm(models - models.mean(axis=0), axis=1).max()
    assert spread < 1e-3 * np.linalg.norm(models.mean(axis=0))  # consensus rounds bring everyone together


def test_a_peer_with_no_inbound_port_gossips_on_the_connections_it_dials(tmp_path, namespace):
    """Peer 4 runs in the namespace and listens only on the namespace's own loopback: no other peer can
    open a connection to it (as behind a NAT or a firewall that admits no inbound). It dials out to the
    bootstrap peer through the veth link. Every exchange of every round must still happen, so all five
    models equal the in-process gossip reference bit for bit."""
    pytest.importorskip("hivemind")
    from .test_gossip_rules import p2p_task
    from .test_p2p_processes import final_models

    ns, _, host_ip = namespace
    cfg = p2p_task()
    with LocalFederation(cfg, tmp_path / "p2p") as fed:
        fed.prepare()
        public = {p: ["--listen", f"{host_ip}:0"] for p in range(4)}
        fed.start_peers(*range(4), extra=public)
        fed.start_peers(4, extra={4: ["--listen", "127.0.0.1:0"]}, wrap={4: ("ip", "netns", "exec", ns)})
        address = fed.state_dir("party-00004") / "address"
        end = time.monotonic() + 60
        while not address.is_file() and time.monotonic() < end:
            time.sleep(0.1)
        port = int(address.read_text().split(",")[0].split("/tcp/")[1].split("/")[0])
        with pytest.raises(OSError):  # while it runs: its port is closed to everyone outside it
            socket.create_connection((host_ip.rsplit(".", 1)[0] + ".2", port), timeout=3).close()
        for p in range(5):
            assert fed.procs[fed.party_name(p)].wait(240) == 0, fed.stderr(fed.party_name(p))
        got = final_models(fed)
        hidden = fed.events("party-00004")
    ref, _ = gossip_reference(cfg)
    np.testing.assert_array_equal(got, ref)
    listening = [e for e in hidden if e["event"] == "listening"][0]
    assert all("/ip4/127.0.0.1/" in m for m in listening["maddrs"])  # nothing another peer could dial
    # each round it heard from every neighbour (a stream cut short is absorbed by the other direction)
    assert all(not e["missing"] for e in hidden if e["event"] == "round")
    assert not [e for e in hidden if e["event"] == "refused"]


def test_two_peers_behind_nats_reach_each_other_through_a_circuit_relay(tmp_path, two_namespaces):
    """Peers 2 and 3 each run in a namespace of their own and listen only on its loopback: neither can
    open a connection to the other, nor can anyone to them (two sites behind two NATs). Each reserves a
    slot on a `deai relay` in the host and is reached through it. On the complete graph they are
    neighbours every round, so every round's exchange between them crosses the relay; all four models
    must equal the in-process gossip reference bit for bit."""
    import subprocess
    import sys

    cfg = p2p_task(
        graph="complete", run={"rounds": 8}, data={"num_parties": 4}, network={"join_timeout_s": 420}
    )
    relay_state = tmp_path / "relay"
    with LocalFederation(cfg, tmp_path / "p2p") as fed:
        fed.prepare()
        relay = subprocess.Popen(
            [sys.executable, "-m", "deai.cli", "relay", "--listen", "0.0.0.0:0", "--state", str(relay_state)],
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "relay.err", "wb"),  # noqa: SIM115 - closed with the process
            start_new_session=True,
        )
        fed.started.append(relay)  # ended by PID with the federation
        end = time.monotonic() + 60
        while not (relay_state / "address").is_file():
            assert relay.poll() is None and time.monotonic() < end, (tmp_path / "relay.err").read_text()
            time.sleep(0.1)
        first = (relay_state / "address").read_text().strip().split(",")[0]
        port, rid = first.split("/tcp/")[1].split("/")[0], first.split("/p2p/")[1]
        fed.address = f"/ip4/127.0.0.1/tcp/{port}/p2p/{rid}"  # the host's peers bootstrap from the relay
        fed.start_peers(0, 1, extra={p: ["--listen", "0.0.0.0:0"] for p in (0, 1)})
        for p, (ns, _, host_ip) in zip((2, 3), two_namespaces, strict=True):
            via = f"/ip4/{host_ip}/tcp/{port}/p2p/{rid}"
            fed.start_peers(
                p,
                extra={p: ["--listen", "127.0.0.1:0", "--connect", via, "--relay", via]},
                wrap={p: ("ip", "netns", "exec", ns)},
            )
        for p in range(4):
            assert fed.procs[fed.party_name(p)].wait(480) == 0, fed.stderr(fed.party_name(p))
        got = final_models(fed)
        events = {p: fed.events(fed.party_name(p)) for p in (2, 3)}
    ref, _ = gossip_reference(cfg)
    np.testing.assert_array_equal(got, ref)
    for p, ev in events.items():
        relayed = [e for e in ev if e["event"] == "relayed"]
        assert relayed and all("/p2p-circuit" in m for m in relayed[0]["maddrs"]), p
        listening = [e for e in ev if e["event"] == "listening"][0]
        assert all("/p2p-circuit/" in m for m in listening["maddrs"]), p  # nothing another peer could dial
        rounds = [e for e in ev if e["event"] == "round"]
        assert len(rounds) == 8 + cfg.network.consensus_rounds and not any(e["missing"] for e in rounds), p
        assert all(e["received"] == 3 for e in rounds), p  # the other NATed peer's model too, every round
    # NAT to NAT: one of the two opened the relayed connection, and both sent their models down it
    assert any(e["event"] == "dialed_through_relay" for ev in events.values() for e in ev)


def test_a_peer_that_sends_different_models_to_its_neighbours_is_proven_to_equivocate(tmp_path):
    """Peer 1 sends each neighbour a slightly different model. No single neighbour can tell, but the
    peers' own ledgers, read together, hold two headers peer 1 signed for different bodies in the same
    round: `deai ledger cross-check` names it, every round, with those headers as proof; its own log
    (which records the honest body) is shown false too. Every log still verifies on its own."""
    import subprocess
    import sys

    from deai.net.envelope import header_signed_by
    from deai.verify.gossip_audit import cross_check
    from deai.verify.identity import Identity
    from deai.verify.ledger import verify

    cfg = p2p_task(graph="complete", run={"rounds": 4}, data={"num_parties": 4})
    with LocalFederation(cfg, tmp_path / "p2p") as fed:
        fed.prepare()
        fed.start_peers(extra={1: ["--fault", "equivocate"]})
        for p in range(4):
            assert fed.procs[fed.party_name(p)].wait(240) == 0, fed.stderr(fed.party_name(p))
        runs = [fed.state_dir(fed.party_name(p)) / "run" for p in range(4)]
        liar = Identity.load(fed.out / "keys" / f"{fed.party_name(1)}.key").public_key
    assert all(verify(r / "ledger.db").valid for r in runs)
    audit = cross_check(runs)
    total = cfg.run.rounds + cfg.network.consensus_rounds
    equivocations = [f for f in audit.findings if f["offence"] == "equivocation"]
    assert [(f["party"], f["round"]) for f in equivocations] == [(1, r) for r in range(1, total + 1)]
    for f in equivocations:  # the proof stands on peer 1's public key alone
        a, b = f["proof"]
        assert a["header"]["body_sha256"] != b["header"]["body_sha256"]
        assert all(header_signed_by(x["header"], bytes.fromhex(x["signature"]), liar) for x in (a, b))
    assert {f["party"] for f in audit.findings} == {1}  # nobody honest is accused
    assert {f["offence"] for f in audit.findings} == {"equivocation", "false_log"}
    out = subprocess.run(
        [sys.executable, "-m", "deai.cli", "ledger", "cross-check", *map(str, runs)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    said = out.stdout + out.stderr
    assert out.returncode == 1 and "equivocation: party 1, round 1:" in said, said
