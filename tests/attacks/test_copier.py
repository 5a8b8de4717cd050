"""The copier resends an honest party's update of the round before; commit–reveal catches it."""

import numpy as np

from deai.attacks import RoundContext, make_attack
from deai.engine.api import run
from deai.incentives.rewards import balances
from deai.verify.ledger import Head, read_entries, verify
from tests.conftest import make_config


def test_the_copier_resends_the_first_honest_row_of_the_round_before_scaled():
    rng = np.random.default_rng(0)
    malicious = np.array([False, True, False, True])
    ctx = lambda r: RoundContext(seed=0, round=r, party_ids=np.arange(4), malicious=malicious)  # noqa: E731
    attack = make_attack("copier", scale=2.0)
    first = rng.normal(size=(4, 5)).astype(np.float32)
    np.testing.assert_array_equal(attack.craft(first, ctx(1)), first)  # nothing to copy yet: honest work
    second = rng.normal(size=(4, 5)).astype(np.float32)
    out = attack.craft(second, ctx(2))
    np.testing.assert_array_equal(out[malicious], np.stack([2.0 * first[0]] * 2))
    np.testing.assert_array_equal(out[~malicious], second[~malicious])


def _run(tmp_path, commit_reveal):
    cfg = make_config(
        run={"rounds": 4, "seed": 0},
        data={"num_parties": 8, "holdout_fraction": 0.2},
        attack={"kind": "copier", "fraction": 0.125},
        valuation={"method": "exact"},
        ledger={"sign_updates": True, "commit_reveal": commit_reveal},
        incentives={"reward_per_round": 10.0, "stake": 2.0},
    )
    result = run(cfg, tmp_path / str(commit_reveal))
    path = tmp_path / str(commit_reveal) / "ledger.db"
    assert verify(path, Head.from_dict(result.ledger)).valid
    return read_entries(path), balances(path)


def test_without_commit_reveal_a_copier_is_paid_and_with_it_the_copier_is_caught_and_slashed(tmp_path):
    entries, paid = _run(tmp_path, False)
    results = [e["body"] for e in entries if e["kind"] == "round_result"]
    assert all(not r["rejected"] for r in results)  # nothing stops it
    entries, table = _run(tmp_path, True)
    results = [e["body"] for e in entries if e["kind"] == "round_result"]
    assert results[0]["rejected"] == {}
    caught = {p for r in results[1:] for p in r["rejected"]}
    assert len(caught) == 1 and all(set(r["rejected"].values()) == {"copied_update"} for r in results[1:])
    (copier,) = caught
    slashes = [e for e in entries if e["kind"] == "slash"]
    assert [e["body"]["party"] for e in slashes] == [int(copier)] * 3
    assert table[copier]["slashed"] == 2.0 and table[copier]["balance"] < paid[copier]["balance"]
    assert paid[copier]["paid"] > 0  # without commit-reveal the copy earned a share of every round
