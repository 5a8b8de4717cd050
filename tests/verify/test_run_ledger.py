"""Every written run keeps a ledger that verifies, commits to the updates it accepted, and survives resume."""

import hashlib
import sqlite3

import pytest

from deai.config import ConfigError
from deai.engine.api import resume, run
from deai.verify.identity import Identity
from deai.verify.ledger import Head, Ledger, read_entries, verify
from deai.verify.merkle import merkle_root
from tests.conftest import crashed_copy, make_config


def _run(tmp_path, rounds=4, **sections):
    cfg = make_config(run={"rounds": rounds, "seed": 0, "checkpoint_every": 1}, **sections)
    seen = {}

    def keep(record):  # the test's own digest of every accepted row, not the engine's
        if record.batch is not None:
            seen[record.round] = [
                f"{int(p)}:{record.round}:{hashlib.sha256(row.tobytes()).hexdigest()}".encode()
                for p, row in zip(record.batch.party_ids, record.batch.deltas, strict=True)
            ]

    return run(cfg, tmp_path / "run", on_record=keep), seen


def _rolled_back(run_dir, at_round):
    """A crashed copy whose newest checkpoint is round ``at_round``: its later rounds must be replayed."""
    crashed = crashed_copy(run_dir, at_round)
    for ckpt in (crashed / "checkpoints").glob("round-*.npz"):
        if int(ckpt.stem.split("-")[1]) > at_round:
            ckpt.unlink()
    return crashed


def test_a_run_writes_a_ledger_that_verifies_against_its_published_head(tmp_path):
    result, seen = _run(tmp_path)
    head = Head.from_dict(result.ledger)
    assert verify(tmp_path / "run" / "ledger.db", head).valid
    entries = read_entries(tmp_path / "run" / "ledger.db")
    assert [e["kind"] for e in entries] == ["task_created", "joined"] + ["round_opened", "round_result"] * 4
    for opened, closed in zip(entries[2::2], entries[3::2], strict=True):
        assert opened["round"] == closed["round"]
        assert set(closed["body"]["participants"]) <= set(opened["body"]["asked"])
    results = [e for e in entries if e["kind"] == "round_result"]
    assert [e["round"] for e in results] == [1, 2, 3, 4]
    assert results[-1]["body"]["model_sha256"] == result.model_hash
    for e in results:
        assert e["body"]["updates_root"] == merkle_root(seen[e["round"]]).hex()
        assert len(e["body"]["participants"]) == len(seen[e["round"]])
    assert "PRIVATE" not in (tmp_path / "run" / "ledger.db").read_bytes().decode(errors="replace")


def test_resume_replays_without_duplicates_and_keeps_the_same_keys(tmp_path):
    full, _ = _run(tmp_path, rounds=5)
    crashed = _rolled_back(tmp_path / "run", at_round=2)  # the ledger is ahead of the checkpoint
    before = (crashed / "ledger.db").read_bytes()
    again = resume(crashed)
    assert again.model_hash == full.model_hash
    assert again.ledger["entries"] == full.ledger["entries"] == 2 + 2 * 5
    assert again.ledger["hash"] == full.ledger["hash"]
    assert (crashed / "ledger.db").read_bytes() == before  # nothing appended twice
    more = resume(crashed, rounds=7)
    rounds = [e["round"] for e in read_entries(crashed / "ledger.db") if e["kind"] == "round_result"]
    assert rounds == [1, 2, 3, 4, 5, 6, 7]
    assert verify(crashed / "ledger.db", Head.from_dict(more.ledger)).valid


def test_a_ledger_that_disagrees_with_the_replayed_rounds_stops_the_resume(tmp_path):
    _run(tmp_path, rounds=4)
    crashed = _rolled_back(tmp_path / "run", at_round=2)
    owner = Identity.load(crashed / "keys" / "owner.key")
    aggregator = Identity.load(crashed / "keys" / "aggregator.key")
    entries = read_entries(crashed / "ledger.db")
    (crashed / "ledger.db").unlink()
    forged = Ledger(crashed / "ledger.db", entries[0]["task"])  # validly signed, but round 3 is another model
    for e in entries:
        body = dict(e["body"])
        if e["round"] == 3:
            body["model_sha256"] = "0" * 64
        forged.append(e["kind"], body, owner if e["kind"] != "round_result" else aggregator, e["round"])
    forged.close()
    with pytest.raises(ConfigError, match="round 3 produced model"):
        resume(crashed)


def test_a_run_directory_with_a_foreign_ledger_is_refused(tmp_path):
    _run(tmp_path, rounds=2)
    crashed = crashed_copy(tmp_path / "run", at_round=1)
    with sqlite3.connect(crashed / "ledger.db") as db:
        db.execute("DROP TABLE entries")
        db.execute("CREATE TABLE entries (x)")
    with pytest.raises(ConfigError, match="not a deai ledger"):
        resume(crashed)


def test_a_damaged_key_file_stops_the_resume_before_anything_is_written(tmp_path):
    _run(tmp_path, rounds=2)
    run_dir = tmp_path / "run"
    (run_dir / "keys" / "owner.key").write_text("garbage\n")
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    with pytest.raises(ConfigError, match="not a deai key file"):
        resume(run_dir, rounds=4)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before
