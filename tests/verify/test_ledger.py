"""The ledger against tampering: every seeded mutation of a valid chain is caught by ``verify``."""

import random
import sqlite3

import pytest

from deai.verify.identity import Identity
from deai.verify.ledger import GENESIS, Head, Ledger, LedgerError, read_entries, verify
from deai.verify.merkle import EMPTY_ROOT, inclusion_proof, merkle_root, verify_inclusion

OWNER = Identity.generate("owner")
AGGREGATOR = Identity.generate("aggregator")


def _chain(path, task="task-a", rounds=6, owner=OWNER, aggregator=AGGREGATOR):
    ledger = Ledger(path, task)
    ledger.append("task_created", {"owner_key": owner.public_key.hex(), "config_sha256": "ab" * 32}, owner)
    ledger.append("joined", {"public_key": aggregator.public_key.hex(), "role": "aggregator"}, owner)
    for r in range(1, rounds + 1):
        ledger.append("round_result", {"model_sha256": f"{r:064x}", "participants": [1, 2, r]}, aggregator, r)
    head = ledger.head(owner)
    ledger.close()
    return head


def _rows(path):
    with sqlite3.connect(path) as db:
        return db.execute("SELECT seq, hash, entry, signature FROM entries ORDER BY seq").fetchall()


def _rewrite(path, rows):
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM entries")
        db.executemany("INSERT INTO entries VALUES (?, ?, ?, ?)", rows)


def test_a_valid_chain_verifies_against_its_head(tmp_path):
    head = _chain(tmp_path / "l.db")
    verdict = verify(tmp_path / "l.db", head)
    assert verdict.valid and verdict.entries == 8 and verdict.head == head.hash
    assert verdict.as_dict() == {
        "valid": True, "entries": 8, "head": head.hash, "first_bad": None,
        "rounds": 6, "validators": 0, "disputes": [],
    }  # fmt: skip


@pytest.mark.parametrize("seed", range(40))
def test_flipping_any_byte_of_any_entry_is_caught(tmp_path, seed):
    rng = random.Random(seed)
    path = tmp_path / "l.db"
    head = _chain(path)
    rows = [list(r) for r in _rows(path)]
    i, column = rng.randrange(len(rows)), rng.choice([1, 2, 3])
    text = rows[i][column]
    pos = rng.randrange(len(text))
    replacement = rng.choice([c for c in '0123456789abcdef{}":,x ' if c != text[pos]])
    rows[i][column] = text[:pos] + replacement + text[pos + 1 :]
    _rewrite(path, [tuple(r) for r in rows])
    verdict = verify(path, head)
    assert not verdict.valid and verdict.first_bad["seq"] == i, verdict


def test_reordering_dropping_and_truncating_are_caught(tmp_path):
    path = tmp_path / "l.db"
    head = _chain(path)
    rows = _rows(path)
    swapped = rows[:3] + [(3, *rows[4][1:]), (4, *rows[3][1:])] + rows[5:]
    _rewrite(path, swapped)
    assert verify(path, head).first_bad["seq"] == 3
    _rewrite(path, rows[:4] + rows[5:])  # entry 4 dropped from the middle
    bad = verify(path, head).first_bad
    assert bad["seq"] == 4 and "missing" in bad["reason"]
    _rewrite(path, rows[:-2])  # tail cut: every link still holds, only the head shows it
    assert verify(path).valid
    bad = verify(path, head).first_bad
    assert bad["seq"] == 6 and "truncated" in bad["reason"]
    assert "truncated" in verify(path, head_hash=head.hash).first_bad["reason"]  # an unsigned published hash


def test_re_signing_with_another_key_and_replaying_from_another_run_are_caught(tmp_path):
    path, other = tmp_path / "l.db", tmp_path / "other.db"
    head = _chain(path)
    _chain(other, task="task-b")
    rows = _rows(path)
    # an entry re-signed by an unregistered key, with an honest hash and link
    intruder = Identity.generate("aggregator")
    forged = Ledger(tmp_path / "forge.db", "task-a")
    forged._next, forged._prev = 5, rows[4][1]
    forged.append("round_result", {"model_sha256": "f" * 64, "participants": [1]}, intruder, 4)
    forged_row = _rows(tmp_path / "forge.db")[0]
    _rewrite(path, rows[:5] + [forged_row])
    assert "never registered" in verify(path).first_bad["reason"]
    # entry 5 of another run, in this one's place
    _rewrite(path, rows[:5] + [_rows(other)[5]])
    assert verify(path).first_bad["seq"] == 5
    # a head signed by another owner
    _rewrite(path, rows)
    fake = Head(head.task, head.entries, head.hash, Identity.generate("owner").sign(b"x").hex())
    assert "not signed by the owner" in verify(path, fake).first_bad["reason"]


def test_a_ledger_reopened_continues_the_same_chain(tmp_path):
    path = tmp_path / "l.db"
    _chain(path, rounds=2)
    ledger = Ledger(path, "task-a")
    assert len(ledger) == 4
    ledger.append("round_result", {"model_sha256": "0" * 64, "participants": []}, AGGREGATOR, 3)
    assert verify(path, ledger.head(OWNER)).valid
    assert [e["seq"] for e in read_entries(path)] == [0, 1, 2, 3, 4]
    assert read_entries(path)[0]["prev"] == GENESIS


def test_not_a_ledger_is_one_clear_error(tmp_path):
    with pytest.raises(LedgerError, match="does not exist"):
        verify(tmp_path / "missing.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LedgerError, match="not a deai ledger"):
        verify(junk)
    before = junk.read_bytes()
    with sqlite3.connect(tmp_path / "foreign.db") as db:
        db.execute("CREATE TABLE things (a)")
    with pytest.raises(LedgerError, match="schema"):
        verify(tmp_path / "foreign.db")
    assert junk.read_bytes() == before


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 8, 13])
def test_merkle_root_and_proofs_match_a_brute_force_tree(n):
    import hashlib

    leaves = [bytes([i]) * 3 for i in range(n)]

    def tree(hashes):  # RFC 6962 2.1, written out
        if len(hashes) == 1:
            return hashes[0]
        k = 1
        while k * 2 < len(hashes):
            k *= 2
        return hashlib.sha256(b"\x01" + tree(hashes[:k]) + tree(hashes[k:])).digest()

    expected = tree([hashlib.sha256(b"\x00" + x).digest() for x in leaves]) if n else EMPTY_ROOT
    root = merkle_root(leaves)
    assert root == expected
    for i in range(n):
        proof = inclusion_proof(leaves, i)
        assert verify_inclusion(leaves[i], i, n, proof, root)
        assert not verify_inclusion(leaves[i] + b"!", i, n, proof, root)
        if n > 1:
            assert not verify_inclusion(leaves[i], (i + 1) % n, n, proof, root)


def test_verify_changes_nothing_beside_the_ledger(tmp_path):
    head = _chain(tmp_path / "l.db")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert verify(tmp_path / "l.db", head).valid
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.slow
def test_sigkill_in_the_middle_of_appends_leaves_a_chain_that_verifies_and_continues(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    writer = (
        "import sys\n"
        "from deai.verify.identity import Identity\n"
        "from deai.verify.ledger import Ledger\n"
        "owner = Identity.generate('owner')\n"
        "owner.save(sys.argv[2])\n"
        "ledger = Ledger(sys.argv[1], 'task-k')\n"
        "ledger.append('task_created', {'owner_key': owner.public_key.hex()}, owner)\n"
        "for r in range(1, 10**6):\n"
        "    ledger.append('round_result', {'model_sha256': '%064x' % r, 'pad': 'x' * 2000}, owner, r)\n"
    )
    path, key = tmp_path / "l.db", tmp_path / "owner.key"
    proc = subprocess.Popen([sys.executable, "-c", writer, str(path), str(key)], env={**os.environ})
    try:
        deadline = time.time() + 60
        while time.time() < deadline and (not path.exists() or path.stat().st_size < 200_000):
            time.sleep(0.01)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    verdict = verify(path)
    assert verdict.valid and verdict.entries > 10, verdict
    owner = Identity.load(key)
    ledger = Ledger(path, "task-k")
    assert len(ledger) == verdict.entries
    ledger.append("round_result", {"model_sha256": "e" * 64}, owner, verdict.entries)
    assert verify(path, ledger.head(owner)).valid


def test_damage_below_the_entries_is_one_clear_error_or_a_named_bad_entry(tmp_path):
    path = tmp_path / "l.db"
    head = _chain(path, rounds=40)
    raw = path.read_bytes()
    (tmp_path / "half.db").write_bytes(raw[: len(raw) // 2])  # a torn copy
    with pytest.raises(LedgerError, match="malformed|damaged|not a deai ledger"):
        verify(tmp_path / "half.db", head)
    rows = [list(r) for r in _rows(path)]
    rows[9][2] = rows[9][2].encode()[:-3] + b"\xff\xfe}"  # stored as bytes that are not UTF-8
    _rewrite(path, [tuple(r) for r in rows])
    bad = verify(path, head).first_bad
    assert bad["seq"] == 9 and "UTF-8" in bad["reason"]
