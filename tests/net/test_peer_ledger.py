"""A p2p peer's own ledger without processes: what it records, what verify refuses, what cross-check
proves."""

from hashlib import sha256

import pytest

from deai.config import ConfigError
from deai.net.codec import encode
from deai.net.envelope import Gate, Sealer
from deai.net.peer_ledger import GOSSIP_ROUND, PeerLedger
from deai.net.roster import Roster
from deai.verify.gossip_audit import cross_check
from deai.verify.identity import Identity
from deai.verify.ledger import read_entries, verify

TASK = "t" * 32


def _peers(n=3):
    ids = [Identity.generate("party") for _ in range(n)]
    roster = Roster(
        Identity.generate("aggregator").public_key, [i.public_key for i in ids], [str(j) for j in range(n)]
    )
    return ids, roster


def _proof(sender, to, round_, model=b"m"):
    """The header and signature of a gossip frame ``sender`` sealed for ``to``, as the receiver's gate
    hands it over."""
    frame = Sealer(sender, TASK).seal("gossip", round_, to.id, encode({"model_bytes": model.hex()}))
    env = Gate(TASK, to.id, {sender.id: sender.public_key}, 1 << 20).open(frame)
    return env.header, env.signature


def test_a_peers_log_verifies_and_a_resumed_one_appends_after_what_it_recorded(tmp_path):
    ids, roster = _peers()
    book = PeerLedger(tmp_path, ids[0], roster, 0, "cfg")
    book.record(1, "a" * 64, "b" * 64, "c" * 64, {1: _proof(ids[1], ids[0], 1), 2: _proof(ids[2], ids[0], 1)})
    book.close()
    again = PeerLedger(tmp_path, ids[0], roster, 0, "cfg")
    again.record(1, "x" * 64, "y" * 64, "z" * 64, {})  # a replayed round after a restart: skipped
    again.record(2, "b" * 64, "d" * 64, "e" * 64, {1: _proof(ids[1], ids[0], 2)})
    head = again.head()
    again.close()
    verdict = verify(tmp_path / "ledger.db", head)
    assert verdict.valid and verdict.rounds == 2
    rounds = [e for e in read_entries(tmp_path / "ledger.db") if e["kind"] == GOSSIP_ROUND]
    assert [(e["round"], sorted(e["body"]["received"])) for e in rounds] == [(1, ["1", "2"]), (2, ["1"])]
    with pytest.raises(ConfigError, match="not this peer's ledger"):
        PeerLedger(tmp_path, ids[1], roster, 1, "cfg")


@pytest.mark.parametrize(
    ("forge", "why"),
    [
        ("other_sender", "names another sender"),
        ("changed_body", "never signed the frame"),
        ("other_round", "not a gossip of this round"),
        ("unknown_party", "never joined with a key"),
    ],
)
def test_a_log_showing_a_frame_its_sender_never_signed_does_not_verify(tmp_path, forge, why):
    ids, roster = _peers()
    book = PeerLedger(tmp_path, ids[0], roster, 0, "cfg")
    header, sig = _proof(ids[1], ids[0], 1)
    party = "1"
    if forge == "other_sender":
        header, sig = _proof(ids[2], ids[0], 1)  # party 2's frame, shown as party 1's
    elif forge == "changed_body":
        header = header | {"body_sha256": "0" * 64}
    elif forge == "other_round":
        header, sig = _proof(ids[1], ids[0], 7)
    else:
        party = "9"
    body = {
        "model_before": "",
        "model_after": "",
        "sent": None,
        "received": {party: {"header": header, "signature": sig.hex()}},
    }
    book.ledger.append(GOSSIP_ROUND, body, ids[0], 1)
    book.close()
    verdict = verify(tmp_path / "ledger.db")
    assert not verdict.valid and why in verdict.first_bad["reason"]


def test_rounds_only_move_forward_in_a_peers_log(tmp_path):
    ids, roster = _peers()
    book = PeerLedger(tmp_path, ids[0], roster, 0, "cfg")
    book.record(3, "", "", None, {})
    book.ledger.append(GOSSIP_ROUND, {"received": {}}, ids[0], 2)
    book.close()
    verdict = verify(tmp_path / "ledger.db")
    assert not verdict.valid and "gossip round 2 recorded after round 3" in verdict.first_bad["reason"]


def test_cross_check_proves_equivocation_and_a_false_log_and_accuses_nobody_honest(tmp_path):
    ids, roster = _peers()
    books = [PeerLedger(tmp_path / str(j), ids[j], roster, j, "cfg") for j in range(3)]

    def sent(model):
        return sha256(encode({"model_bytes": model.hex()})).hexdigest()

    # round 1: everyone honest; round 2: peer 2 sends peer 0 one model and peer 1 another
    models = [b"a", b"b", b"c"]
    for me in range(3):  # every peer mixes both others' models
        got = {k: _proof(ids[k], ids[me], 1, models[k]) for k in range(3) if k != me}
        books[me].record(1, "", "", sent(models[me]), got)
    books[0].record(2, "", "", sent(b"a2"), {2: _proof(ids[2], ids[0], 2, b"c2")})
    books[1].record(2, "", "", sent(b"b2"), {2: _proof(ids[2], ids[1], 2, b"evil")})
    books[2].record(2, "", "", sent(b"c2"), {})
    for b in books:
        b.close()
    audit = cross_check([tmp_path / str(j) for j in range(3)])
    # peer 2's own log names c2, which it did sign (to peer 0): an equivocation, not a false log
    assert [(f["offence"], f["party"], f["round"]) for f in audit.findings] == [("equivocation", 2, 2)]
    bodies = {x["header"]["body_sha256"] for x in audit.findings[0]["proof"]}
    assert bodies == {sent(b"c2"), sent(b"evil")}
    assert audit.peers == [0, 1, 2] and audit.rounds == 2 and audit.receipts == 8
    honest = cross_check([tmp_path / "0", tmp_path / "2"])  # without peer 1's log, nothing is proven
    assert honest.clean


def test_cross_check_refuses_logs_of_different_tasks(tmp_path):
    ids, roster = _peers(2)
    PeerLedger(tmp_path / "a", ids[0], roster, 0, "cfg-one").close()
    PeerLedger(tmp_path / "b", ids[1], roster, 1, "cfg-two").close()
    with pytest.raises(ValueError, match="different tasks"):
        cross_check([tmp_path / "a", tmp_path / "b"])


def test_cross_check_shows_a_log_that_breaks_and_what_broke(tmp_path):
    ids, roster = _peers(2)
    for j in range(2):
        PeerLedger(tmp_path / str(j), ids[j], roster, j, "cfg").close()
    db = tmp_path / "1" / "ledger.db"
    import sqlite3

    with sqlite3.connect(db) as con:  # someone rewrites peer 1's registration of peer 0's key
        con.execute("UPDATE entries SET entry = replace(entry, 'party', 'parti') WHERE seq = 1")
    audit = cross_check([tmp_path / "0", tmp_path / "1"])
    assert not audit.clean and list(audit.invalid) == [str(db)] and audit.peers == [0]
