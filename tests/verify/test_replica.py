"""A node's ledger replica stores only what extends the chain as ``verify`` would; entries signed elsewhere.

The truth each test checks against is the full :func:`verify` of a ledger a real run wrote (and, for a
refused batch, the file's own bytes: nothing of it is written).
"""

import hashlib
import json
import sqlite3

import pytest

from deai.config import parse_config
from deai.engine.api import run
from deai.verify.identity import Identity
from deai.verify.ledger import Head, Ledger, LedgerError, read_rows, signed_entry, verify
from deai.verify.replica import LedgerReplica, ReplicaRefused
from tests.conftest import make_config


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A run with two in-process validators: its ledger, config hash and head."""
    out = tmp_path_factory.mktemp("ledger") / "run"
    cfg = parse_config(make_config(run={"rounds": 3, "seed": 0}, ledger={"validators": 2}))
    result = run(cfg, out)
    return (
        out / "ledger.db",
        hashlib.sha256(cfg.to_toml().encode()).hexdigest(),
        Head.from_dict(result.ledger),
    )


def test_a_replica_fed_in_pieces_verifies_against_the_runs_head(tmp_path, written):
    path, config, head = written
    rows = read_rows(path)
    replica = LedgerReplica(tmp_path / "replica.db", config)
    assert replica.extend(rows[:5]) == 5
    assert replica.extend(rows[:9]) == 4  # the held part sent again is skipped, not doubled
    assert replica.extend(rows[9:]) == len(rows) - 9
    assert len(replica) == head.entries
    assert replica.settled_result()["model_sha256"] == json.loads(rows[-3][2])["body"]["model_sha256"]
    replica.close()
    verdict = verify(tmp_path / "replica.db", head)
    assert verdict.valid and verdict.rounds == 3 and verdict.validators == 2
    assert len(LedgerReplica(tmp_path / "replica.db", config)) == head.entries  # reopened: re-checked


def test_a_result_short_of_its_quorum_is_not_settled(tmp_path, written):
    path, config, _ = written
    rows = read_rows(path)
    last_result = max(i for i, r in enumerate(rows) if json.loads(r[2])["kind"] == "round_result")
    replica = LedgerReplica(tmp_path / "replica.db", config)
    replica.extend(rows[: last_result + 2])  # the result and one of its two co-signatures
    assert replica.settled_result() is None
    replica.extend(rows[last_result + 2 :])
    assert replica.settled_result() is not None


def _text(row, **changes):
    entry = json.loads(row[2])
    entry["body"] = {**entry["body"], **changes}
    return json.dumps(entry, sort_keys=True, separators=(",", ":"))


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda rows: rows[:3] + rows[4:], "a gap"),
        (lambda rows: [*rows[:6], [6, rows[6][1], _text(rows[6], released=False), rows[6][3]]], "hash"),
        (lambda rows: [*rows[:6], [*rows[6][:3], "00" * 64]], "signature"),
    ],
    ids=["gap", "altered", "forged_signature"],
)
def test_a_batch_with_one_bad_entry_is_refused_whole_and_nothing_is_written(
    tmp_path, written, damage, reason
):
    path, config, _ = written
    replica = LedgerReplica(tmp_path / "replica.db", config)
    replica.extend(read_rows(path)[:2])
    before = sorted(sqlite3.connect(tmp_path / "replica.db").execute("SELECT seq, hash FROM entries"))
    with pytest.raises(ReplicaRefused, match=reason):
        replica.extend(damage(read_rows(path))[2:])
    assert len(replica) == 2
    after = sorted(sqlite3.connect(tmp_path / "replica.db").execute("SELECT seq, hash FROM entries"))
    assert after == before


def test_a_fork_and_another_tasks_chain_are_refused(tmp_path, written):
    path, config, _ = written
    rows = read_rows(path)
    replica = LedgerReplica(tmp_path / "replica.db", config)
    replica.extend(rows[:4])
    with pytest.raises(ReplicaRefused, match="fork"):
        replica.extend([[3, "ab" * 32, rows[3][2], rows[3][3]]])
    other = LedgerReplica(tmp_path / "other.db", "0" * 64)
    with pytest.raises(ReplicaRefused, match="another config"):
        other.extend(rows)
    assert len(other) == 0


def test_a_replica_damaged_on_disk_is_named_when_the_node_opens_it(tmp_path, written):
    path, config, _ = written
    replica = LedgerReplica(tmp_path / "replica.db", config)
    replica.extend(read_rows(path))
    replica.close()
    db = sqlite3.connect(tmp_path / "replica.db")
    db.execute("UPDATE entries SET signature = ? WHERE seq = 4", ("11" * 64,))
    db.commit()
    db.close()
    with pytest.raises(LedgerError, match="entry 4 of this node's ledger replica is bad"):
        LedgerReplica(tmp_path / "replica.db", config)


def test_an_entry_signed_by_another_node_is_appended_only_in_its_own_slot(tmp_path):
    owner, remote = Identity.generate("owner"), Identity.generate("validator")
    ledger = Ledger(tmp_path / "l.db", "task-1")
    body = {"config_sha256": "0" * 64, "owner_key": owner.public_key.hex()}
    ledger.append("task_created", body, owner)
    ledger.append("joined", {"public_key": remote.public_key.hex(), "role": "validator"}, owner)
    seq, prev = ledger.slot()
    text, _, sig = signed_entry("task-1", seq, prev, "note", None, remote, {"x": 1})
    with pytest.raises(ValueError, match="another signer"):
        ledger.append_signed(text, sig, owner.public_key)  # claimed for another key
    stale, _, stale_sig = signed_entry("task-1", seq - 1, prev, "note", None, remote, {"x": 1})
    with pytest.raises(ValueError, match="next one"):
        ledger.append_signed(stale, stale_sig, remote.public_key)
    with pytest.raises(ValueError, match="does not verify"):
        ledger.append_signed(text, "00" * 64, remote.public_key)
    assert len(ledger) == 2
    ledger.append_signed(text, sig, remote.public_key)
    ledger.close()
    verdict = verify(tmp_path / "l.db")
    assert verdict.valid and verdict.entries == 3
