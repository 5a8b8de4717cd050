"""Validators recompute each round and co-sign it; verify counts the quorum and catches what lies."""

import numpy as np
import pytest

from deai.aggregate import make_aggregator
from deai.config import ConfigError
from deai.context import RoundContext
from deai.engine.api import resume, run
from deai.messages import RoundRecord, UpdateBatch
from deai.optim.server import ServerSGD
from deai.params import Layout, params_hash
from deai.verify.identity import Identity
from deai.verify.ledger import Head, Ledger, canonical, entry_hash, read_entries, verify
from deai.verify.quorum import quorum_size
from deai.verify.run_ledger import RunLedger
from deai.verify.validator import Validator
from tests.conftest import crashed_copy, make_config

DIM = 12
LAYOUT = Layout.from_shapes({"w": (DIM,)})


class ColludingValidator(Validator):
    """Co-signs whatever the aggregator claims, without recomputing (what an honest one never does)."""

    def review(self, record, result, result_hash):
        self.recompute(record)
        return "cosigned", {
            "result": result_hash,
            **{k: result[k] for k in ("updates_root", "aggregate_sha256", "model_sha256")},
        }  # noqa: E501


def _batch(rng, parties=6):
    return UpdateBatch(
        party_ids=np.arange(parties, dtype=np.int64),
        round=np.ones(parties, dtype=np.int64),
        base_version=np.zeros(parties, dtype=np.int64),
        deltas=rng.normal(size=(parties, DIM)).astype(np.float32),
        weights=rng.integers(5, 50, size=parties).astype(np.float64),
        steps=np.ones(parties, dtype=np.int64),
    )


def _ledger(tmp_path, colluding=0, validators=3):
    rule, opt, w0 = make_aggregator("mean", num_parties=6), ServerSGD(1.0), np.zeros(DIM, np.float32)
    made = []

    def make(identity):
        cls = ColludingValidator if len(made) < colluding else Validator
        made.append(cls(identity, rule, opt, 0, LAYOUT, w0, {}))
        return made[-1]

    return RunLedger(tmp_path, "cfg", "q", LAYOUT, validators=validators, make_validator=make)


def _record(batch, aggregate, round_=1):
    params = np.zeros(DIM, np.float32) + aggregate  # FedAvg from the zero model: w1 = w0 + aggregate
    return RoundRecord(round_, 1, params, batch.party_ids, {}, None, {}, True, batch, aggregate)


def _honest_mean(batch):
    """What an honest aggregator running FedAvg's rule releases (float32, as the rule computes it)."""
    return make_aggregator("mean", num_parties=6)(
        batch.deltas, batch.weights, RoundContext(0, 1, batch.party_ids)
    )


def test_validators_attest_the_aggregate_a_brute_force_mean_gives(tmp_path):
    batch = _batch(np.random.default_rng(0))
    ledger = _ledger(tmp_path)
    ledger(_record(batch, _honest_mean(batch)))
    head = ledger.head()
    ledger.close()
    verdict = verify(tmp_path / "ledger.db", head)
    assert verdict.valid and verdict.rounds == 1 and verdict.validators == 3 and verdict.disputes == []
    cosigns = [e for e in read_entries(tmp_path / "ledger.db") if e["kind"] == "cosigned"]
    assert len(cosigns) == 3
    # what they attest is the released aggregate, and that is the weighted mean (float64 brute force)
    released = _honest_mean(batch)
    np.testing.assert_allclose(released, np.average(batch.deltas, axis=0, weights=batch.weights), atol=1e-6)
    assert {e["body"]["aggregate_sha256"] for e in cosigns} == {params_hash(released, LAYOUT)}


@pytest.mark.parametrize("colluding", [0, 1])
def test_a_lying_aggregator_gets_no_quorum_even_with_a_colluding_validator(tmp_path, colluding):
    batch = _batch(np.random.default_rng(1))
    ledger = _ledger(tmp_path, colluding=colluding)
    lie = _honest_mean(batch) * 3.0  # the aggregator releases a boosted aggregate
    ledger(_record(batch, lie))
    head = ledger.head()
    ledger.close()
    verdict = verify(tmp_path / "ledger.db", head)
    assert not verdict.valid
    reason = verdict.first_bad["reason"]
    assert (
        f"{colluding} of 3 validators' co-signatures, needs 3" in reason
        and f"{3 - colluding} dissented" in reason
    )
    dissent = [e for e in read_entries(tmp_path / "ledger.db") if e["kind"] == "dissent"]
    assert len(dissent) == 3 - colluding
    assert dissent[0]["body"]["recomputed"]["aggregate_sha256"] == params_hash(_honest_mean(batch), LAYOUT)


def test_a_colluding_quorum_finalizes_but_the_honest_dissent_marks_the_round_disputed(tmp_path):
    batch = _batch(np.random.default_rng(2))
    ledger = _ledger(tmp_path, colluding=2)  # 2 of 3 is not more than 2/3: needs all three
    ledger(_record(batch, _honest_mean(batch) * 3.0))
    ledger.close()
    assert not verify(tmp_path / "ledger.db").valid
    (tmp_path / "four").mkdir()
    ledger4 = _ledger(tmp_path / "four", colluding=3, validators=4)  # 3 of 4 > 2/3: the lie counts
    ledger4(_record(batch, _honest_mean(batch) * 3.0))
    ledger4.close()
    verdict = verify(tmp_path / "four" / "ledger.db")
    assert verdict.valid and len(verdict.disputes) == 1
    assert verdict.disputes[0]["round"] == 1 and len(verdict.disputes[0]["dissent"]) == 1


def test_quorum_is_more_than_two_thirds():
    assert [quorum_size(n) for n in (1, 2, 3, 4, 5, 6, 7)] == [1, 2, 3, 3, 4, 5, 5]
    for n in range(1, 50):  # brute force: the least k with 3k > 2n
        assert quorum_size(n) == min(k for k in range(n + 2) if 3 * k > 2 * n)


def _rewritten(tmp_path, mutate):
    """A copy of an honest one-round, 3-validator ledger, every entry re-signed by its own signer after
    ``mutate(entries, keys)``: the chain is intact, so only the round checks can catch the change."""
    src = tmp_path / "src"
    src.mkdir(parents=True)
    ledger = _ledger(src)
    batch = _batch(np.random.default_rng(3))
    ledger(_record(batch, _honest_mean(batch)))
    ledger.close()
    keys = {i.id: i for i in (Identity.load(p) for p in (src / "keys").glob("*.key"))}
    entries = mutate(read_entries(src / "ledger.db"), keys)
    out = Ledger(tmp_path / "out.db", entries[0]["task"])
    for e in entries:
        out.append(e["kind"], e["body"], keys[e["signer"]], e["round"])
    out.close()
    return verify(tmp_path / "out.db")


def test_a_co_signature_that_attests_other_values_than_the_result_is_caught(tmp_path):
    def mutate(entries, keys):
        cosign = next(e for e in entries if e["kind"] == "cosigned")
        cosign["body"]["model_sha256"] = "0" * 64
        return entries

    verdict = _rewritten(tmp_path, mutate)
    assert not verdict.valid and "attests other model_sha256" in verdict.first_bad["reason"]


def test_co_signatures_by_a_non_validator_twice_or_for_another_result_are_caught(tmp_path):
    def by_aggregator(entries, keys):
        cosign = next(e for e in entries if e["kind"] == "cosigned")
        cosign["signer"] = next(k for k, i in keys.items() if i.role == "aggregator")
        return entries

    def twice(entries, keys):
        cosign = next(e for e in entries if e["kind"] == "cosigned")
        return [*entries, dict(cosign)]

    def stale(entries, keys):
        cosign = next(e for e in entries if e["kind"] == "cosigned")
        cosign["body"]["result"] = "f" * 64
        return entries

    assert "not registered as a validator" in _rewritten(tmp_path / "a", by_aggregator).first_bad["reason"]
    assert "reviewed round 1 twice" in _rewritten(tmp_path / "b", twice).first_bad["reason"]
    assert "names no round result open" in _rewritten(tmp_path / "c", stale).first_bad["reason"]


def test_a_dropped_co_signature_breaks_the_quorum(tmp_path):
    def drop(entries, keys):
        i = next(i for i, e in enumerate(entries) if e["kind"] == "cosigned")
        return entries[:i] + entries[i + 1 :]

    verdict = _rewritten(tmp_path, drop)
    assert not verdict.valid and "2 of 3 validators' co-signatures" in verdict.first_bad["reason"]


def test_a_round_and_its_reviews_are_one_transaction(tmp_path):
    batch = _batch(np.random.default_rng(4))
    ledger = _ledger(tmp_path)
    before = read_entries(tmp_path / "ledger.db")

    def crash(*_args):
        raise RuntimeError("validator crashed mid-review")

    ledger.validators[1].review = crash
    with pytest.raises(RuntimeError):
        ledger(_record(batch, _honest_mean(batch)))
    assert read_entries(tmp_path / "ledger.db") == before  # no result without its reviews
    owner = Identity.load(tmp_path / "keys" / "owner.key")
    ledger.ledger.append("note", {"after": "the failed round"}, owner)  # the writer rolled back too
    head = ledger.head()
    ledger.close()
    verdict = verify(tmp_path / "ledger.db", head)
    assert verdict.valid and verdict.entries == len(before) + 1 and verdict.rounds == 0


def _run(tmp_path, rounds, **ledger):
    cfg = make_config(run={"rounds": rounds, "seed": 0, "checkpoint_every": 1}, ledger=ledger)
    return run(cfg, tmp_path / "run")


def test_a_run_with_validators_and_signed_updates_verifies_and_resumes_the_same_chain(tmp_path):
    full = _run(tmp_path, 4, validators=3, sign_updates=True)
    path = tmp_path / "run" / "ledger.db"
    verdict = verify(path, Head.from_dict(full.ledger))
    assert verdict.valid and verdict.rounds == 4 and verdict.validators == 3
    kinds = [e["kind"] for e in read_entries(path)]
    assert (
        kinds.count("joined") == 1 + 3 + 10
        and kinds.count("commitments") == 4
        and kinds.count("cosigned") == 12
    )
    crashed = crashed_copy(tmp_path / "run", 2)
    for ckpt in (crashed / "checkpoints").glob("round-*.npz"):
        if int(ckpt.stem.split("-")[1]) > 2:
            ckpt.unlink()
    before = (crashed / "ledger.db").read_bytes()
    again = resume(crashed)
    assert again.model_hash == full.model_hash and again.ledger["hash"] == full.ledger["hash"]
    assert (crashed / "ledger.db").read_bytes() == before
    more = resume(crashed, rounds=6)  # validators recomputed the replayed rounds: they still agree
    assert verify(crashed / "ledger.db", Head.from_dict(more.ledger)).valid
    assert [e["kind"] for e in read_entries(crashed / "ledger.db")].count("dissent") == 0


@pytest.mark.parametrize(
    ("sections", "field"),
    [
        (
            {
                "strategy": {"aggregator": "secagg", "aggregator_options": {"clip": 1.0}},
                "ledger": {"validators": 3},
            },
            "secure aggregation",
        ),
        ({"privacy": {"mode": "central", "noise_multiplier": 1.0}, "ledger": {"validators": 3}}, "DP noise"),
        (
            {
                "strategy": {"aggregator": "fltrust"},
                "data": {"holdout_fraction": 0.2},
                "ledger": {"validators": 1},
            },
            "root data",
        ),  # noqa: E501
        (
            {
                "strategy": {"aggregator": "secagg", "aggregator_options": {"clip": 1.0}},
                "ledger": {"sign_updates": True},
            },
            "nothing to sign",
        ),
    ],
)
def test_ledger_settings_a_task_cannot_honour_are_refused_before_anything_is_written(
    tmp_path, sections, field
):
    with pytest.raises(ConfigError, match=field):
        run(make_config(**sections), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_result_entry_hash_the_validators_sign_is_the_stored_one(tmp_path):
    full = _run(tmp_path, 2, validators=2)
    entries = read_entries(tmp_path / "run" / "ledger.db")
    for i, e in enumerate(entries):
        if e["kind"] == "cosigned":
            result = next(x for x in reversed(entries[:i]) if x["kind"] == "round_result")
            assert e["body"]["result"] == entry_hash(canonical(result))
    assert full.ledger["entries"] == len(entries)


def test_a_round_result_replayed_later_in_the_chain_is_caught(tmp_path):
    def replay(entries, keys):
        result = next(e for e in entries if e["kind"] == "round_result")
        return [*entries, dict(result)]

    verdict = _rewritten(tmp_path, replay)
    assert not verdict.valid and "replayed or reordered" in verdict.first_bad["reason"]
