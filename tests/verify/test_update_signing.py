"""Per-update signatures: the party side signs each row, the server drops what does not verify."""

import numpy as np
import pytest

import deai.verify.update_signing as signing
from deai.engine.api import run
from deai.messages import TrainTask, UpdateBatch
from deai.verify.identity import KeyFileError
from deai.verify.ledger import Head, Ledger, read_entries, verify
from deai.verify.update_signing import PartyKeys, SigningParties, UpdateVerifier
from tests.conftest import make_config


class _Parties:
    """A party side that answers with fixed random rows (no training needed to test signatures)."""

    def train(self, task, party_ids, step_budget=None):
        rng = np.random.default_rng(task.round)
        n = len(party_ids)
        return UpdateBatch(
            party_ids=np.asarray(party_ids, dtype=np.int64),
            round=np.full(n, task.round, dtype=np.int64),
            base_version=np.zeros(n, dtype=np.int64),
            deltas=rng.normal(size=(n, 8)).astype(np.float32),
            weights=np.ones(n),
            steps=np.ones(n, dtype=np.int64),
        )


def _signed(keys, task_id="task-a", round_=3, ids=(0, 1, 2, 3)):
    task = TrainTask(round_, 0, np.zeros(8, np.float32), None, 0, np.array(ids))
    return SigningParties(_Parties(), keys, task_id).train(task, np.array(ids))


def test_honest_rows_pass_and_every_kind_of_forgery_is_dropped():
    keys = PartyKeys.generate(5)
    server = UpdateVerifier(keys.public_keys, "task-a")
    assert not server.bad_rows(_signed(keys)).any()

    altered = _signed(keys)
    altered.deltas[2, 0] += 1e-3  # changed in transit, after signing (the sender's cached digest is stale)
    assert server.bad_rows(altered).tolist() == [False, False, True, False]

    swapped = _signed(keys)
    swapped.signatures[0], swapped.signatures[1] = swapped.signatures[1], swapped.signatures[0]
    assert server.bad_rows(swapped).tolist() == [True, True, False, False]

    replayed = _signed(keys, round_=2)
    replayed.round[:] = 3  # a round-2 update passed off as round 3
    assert server.bad_rows(replayed).all()

    assert UpdateVerifier(keys.public_keys, "task-b").bad_rows(_signed(keys)).all()  # another task's
    unsigned = _signed(keys)
    unsigned.signatures = None
    assert server.bad_rows(unsigned).all()
    more = PartyKeys.generate(8)
    outsider = _signed(more, ids=(0, 7))  # party 7 is not in a federation of 5
    assert UpdateVerifier(more.public_keys[:5], "task-a").bad_rows(outsider).tolist() == [False, True]


def test_party_keys_round_trip_and_refuse_another_federation(tmp_path):
    keys = PartyKeys.generate(3)
    keys.save(tmp_path / "parties.json")
    assert (tmp_path / "parties.json").stat().st_mode & 0o777 == 0o600
    assert PartyKeys.load(tmp_path / "parties.json", 3).public_keys == keys.public_keys
    with pytest.raises(KeyFileError, match="holds 3 party keys"):
        PartyKeys.load(tmp_path / "parties.json", 4)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(KeyFileError, match="not a deai party key file"):
        PartyKeys.load(tmp_path / "bad.json", 3)


def test_an_update_changed_after_signing_is_rejected_and_the_ledger_names_it(tmp_path, monkeypatch):
    honest = signing.SigningParties.train

    def in_transit(self, task, party_ids, step_budget=None):
        batch = honest(self, task, party_ids, step_budget)
        batch.deltas[batch.party_ids == 4] *= 2.0  # a man in the middle rewrites party 4's update
        return batch

    monkeypatch.setattr(signing.SigningParties, "train", in_transit)
    cfg = make_config(run={"rounds": 2}, ledger={"sign_updates": True, "validators": 1})
    result = run(cfg, tmp_path / "run")
    path = tmp_path / "run" / "ledger.db"
    assert verify(path, Head.from_dict(result.ledger)).valid
    entries = read_entries(path)
    for e in (e for e in entries if e["kind"] == "round_result"):
        assert e["body"]["rejected"] == {"4": "bad_signature"} and 4 not in e["body"]["participants"]
    for e in (e for e in entries if e["kind"] == "commitments"):
        assert [leaf[0] for leaf in e["body"]["leaves"]] == [p for p in range(10) if p != 4]


def test_a_commitment_forged_by_the_aggregator_is_caught(tmp_path):
    cfg = make_config(run={"rounds": 2}, ledger={"sign_updates": True})
    run(cfg, tmp_path / "run")
    from deai.verify.identity import Identity

    keys = {i.id: i for i in (Identity.load(p) for p in (tmp_path / "run" / "keys").glob("*.key"))}
    entries = read_entries(tmp_path / "run" / "ledger.db")
    commitments = next(e for e in entries if e["kind"] == "commitments")
    commitments["body"]["leaves"][3][1] = "ab" * 32  # the aggregator swaps in an update party 3 never sent
    forged = Ledger(tmp_path / "forged.db", entries[0]["task"])
    for e in entries:
        forged.append(e["kind"], e["body"], keys[e["signer"]], e["round"])
    forged.close()
    verdict = verify(tmp_path / "forged.db")
    assert (
        not verdict.valid
        and "party 3's signature on its round-1 update does not verify" in verdict.first_bad["reason"]
    )
