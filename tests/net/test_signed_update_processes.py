"""Per-update signatures and commit–reveal between real processes on loopback.

Each party node signs its update with its own key for the run's ledger, and under commit–reveal first
sends only a signed commitment; the aggregator asks for the updates once the commit deadline has passed.
The ledger's ``commitments`` entries then prove which party sent which update. A party that signs for
the wrong round is rejected (``bad_signature``); one that reveals another update than it committed to is
rejected and slashed with evidence anyone can check against its public key alone; one that dies between
commit and reveal drops out of that round and comes back for the next.
"""

import subprocess
import sys

import pytest

from deai.net.launch import LocalFederation
from deai.verify.commit_reveal import mismatch_evidence
from deai.verify.commitments import check
from deai.verify.identity import Identity
from deai.verify.ledger import Head, read_entries, verify

from .test_star_processes import metrics, simulated_hash, task

pytestmark = [pytest.mark.network, pytest.mark.slow]

SIGNED = {"sign_updates": True, "commit_reveal": True}


def party_keys(fed, n):
    return {p: Identity.load(fed.out / "keys" / f"{fed.party_name(p)}.key").public_key for p in range(n)}


def ledger_verify(run_dir):
    out = subprocess.run(
        [sys.executable, "-m", "deai.cli", "ledger", "verify", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.returncode, out.stdout + out.stderr


def test_honest_party_nodes_commit_then_reveal_signed_updates_and_reach_the_simulators_model(tmp_path):
    cfg = task(rounds=3, data={"num_parties": 4}, ledger=SIGNED)
    with LocalFederation(cfg, tmp_path / "fed") as fed:
        fed.prepare()
        fed.start_aggregator()
        for p in range(4):
            fed.start_party(p)
        assert fed.wait_aggregator(180) == 0, fed.stderr("aggregator")
        summary = fed.summary()
        keys = party_keys(fed, 4)
        events = {p: [e["event"] for e in fed.events(fed.party_name(p))] for p in range(4)}
    # signatures and commitments change no update: the model is the unsigned simulator's, bit for bit
    assert summary["model_hash"] == simulated_hash(task(rounds=3, data={"num_parties": 4}))
    run = tmp_path / "fed" / "nodes" / "aggregator" / "run"
    entries = read_entries(run / "ledger.db")
    task_id = entries[0]["task"]
    parties = [e["body"] for e in entries if e["kind"] == "joined" and e["body"]["role"] == "party"]
    joined = {b["party"]: bytes.fromhex(b["public_key"]) for b in parties}
    assert joined == keys  # the ledger registered the roster's keys: the nodes' own, not keys it made
    assert not (run / "keys" / "parties.json").exists()  # the aggregator never held a party's private key
    commitments = [e for e in entries if e["kind"] == "commitments"]
    assert [e["round"] for e in commitments] == [1, 2, 3]
    for e in commitments:
        assert sorted(leaf[0] for leaf in e["body"]["leaves"]) == [0, 1, 2, 3]
        assert check(e["body"], task_id, e["round"], keys, committed=True) is None
    for p in range(4):  # each round: the commitment went out before the update did
        rounds = [x for x in events[p] if x in ("committed", "revealed")]
        assert rounds == ["committed", "revealed"] * 3, (p, events[p])
    code, said = ledger_verify(run)
    assert code == 0 and "matching the signed head" in said, said


def test_a_forger_and_a_breaker_are_rejected_the_breaker_slashed_a_crash_between_phases_drops_a_round(
    tmp_path,
):
    cfg = task(rounds=6, data={"num_parties": 4}, ledger=SIGNED, network={"min_round_s": 1.0})
    with LocalFederation(cfg, tmp_path / "fed") as fed:
        fed.prepare()
        fed.start_aggregator()
        fed.start_party(0)
        fed.start_party(1, "--fault", "forge-signature")
        fed.start_party(2, "--fault", "break-commitment")
        crasher = fed.start_party(3, "--fault", "crash-after:train:2")  # dies once its commitment is out
        assert crasher.wait(120) == 137
        fed.start_party(3)  # restarted from its state: it answered round 2, so it comes back for later ones
        assert fed.wait_aggregator(180) == 0, fed.stderr("aggregator")
        summary = fed.summary()
        keys = party_keys(fed, 4)
        unrevealed = [e for e in fed.events("aggregator") if e["event"] == "unrevealed"]
    run = tmp_path / "fed" / "nodes" / "aggregator" / "run"
    entries = read_entries(run / "ledger.db")
    task_id = entries[0]["task"]
    results = {e["round"]: e["body"] for e in entries if e["kind"] == "round_result"}
    assert sorted(results) == [1, 2, 3, 4, 5, 6]
    for r, body in results.items():
        assert body["rejected"] == {"1": "bad_signature", "2": "reveal_mismatch"}, (r, body)
        assert 0 in body["participants"] and 1 not in body["participants"] and 2 not in body["participants"]
    assert 3 not in results[2]["participants"]  # committed, then died before it could reveal
    assert [(e["round"], e["parties"]) for e in unrevealed] == [(2, [3])]
    assert any(3 in results[r]["participants"] for r in (4, 5, 6))  # back after its restart
    slashes = [e for e in entries if e["kind"] == "slash"]
    assert [(e["round"], e["body"]["party"]) for e in slashes] == [(r, 2) for r in range(1, 7)]
    for e in slashes:  # the proof needs only the breaker's public key: its two signatures and the salt
        assert mismatch_evidence(task_id, e["round"], keys[2], e["body"]) is None
    rows = [m for m in metrics(fed) if "participants" in m]
    assert [m["round"] for m in rows] == [1, 2, 3, 4, 5, 6]
    head = Head.from_dict(summary["ledger"])
    assert verify(run / "ledger.db", head).valid
    code, said = ledger_verify(run)
    assert code == 0, said
