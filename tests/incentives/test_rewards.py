"""Rewards and reputation: the rule by hand, and balances re-derived from the ledger alone."""

import pytest

from deai.config import ConfigError
from deai.engine.api import resume, run
from deai.incentives.rewards import RewardBook, balances
from deai.verify.identity import Identity
from deai.verify.ledger import Head, Ledger, read_entries, verify
from tests.conftest import crashed_copy, make_config


def test_the_reward_rule_by_hand():
    book = RewardBook(90.0, reputation_rate=0.5)
    first = book.settle({"a": 2.0, "b": 1.0, "c": -1.0}, {"d": "norm_too_large", "e": "bad_signature"})
    assert first["paid"] == {"a": 60.0, "b": 30.0, "c": 0.0}  # in proportion to non-negative value
    # outcome: a 2/2 = 1, b 1/2, c 0, rejected d 0; a forged row under e's name does not count against e
    assert first["reputation"] == {"a": 1.0, "b": 0.75, "c": 0.5, "d": 0.5}
    second = book.settle({"a": 1.0, "b": 1.0}, {})
    assert second["paid"] == {"a": pytest.approx(90 / 1.75), "b": pytest.approx(90 * 0.75 / 1.75)}
    assert book.settle({"a": -1.0}, {})["paid"] == {"a": 0.0}  # no positive value: nothing paid


SECTIONS = {
    "run": {"rounds": 4, "seed": 2, "checkpoint_every": 1},
    "data": {"num_parties": 6, "holdout_fraction": 0.2},
    "valuation": {"method": "exact"},
    "ledger": {"sign_updates": True, "validators": 2},
    "incentives": {"reward_per_round": 50.0, "stake": 5.0},
}


def _run(tmp_path, rounds=4):
    return run(make_config(**{**SECTIONS, "run": {**SECTIONS["run"], "rounds": rounds}}), tmp_path / "run")


def test_balances_from_the_log_equal_the_runs_and_pay_out_the_pool(tmp_path):
    result = _run(tmp_path)
    path = tmp_path / "run" / "ledger.db"
    assert verify(path, Head.from_dict(result.ledger)).valid
    derived = balances(path)
    assert derived == result.balances
    assert all(row["stake"] == 5.0 for row in derived.values())
    assert sum(row["paid"] for row in derived.values()) == pytest.approx(50.0 * 4)
    assert all(row["balance"] == pytest.approx(row["stake"] + row["paid"]) for row in derived.values())


def _forge(tmp_path, mutate, name):
    src = tmp_path / "run"
    keys = {i.id: i for i in (Identity.load(p) for p in (src / "keys").glob("*.key"))}
    entries = mutate(read_entries(src / "ledger.db"))
    forged = Ledger(tmp_path / name, entries[0]["task"])
    for e in entries:
        forged.append(e["kind"], e["body"], keys[e["signer"]], e["round"])
    forged.close()
    return verify(tmp_path / name)


def test_a_tampered_payout_or_a_dropped_rewards_entry_is_caught(tmp_path):
    _run(tmp_path, rounds=3)

    def richer(entries):
        rewards = [e for e in entries if e["kind"] == "rewards"][1]
        rewards["body"]["paid"]["0"] += 10.0  # the owner pays one party more than the rule gives
        return entries

    def dropped(entries):
        rewards = [e for e in entries if e["kind"] == "rewards"][0]
        return [e for e in entries if e is not rewards]

    verdict = _forge(tmp_path, richer, "richer.db")
    assert (
        not verdict.valid
        and "rewards differ from what its valuation gives, for parties ['0']" in (verdict.first_bad["reason"])
    )
    verdict = _forge(tmp_path, dropped, "dropped.db")
    assert (
        not verdict.valid
        and "round 1 was valued, but its rewards were never recorded" in (verdict.first_bad["reason"])
    )


def test_resume_continues_reputation_and_the_same_chain(tmp_path):
    full = _run(tmp_path, rounds=5)
    crashed = crashed_copy(tmp_path / "run", 2)
    for ckpt in (crashed / "checkpoints").glob("round-*.npz"):
        if int(ckpt.stem.split("-")[1]) > 2:
            ckpt.unlink()
    again = resume(crashed)
    assert again.ledger["hash"] == full.ledger["hash"] and again.balances == full.balances
    more = resume(crashed, rounds=7)
    assert verify(crashed / "ledger.db", Head.from_dict(more.ledger)).valid  # reputation went on as recorded


def test_rewards_without_values_or_party_keys_are_refused_by_name(tmp_path):
    with pytest.raises(ConfigError, match="valuation.method .* and ledger.sign_updates = true"):
        run(make_config(incentives={"reward_per_round": 1.0}), tmp_path / "run")
    assert not (tmp_path / "run").exists()
