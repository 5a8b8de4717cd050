"""Real node processes on loopback: a star of party processes and an aggregator, with faults and liars.

Every test starts its processes through :class:`LocalFederation`, which ends each one by PID (SIGTERM,
then SIGKILL) when the test leaves, whatever happened. Loops that wait are bounded.
"""

import json
import signal
import time
import urllib.request

import numpy as np
import pytest

import deai
from deai.config import parse_config
from deai.net import envelope as E
from deai.net.launch import LocalFederation, launch
from deai.net.roster import Roster, task_id
from deai.net.star import CHUNK_BYTES, StarLink
from deai.verify.identity import Identity
from deai.verify.ledger import verify as verify_ledger

pytestmark = [pytest.mark.network, pytest.mark.slow]


def task(rounds=5, **sections):
    cfg = {
        "run": {"name": "net", "rounds": rounds, "seed": 7, "checkpoint_every": 1},
        "data": {"dataset": "digits", "num_parties": 10, "partition": "dirichlet", "alpha": 0.5},
        "model": {"kind": "logreg"},
        "strategy": {"algorithm": "fedavg", "lr": 0.3},
        "network": {"reconnect_s": 60, "join_timeout_s": 90},
    }
    for name, values in sections.items():
        cfg.setdefault(name, {}).update(values)
    return parse_config(cfg)


def simulated_hash(cfg):
    return deai.run(cfg, write=False).model_hash


def wait_until(condition, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def metrics(fed):
    path = fed.state_dir("aggregator") / "run" / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def verified(run_dir):
    return verify_ledger(run_dir / "ledger.db")


def test_a_fault_free_star_of_ten_party_processes_reaches_the_simulators_model_hash(tmp_path):
    cfg = task()
    summary = launch(cfg, tmp_path / "fed", timeout=240)
    assert summary["rounds"] == 5
    assert summary["model_hash"] == simulated_hash(cfg)  # the same code path, so anything else is a bug
    run = tmp_path / "fed" / "nodes" / "aggregator" / "run"
    assert verified(run).valid
    for p in range(10):  # each party kept only its own state, and answered every round once
        events = LocalFederation(cfg, tmp_path / "fed").events(f"party-{p:05d}")
        assert [e["round"] for e in events if e["event"] == "trained"] == [1, 2, 3, 4, 5]


def test_secure_aggregation_across_processes_survives_a_party_killed_after_masking(tmp_path):
    """SecAgg+'s phases are real message rounds; a party that dies after sending its masked input is
    recovered from the others' shares, so the sum is exact: the model equals the simulator's, no fault."""
    cfg = task(rounds=3, strategy={"aggregator": "secagg", "aggregator_options": {"clip": 1.0}})
    with LocalFederation(cfg, tmp_path / "fed") as fed:
        fed.prepare()
        fed.start_aggregator()
        for p in range(10):
            fed.start_party(p, *(["--fault", "crash-after:relayed_shares:3"] if p == 4 else []))
        assert fed.wait_aggregator(240) == 0, fed.stderr("aggregator")
        assert fed.procs["party-00004"].wait(30) == 137  # it died mid-protocol, as planned
        crash = [e for e in fed.events("party-00004") if e["event"] == "crash"]
        assert crash == [crash[0]] and crash[0]["round"] == 3 and crash[0]["after"] == "relayed_shares"
        summary = fed.summary()
        last = metrics(fed)[-1]
    assert last["round"] == 3 and last["participants"] == 10
    assert summary["model_hash"] == simulated_hash(cfg)


def test_a_party_killed_mid_run_rejoins_from_its_state_and_never_contributes_twice(tmp_path):
    cfg = task(rounds=16, network={"min_round_s": 0.4})
    with LocalFederation(cfg, tmp_path / "fed") as fed:
        fed.prepare()
        fed.start_aggregator()
        for p in range(10):
            fed.start_party(p, *(["--fault", "crash-after:train:3"] if p == 3 else []))
        assert fed.procs["party-00003"].wait(120) == 137
        fed.start_party(3)  # the same state directory and key
        assert fed.wait_aggregator(240) == 0, fed.stderr("aggregator")
        lines = metrics(fed)
        events = fed.events("party-00003")
    assert [m["round"] for m in lines] == list(range(1, 17))
    restored = [e for e in events if e["event"] == "restored"]
    assert restored and restored[0]["answered_round"] == 3
    trained = [e["round"] for e in events if e["event"] == "trained"]
    assert trained[:3] == [1, 2, 3] and len(trained) == len(set(trained))  # no round answered twice
    assert any(m["dropped"] for m in lines[3:]), "the dead party's rounds must show as dropouts"
    assert trained[-1] == 16 and lines[-1]["participants"] == 10  # back in by the end


def test_an_aggregator_killed_and_restarted_from_its_checkpoint_resumes_to_the_uninterrupted_model(tmp_path):
    cfg = task(rounds=12, network={"min_round_s": 0.3})
    with LocalFederation(cfg, tmp_path / "fed") as fed:
        fed.prepare()
        address = fed.start_aggregator()
        for p in range(10):
            fed.start_party(p)
        wait_until(lambda: len(metrics(fed)) >= 4, 120, "four finished rounds")
        fed.kill("aggregator", signal.SIGKILL)
        fed.start_aggregator(listen=address)  # the same port: parties redial it
        assert fed.wait_aggregator(240) == 0, fed.stderr("aggregator")
        summary = fed.summary()
        resumed = [e for e in fed.events("aggregator") if e["event"] == "resumed"]
        resent = sum(e["event"] == "re-sent" for p in range(10) for e in fed.events(f"party-{p:05d}"))
    assert resumed and resumed[0]["round"] >= 4
    assert summary["rounds"] == 12
    # a round the parties had answered before the crash is answered again with the same bytes
    assert summary["model_hash"] == simulated_hash(cfg), f"{resent} replies were re-sent"
    assert verified(tmp_path / "fed" / "nodes" / "aggregator" / "run").valid


def test_a_late_party_joins_mid_training_and_the_status_endpoint_reports(tmp_path):
    cfg = task(rounds=14, network={"min_parties": 9, "min_round_s": 0.3})
    with LocalFederation(cfg, tmp_path / "fed", status=True) as fed:
        fed.prepare()
        fed.start_aggregator()
        for p in range(9):
            fed.start_party(p)
        wait_until(lambda: len(metrics(fed)) >= 3, 120, "three rounds without party 9")
        status_event = [e for e in fed.events("aggregator") if e["event"] == "status"][0]
        with urllib.request.urlopen(f"http://{status_event['address']}/status", timeout=10) as r:
            status = json.loads(r.read())
        with urllib.request.urlopen(f"http://{status_event['address']}/metrics", timeout=10) as r:
            prom = r.read().decode()
        fed.start_party(9)
        assert fed.wait_aggregator(240) == 0, fed.stderr("aggregator")
        lines = metrics(fed)
        late = [e["round"] for e in fed.events("party-00009") if e["event"] == "trained"]
    assert status["role"] == "aggregator" and status["peers"] == 9 and status["round"] >= 3
    assert status["bytes_received"] > 0 and "deai_node_peers 9.0" in prom
    assert all(m["dropped"] == 1 for m in lines[:3])  # party 9 was asked and unreachable
    assert late and late[0] > 3 and lines[-1]["participants"] == 10


def test_hostile_frames_are_refused_by_name_and_training_goes_on_untouched(tmp_path):
    cfg = task(network={"max_message_mb": 1.0})
    with LocalFederation(cfg, tmp_path / "fed") as fed:
        fed.prepare()
        address = fed.start_aggregator()
        roster = Roster.load(fed.roster)
        tid = task_id(cfg)
        party0 = Identity.load(fed.out / "keys" / "party-00000.key")
        stranger = Identity.generate("party")
        agg = roster.aggregator_id
        gate = E.Gate(tid, party0.id, {agg: roster.aggregator}, 1 << 20)
        rogue = StarLink(address, gate, E.Sealer(stranger, tid), agg, lambda *a, **k: None)
        sealer0 = E.Sealer(party0, tid)
        captured = sealer0.seal("update", 1, agg, b"x")
        forged = bytearray(sealer0.seal("hello", 0, agg, b""))
        forged[-10] ^= 1  # inside the signature (the last 64 bytes: the body is empty)
        rogue.send("hello", 0, b"")  # an unknown key
        rogue.send_raw(E.Sealer(party0, "another-task").seal("hello", 0, agg, b""))
        rogue.send_raw(bytes(forged))
        rogue.send_raw(captured)  # valid, but no hello first
        rogue.send_raw(captured)  # the same frame again
        huge = sealer0.seal("update", 1, agg, bytes(10 * (1 << 20)))  # 10x network.max_message_mb
        rogue.send_raw(huge)
        want = {"unknown_sender", "wrong_task", "bad_signature", "no_hello", "replay", "oversized"}

        def refused():
            return {e["reason"] for e in fed.events("aggregator") if e["event"] == "refused"}

        wait_until(lambda: want <= refused(), 60, f"refusals {want}")
        rogue.close()
        for p in range(10):
            fed.start_party(p)
        assert fed.wait_aggregator(240) == 0, fed.stderr("aggregator")
        summary = fed.summary()
    assert summary["model_hash"] == simulated_hash(cfg)
    assert verified(tmp_path / "fed" / "nodes" / "aggregator" / "run").valid
    assert CHUNK_BYTES < len(huge)
    np.testing.assert_equal(summary["rounds"], 5)


def test_mutual_tls_admits_the_task_cas_nodes_and_shuts_out_a_foreign_certificate(tmp_path):
    from deai.net.tls import issue, make_ca

    cfg = task(rounds=4, network={"min_parties": 9, "reconnect_s": 3, "join_timeout_s": 60})
    with LocalFederation(cfg, tmp_path / "fed", tls=True) as fed:
        fed.prepare()
        make_ca(tmp_path / "other-ca")  # party 9 holds a certificate the task CA never signed
        issue(tmp_path / "other-ca", "party-00009", fed.out / "tls" / "party-00009")
        fed.start_aggregator()
        for p in range(10):
            fed.start_party(p)
        assert fed.wait_aggregator(240) == 0, fed.stderr("aggregator")
        assert fed.procs["party-00009"].wait(60) == 1  # it never got a stream, and gave up
        joined = {e["party"] for e in fed.events("aggregator") if e["event"] == "joined"}
        lines = metrics(fed)
    assert joined == set(range(9))
    assert all(m["dropped"] == 1 and m["participants"] == 9 for m in lines)


@pytest.mark.parametrize("edge_rule", ["mean", "secagg"])
def test_a_two_level_tree_of_edge_aggregators_matches_the_flat_star(tmp_path, edge_rule):
    """Parties dial edges, edges dial the top; the mean of the edges' weighted means is the flat weighted
    mean, so the model is the simulator's up to float rounding; with secagg no edge sees an update."""
    from deai.params import load_params

    options = {"clip": 1.0} if edge_rule == "secagg" else {}
    cfg = task(
        rounds=4,
        network={
            "topology": "hierarchical",
            "edges": 3,
            "edge_aggregator": edge_rule,
            "edge_aggregator_options": options,
        },
    )
    summary = launch(cfg, tmp_path / "fed", timeout=240)
    tree, _, _ = load_params(tmp_path / "fed" / "nodes" / "aggregator" / "run" / "final.npz")
    flat = deai.run(cfg, write=False)
    tol = 2e-3 if edge_rule == "secagg" else 1e-5  # SecAgg's fixed-point encoding, per round
    np.testing.assert_allclose(tree, flat.params, atol=tol)
    assert abs(summary["final_accuracy"] - flat.final_accuracy) < 0.01
    fed = LocalFederation(cfg, tmp_path / "fed")
    groups = [e for i in range(3) for e in fed.events(f"edge-{i}") if e["event"] == "group"]
    assert sorted(g["of"] for g in groups) == [3, 3, 4] and all(g["joined"] == g["of"] for g in groups)
    joined = {e["party"] for e in fed.events("aggregator") if e["event"] == "joined"}
    assert joined == {0, 1, 2}  # the top only ever talks to the three edges
