"""Validator nodes and ledger replicas across real processes on loopback.

Each round's result is co-signed by validator processes that recompute it from the parties' own signed
update frames; every node (parties, validators) keeps a replica of the ledger, and ``deai ledger verify``
on any replica passes against the signed head. A validator that lies is refused by the aggregator; one
killed with SIGKILL and restarted takes up the co-signed model and goes on co-signing.
"""

import json
import signal
import subprocess
import sys

import pytest

from deai.net.launch import LocalFederation
from deai.verify.identity import Identity
from deai.verify.ledger import Head, read_entries, verify

from .test_star_processes import simulated_hash, task, wait_until

pytestmark = [pytest.mark.network, pytest.mark.slow]


def replicas(fed):
    """Every node's ledger file: the aggregator's run ledger, then each replica."""
    out = {"aggregator": fed.state_dir("aggregator") / "run" / "ledger.db"}
    for node in sorted((fed.out / "nodes").iterdir()):
        if (node / "ledger.db").is_file():
            out[node.name] = node / "ledger.db"
    return out


def run_to_end(fed, timeout=180):
    assert fed.wait_aggregator(timeout) == 0, fed.stderr("aggregator")
    for name, proc in fed.procs.items():
        if name != "aggregator":
            proc.wait(30)  # every node leaves once told to stop
    return fed.summary()


def reviewers(entries, round_, kind="cosigned"):
    return {e["signer"] for e in entries if e["kind"] == kind and e["round"] == round_}


def test_validator_processes_cosign_every_round_a_liar_is_refused_and_every_replica_verifies(tmp_path):
    cfg = task(rounds=3, data={"num_parties": 5}, ledger={"validators": 4})
    with LocalFederation(cfg, tmp_path / "fed") as fed:
        fed.prepare()
        fed.start_aggregator()
        fed.start_validators(extra={3: ["--fault", "lie"]})
        for p in range(5):
            fed.start_party(p)
        summary = run_to_end(fed)
        # validators only watch: the model is the simulator's, bit for bit
        assert summary["model_hash"] == simulated_hash(task(rounds=3, data={"num_parties": 5}))
        head = Head.from_dict(summary["ledger"])
        files = replicas(fed)
        assert len(files) == 1 + 5 + 4  # the aggregator, five parties, four validators
        for name, path in files.items():
            verdict = verify(path, head)
            assert verdict.valid, (name, verdict.first_bad)
            assert (verdict.entries, verdict.rounds, verdict.validators) == (head.entries, 3, 4)
        keys = [Identity.load(fed.out / "keys" / f"validator-{j}.key").id for j in range(4)]
        entries = read_entries(files["party-00002"])
        for r in (1, 2, 3):  # three honest co-signatures (the quorum of four), none from the liar
            assert reviewers(entries, r) == set(keys[:3])
        refused = [e for e in fed.events("aggregator") if e.get("reason") == "bad_review"]
        assert [(e["validator"], e["round"]) for e in refused] == [(3, 1), (3, 2), (3, 3)]
        assert all("co-signs other model_sha256" in e["detail"] for e in refused)
        # the command a participant runs on its own copy, with the head the aggregator sent it
        out = subprocess.run(
            [sys.executable, "-m", "deai.cli", "ledger", "verify", str(fed.state_dir("party-00004"))],
            capture_output=True,
            text=True,
            timeout=60,
        )
        said = out.stdout + out.stderr
        assert out.returncode == 0 and "matching the signed head" in said and "quorum: each of 3" in said, (
            said
        )


def test_a_validator_and_a_party_killed_mid_run_resume_and_their_replicas_catch_up(tmp_path):
    cfg = task(
        rounds=10,
        data={"num_parties": 4},
        ledger={"validators": 4},
        network={"min_round_s": 1.0, "reconnect_s": 60, "join_timeout_s": 90},
    )
    with LocalFederation(cfg, tmp_path / "fed") as fed:
        fed.prepare()
        fed.start_aggregator()
        fed.start_validators()
        for p in range(4):
            fed.start_party(p)

        def reviewed(name, r):
            return any(e.get("event") == "cosigned" and e.get("round") == r for e in fed.events(name))

        wait_until(lambda: reviewed("validator-0", 2), 120, "validator 0 to co-sign round 2")
        fed.kill("validator-0", signal.SIGKILL)
        fed.kill("party-00001", signal.SIGKILL)

        def skipped():
            return sum(e["event"] == "no_review" for e in fed.events("aggregator"))

        before = skipped()
        wait_until(lambda: skipped() > before, 60, "a round reviewed without validator 0")
        fed.start_validators(0)
        fed.start_party(1)
        summary = run_to_end(fed)
        assert summary["rounds"] == 10
        head = Head.from_dict(summary["ledger"])
        for name, path in replicas(fed).items():
            verdict = verify(path, head)
            assert verdict.valid and verdict.rounds == 10, (name, verdict.first_bad)
        events = fed.events("validator-0")
        restored = [e for e in events if e["event"] == "restored"]
        assert restored and restored[0]["reviewed_round"] == 2  # its state survived SIGKILL
        last = max(e["round"] for e in events if e["event"] == "cosigned")
        assert last == 10  # back in step: it co-signed the last round
        # it never reviewed a round twice, and missed rounds were taken up, not dissented on
        rounds = [e["round"] for e in events if e["event"] in ("cosigned", "dissent")]
        assert len(rounds) == len(set(rounds)) and not any(e["event"] == "dissent" for e in events)
        assert 3 not in rounds  # it was down for round 3 at least: it took up the ledger's co-signed model
        assert any(e["event"] == "caught_up" for e in events)
        key = Identity.load(fed.out / "keys" / "validator-0.key").id
        entries = read_entries(fed.state_dir("aggregator") / "run" / "ledger.db")
        assert 10 in {e["round"] for e in entries if e["kind"] == "cosigned" and e["signer"] == key}
        party = [e for e in fed.events("party-00001") if e["event"] == "ledger"]
        assert party[-1]["entries"] == head.entries  # the restarted party's replica caught up


def test_a_roster_without_the_tasks_validators_is_refused_by_name(tmp_path):
    cfg = task(rounds=2, data={"num_parties": 3}, ledger={"validators": 2})
    with LocalFederation(cfg, tmp_path / "fed") as fed:
        fed.prepare()
        roster = json.loads(fed.roster.read_text())
        del roster["validators"]
        fed.roster.write_text(json.dumps(roster))
        with pytest.raises(RuntimeError, match="lists 0 validators; the task's ledger.validators is 2"):
            fed.start_aggregator(timeout=60)


def test_a_three_level_tree_matches_the_flat_model_and_passes_the_ledger_down_level_by_level(tmp_path):
    """Edges under edges under the top (2 inner edges over 3 leaf edges over 6 parties): the weighted
    means of weighted means are the flat mean, up to float rounding. The top's validators recompute from
    the inner edges' signed frames; each edge's replica is its children's source, so the ledger reaches
    every node of the tree."""
    import numpy as np

    import deai
    from deai.params import load_params

    cfg = task(
        rounds=3,
        data={"num_parties": 6},
        ledger={"validators": 2},
        network={"topology": "hierarchical", "edges": [2, 3], "reconnect_s": 60, "join_timeout_s": 90},
    )
    with LocalFederation(cfg, tmp_path / "fed") as fed:
        fed.prepare()
        fed.start_aggregator()
        fed.start_validators()
        fed.start_edges()
        for p in range(6):
            fed.start_party(p)
        summary = run_to_end(fed)
        tree, _, _ = load_params(fed.state_dir("aggregator") / "run" / "final.npz")
        np.testing.assert_allclose(tree, deai.run(cfg, write=False).params, atol=1e-5)
        joined = {e["party"] for e in fed.events("aggregator") if e["event"] == "joined"}
        assert joined == {0, 1, -1, -2}  # the top talks to its two edges and the two validators only
        inner = [e for i in (0, 1) for e in fed.events(f"edge-{i}") if e["event"] == "group"]
        assert sorted(g["of"] for g in inner) == [1, 2]  # leaves 2, 3 under edge 0; leaf 4 under edge 1
        head = Head.from_dict(summary["ledger"])
        files = replicas(fed)
        names = ["aggregator", *(f"edge-{e}" for e in range(5)), "validator-0", "validator-1"]
        assert sorted(files) == sorted([*names, *(f"party-{p:05d}" for p in range(6))])
        for name, path in files.items():
            verdict = verify(path, head)
            assert verdict.valid and verdict.rounds == 3 and verdict.validators == 2, (
                name,
                verdict.first_bad,
            )
        entries = read_entries(files["party-00005"])
        assert all(len(reviewers(entries, r)) == 2 for r in (1, 2, 3))  # both validators, every round
