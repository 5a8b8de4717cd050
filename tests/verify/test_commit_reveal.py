"""Commit–reveal: a broken commitment or a copied update is rejected, and slashed where the log proves it."""

import numpy as np
import pytest

import deai.verify.update_signing as signing
from deai.config import ConfigError
from deai.engine.api import run
from deai.incentives.rewards import balances
from deai.verify.commit_reveal import commit_rows
from deai.verify.identity import Identity
from deai.verify.ledger import Head, Ledger, read_entries, verify
from deai.verify.update_signing import update_message
from tests.conftest import make_config

SECTIONS = {
    "run": {"rounds": 3, "seed": 0},
    "data": {"num_parties": 6, "holdout_fraction": 0.2},
    "ledger": {"sign_updates": True, "commit_reveal": True, "validators": 1},
    "valuation": {"method": "exact"},
    "incentives": {"reward_per_round": 10.0, "stake": 4.0, "slash_fraction": 0.5},
}


def _resign(self, batch, rows, *, commit=True):
    """The party side of ``rows`` signs (and, with ``commit``, commits to) what the batch now holds."""
    batch.rehash()
    fresh = commit_rows(batch, self.keys.identities, self.keys.ids, self.task_id)
    for i in rows:
        p, r, d = int(batch.party_ids[i]), int(batch.round[i]), batch.digests()[i]
        batch.signatures[i] = self.keys.identities[p].sign(
            update_message(self.task_id, r, self.keys.ids[p], d)
        )
        if commit:
            batch.commits[i] = fresh[i]


def _run(tmp_path, monkeypatch, cheat):
    honest = signing.SigningParties.train
    seen = {}

    def train(self, task, party_ids, step_budget=None):
        batch = honest(self, task, party_ids, step_budget)
        cheat(self, task, batch, seen)
        seen[task.round] = batch.deltas.copy()
        return batch

    monkeypatch.setattr(signing.SigningParties, "train", train)
    result = run(make_config(**SECTIONS), tmp_path / "run")
    path = tmp_path / "run" / "ledger.db"
    return result, path, read_entries(path)


def test_honest_parties_commit_reveal_and_nobody_is_slashed(tmp_path, monkeypatch):
    result, path, entries = _run(tmp_path, monkeypatch, lambda *a: None)
    assert verify(path, Head.from_dict(result.ledger)).valid
    leaves = [leaf for e in entries if e["kind"] == "commitments" for leaf in e["body"]["leaves"]]
    assert len(leaves) == 18 and all(len(leaf) == 6 for leaf in leaves)
    assert not any(e["kind"] == "slash" for e in entries)
    assert all(row["slashed"] == 0 for row in balances(path).values())


def test_a_reveal_that_breaks_its_commitment_is_rejected_and_slashed(tmp_path, monkeypatch):
    def change_after_committing(self, task, batch, seen):
        i = int(np.flatnonzero(batch.party_ids == 2)[0])
        batch.deltas[i] *= -1.0  # after committing, party 2 sends something else, signed by itself
        _resign(self, batch, [i], commit=False)

    result, path, entries = _run(tmp_path, monkeypatch, change_after_committing)
    verdict = verify(path, Head.from_dict(result.ledger))
    assert verdict.valid, verdict.first_bad
    slashes = [e for e in entries if e["kind"] == "slash"]
    assert [(e["round"], e["body"]["party"], e["body"]["reason"]) for e in slashes] == [
        (r, 2, "reveal_mismatch") for r in (1, 2, 3)
    ]
    for e in (e for e in entries if e["kind"] == "round_result"):
        assert e["body"]["rejected"] == {"2": "reveal_mismatch"}
    table = balances(path)
    assert table["2"]["slashed"] == pytest.approx(4.0 * (1 - 0.5**3)) and table["2"]["paid"] == 0.0
    assert all(table[p]["slashed"] == 0 for p in table if p != "2")
    assert table == result.balances


def test_copies_of_an_accepted_update_are_rejected_and_an_exact_copy_is_slashed(tmp_path, monkeypatch):
    def copy_party_1(scale):
        def cheat(self, task, batch, seen):
            if task.round - 1 not in seen:
                return
            i = int(np.flatnonzero(batch.party_ids == 4)[0])
            batch.deltas[i] = scale * seen[task.round - 1][1]  # party 4 replays party 1's last update
            _resign(self, batch, [i])

        return cheat

    result, path, entries = _run(tmp_path, monkeypatch, copy_party_1(1.0))
    assert verify(path, Head.from_dict(result.ledger)).valid
    slashes = [(e["round"], e["body"]["party"], e["body"]["reason"]) for e in entries if e["kind"] == "slash"]
    assert slashes == [(2, 4, "copied_update"), (3, 4, "copied_update")]
    assert result.balances["4"]["paid"] > 0  # round 1 was its own work

    scaled = tmp_path / "scaled"
    scaled.mkdir()
    result, path, entries = _run(scaled, monkeypatch, copy_party_1(2.5))
    assert verify(path, Head.from_dict(result.ledger)).valid
    rejected = [e["body"]["rejected"] for e in entries if e["kind"] == "round_result"]
    assert rejected == [{}, {"4": "copied_update"}, {"4": "copied_update"}]
    assert not any(e["kind"] == "slash" for e in entries)  # a scaled copy is not provable from the log


def _forged(tmp_path, entries, name):
    keys = {i.id: i for i in (Identity.load(p) for p in (tmp_path / "run" / "keys").glob("*.key"))}
    forged = Ledger(tmp_path / name, entries[0]["task"])
    for e in entries:
        forged.append(e["kind"], e["body"], keys[e["signer"]], e["round"])
    forged.close()
    return verify(tmp_path / name)


def test_a_slash_without_proof_is_caught(tmp_path, monkeypatch):
    _, _, entries = _run(tmp_path, monkeypatch, lambda *a: None)
    aggregator = next(e["signer"] for e in entries if e["kind"] == "round_result")
    at = next(i for i, e in enumerate(entries) if e["kind"] == "round_result" and e["round"] == 2) + 1
    fake = {"party": 0, "reason": "reveal_mismatch", "digest": "00" * 32, "salt": "00" * 16,
            "commitment": "11" * 32, "commit_signature": "22" * 64, "signature": "33" * 64}  # fmt: skip
    unrejected = [
        *entries[:at],
        {"kind": "slash", "body": fake, "signer": aggregator, "round": 2},
        *entries[at:],
    ]
    verdict = _forged(tmp_path, unrejected, "a.db")
    assert not verdict.valid and "which round 2 did not reject it for" in verdict.first_bad["reason"]
    result = next(e for e in entries if e["kind"] == "round_result" and e["round"] == 2)
    result["body"]["rejected"] = {"0": "reveal_mismatch"}  # the aggregator also claims the rejection
    verdict = _forged(tmp_path, unrejected, "b.db")
    assert (
        not verdict.valid
        and "does not prove it: the party never signed that commitment" in (verdict.first_bad["reason"])
    )


def test_commit_reveal_needs_signed_updates(tmp_path):
    with pytest.raises(ConfigError, match="ledger.sign_updates = true"):
        run(make_config(ledger={"commit_reveal": True}), tmp_path / "run")
    assert not (tmp_path / "run").exists()
