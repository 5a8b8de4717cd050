"""Signed updates and commit–reveal on the wire, without processes: bodies, a party node's answers, the
ledger's party keys from a roster, and what a networked task refuses."""

import numpy as np
import pytest

from deai.config import ConfigError, parse_config
from deai.messages import TrainTask, UpdateBatch
from deai.net.aggregator_node import network_limits
from deai.net.codec import WireError, decode, encode
from deai.net.envelope import Envelope
from deai.net.party_node import parse_fault
from deai.net.payloads import (
    COMMIT,
    UPDATE,
    commit_body,
    read_commit,
    read_update,
    signing_terms,
    task_body,
    update_body,
    update_salt,
)
from deai.params import Layout
from deai.verify.commit_reveal import Commit, RevealCheck, commitment
from deai.verify.identity import Identity
from deai.verify.ledger import read_entries
from deai.verify.run_ledger import RunLedger
from deai.verify.update_signing import UpdateVerifier

DIM = 8


def _task(round_=1):
    return TrainTask(round_, 0, np.zeros(DIM, np.float32), None, 7, np.array([0]), control=None)


def test_the_task_names_the_ledger_to_sign_for_and_a_bad_one_is_refused():
    assert signing_terms(task_body(_task())) == (None, False)
    assert signing_terms(task_body(_task(), "ledger-x", True)) == ("ledger-x", True)
    for bad in ({"ledger": "x"}, {"ledger": {"task": ""}}, {"ledger": {"task": 3}}):
        with pytest.raises(WireError, match="ledger must be"):
            signing_terms(encode(bad))


def test_a_commit_body_carries_the_commitment_and_its_signature_not_the_salt():
    c = Commit(b"c" * 32, b"s" * 64, b"salt" * 4)
    body = commit_body(c)
    assert read_commit(body) == (c.commitment, c.signature)
    assert "salt" not in decode(body)[0] and c.salt.hex() not in body.decode("latin-1")
    with pytest.raises(WireError, match="32 bytes"):
        read_commit(encode({"commitment": "ab", "signature": "cd" * 64}))
    with pytest.raises(WireError, match="in hex"):
        read_commit(encode({"commitment": "zz"}))
    batch = UpdateBatch(
        np.array([0]), np.array([1]), np.array([0]), np.ones((1, DIM), np.float32),
        np.array([3.0]), np.array([2]), {},
    )  # fmt: skip
    assert update_salt(update_body(batch, b"s" * 64)) is None
    assert update_salt(update_body(batch, b"s" * 64, b"salt" * 4)) == b"salt" * 4
    with pytest.raises(WireError, match="salt must be hex"):
        update_salt(encode({"salt": "not hex"}))


def test_lying_faults_parse_and_a_bad_one_names_them():
    assert parse_fault("forge-signature") == ("forge-signature", 0)
    assert parse_fault("break-commitment") == ("break-commitment", 0)
    with pytest.raises(ValueError, match="forge-signature or break-commitment"):
        parse_fault("forge")


class _Link:
    def __init__(self):
        self.sent = []

    def send(self, kind, round_, body):
        self.sent.append((kind, round_, body))


def _party_node(tmp_path, fault=None):
    from deai.engine.api import build_data, build_model
    from deai.net.party_node import PartyNode
    from deai.party import PartyProgram, PartyShards
    from deai.train import LocalSpec

    cfg = parse_config({"data": {"dataset": "digits", "num_parties": 4}, "ledger": {"sign_updates": True}})
    fed = build_data(cfg)
    shards = PartyShards.from_federation(fed)
    shards.ids = shards.ids[:1]
    model = build_model(cfg, fed)
    party = PartyProgram(model, shards)
    me = Identity.generate("party")
    node = PartyNode(
        cfg, party, LocalSpec(), None, tmp_path, lambda *a, **k: None, task_id="t", identity=me, fault=fault
    )
    return node, me, model.layout.dim


def _ask(node, dim, round_, commit):
    task = TrainTask(round_, round_ - 1, np.zeros(dim, np.float32), None, 0, np.array([0]), control=None)
    link = _Link()
    node._train(link, Envelope("train", round_, "agg", 1, task_body(task, "ledger-t", commit), {}))
    return link


def _reveal(node, round_):
    link = _Link()
    node._reveal(link, Envelope("reveal", round_, "agg", 2, b"", {}))
    return link


def test_a_party_node_commits_first_then_reveals_an_update_that_opens_its_commitment(tmp_path):
    node, me, dim = _party_node(tmp_path)
    link = _ask(node, dim, 1, commit=True)
    [(kind, r, body)] = link.sent
    assert (kind, r) == (COMMIT, 1)
    committed, sig = read_commit(body)
    assert _reveal(node, 2).sent == []  # nothing to reveal for a round it never committed to
    [(kind, r, update)] = _reveal(node, 1).sent
    assert (kind, r) == (UPDATE, 1)
    batch = read_update(update, dim)
    salt = update_salt(update)
    assert commitment(batch.rehash()[0], salt) == committed  # the reveal opens the commitment
    batch.commits = [Commit(committed, sig, salt)]
    keys = [me.public_key]
    assert not UpdateVerifier(keys, "ledger-t").bad_rows(batch).any()
    bad, reasons, _ = RevealCheck(keys, "ledger-t").check(batch)
    assert not bad.any() and reasons == {}
    assert UpdateVerifier(keys, "another-ledger").bad_rows(batch).all()  # signed for this ledger only
    # restarted from its state, the node still reveals exactly the update it committed to
    again, _, _ = _party_node(tmp_path)
    again.identity = me
    assert again.reveal_body == update and _reveal(again, 1).sent == [(UPDATE, 1, update)]


def test_a_forged_signature_and_a_broken_commitment_are_caught_by_the_servers_checks(tmp_path):
    forger, me, dim = _party_node(tmp_path / "f", fault="forge-signature")
    link = _ask(forger, dim, 3, commit=False)
    [(kind, _, body)] = link.sent
    assert kind == UPDATE
    assert UpdateVerifier([me.public_key], "ledger-t").bad_rows(read_update(body, dim)).all()
    breaker, me, dim = _party_node(tmp_path / "b", fault="break-commitment")
    committed, sig = read_commit(_ask(breaker, dim, 1, commit=True).sent[0][2])
    update = _reveal(breaker, 1).sent[0][2]
    batch = read_update(update, dim)
    batch.commits = [Commit(committed, sig, update_salt(update))]
    assert not UpdateVerifier([me.public_key], "ledger-t").bad_rows(batch).any()  # signed, but
    bad, reasons, evidence = RevealCheck([me.public_key], "ledger-t").check(batch)
    assert bad.all() and reasons == {0: "reveal_mismatch"} and evidence[0]["reason"] == "reveal_mismatch"


def test_the_ledger_registers_the_rosters_party_keys_and_a_changed_roster_cannot_resume(tmp_path):
    keys = [Identity.generate("party").public_key for _ in range(3)]
    layout = Layout.from_shapes({"w": (2,)})
    ledger = RunLedger(tmp_path, "cfg", "net", layout, parties=keys)
    assert ledger.party_keys.public_keys == keys
    ledger.close()
    assert not (tmp_path / "keys" / "parties.json").exists()
    joined = [e["body"] for e in read_entries(tmp_path / "ledger.db") if e["kind"] == "joined"]
    assert [(b["party"], b["public_key"]) for b in joined if b["role"] == "party"] == [
        (i, k.hex()) for i, k in enumerate(keys)
    ]
    RunLedger(tmp_path, "cfg", "net", layout, parties=keys).close()  # the same roster resumes
    other = [*keys[:2], Identity.generate("party").public_key]
    with pytest.raises(ConfigError, match="never registered some validator or party keys"):
        RunLedger(tmp_path, "cfg", "net", layout, parties=other)


BASE = {"data": {"dataset": "digits", "num_parties": 4}, "network": {"topology": "star"}}


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"network": {"topology": "hierarchical", "edges": 2}}, "an edge forwards one averaged update"),
        ({"network": {"topology": "p2p"}, "strategy": {}}, "per-update commitments need an aggregator"),
        ({"participation": {"async_buffer": 2}}, "one commit deadline cannot order"),
    ],
)
def test_signed_updates_run_on_a_star_only_and_a_network_task_says_why(extra, match):
    cfg = {**BASE, **extra, "ledger": {"sign_updates": True, "commit_reveal": True}}
    assert any(match in line for line in network_limits(parse_config(cfg)))


def test_a_star_of_signed_updates_can_run_and_commit_reveal_needs_signatures():
    signed = {**BASE, "ledger": {"sign_updates": True, "commit_reveal": True}}
    assert network_limits(parse_config(signed)) == []
    unsigned = {**BASE, "ledger": {"commit_reveal": True}}
    assert any("set ledger.sign_updates = true" in line for line in network_limits(parse_config(unsigned)))


def test_a_network_task_gets_the_simulators_ledger_rule_checks():
    """Signing under a private sum is refused on the wire as in the simulator (nothing individual to sign)."""
    cfg = {**BASE, "ledger": {"sign_updates": True}, "strategy": {"aggregator": "secagg"}}
    assert any("nothing to sign" in line for line in network_limits(parse_config(cfg)))
