"""Valuation of a real federation with planted parties: duplicates, noisy labels, a free rider."""

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from deai.config import ConfigError, parse_config
from deai.data.datasets import load_dataset
from deai.data.federated import FederatedData
from deai.engine.api import resume, run
from deai.engine.simulation import Simulation
from deai.incentives.valuation import Valuation, value
from deai.models import LogisticRegression
from deai.verify.identity import Identity
from deai.verify.ledger import Head, Ledger, read_entries, verify
from tests.conftest import crashed_copy, make_config

ROWS = 120
NAMES = ("clinic-a", "clinic-a-copy", "noisy-labels", "clinic-c", "free-rider", "clinic-e")


def planted_federation():
    """Six parties over digits: 0 and 1 hold the same rows, 2 has random labels, 4 will send nothing."""
    ds = load_dataset("digits")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(ds.y))
    blocks = [order[i * ROWS : (i + 1) * ROWS] for i in range(5)]
    rows = [blocks[0], blocks[0], blocks[1], blocks[2], blocks[3], blocks[4]]
    x = np.concatenate([ds.x[r] for r in rows])
    y = np.concatenate([ds.y[r] for r in rows])
    y[2 * ROWS : 3 * ROWS] = rng.integers(0, ds.num_classes, ROWS)  # party 2's labels are noise
    held = order[5 * ROWS :]
    offsets = np.arange(7) * ROWS
    return FederatedData(
        x_train=x, y_train=y, train_offsets=offsets,
        x_test=x[:0], y_test=y[:0], test_offsets=np.zeros(7, dtype=np.int64),
        num_classes=ds.num_classes, image_shape=ds.image_shape, party_names=NAMES,
        x_heldout=ds.x[held], y_heldout=ds.y[held],
    )  # fmt: skip


class FreeRider:
    """The party side of party 4: it trains nothing and sends the global model back (a zero update)."""

    def __init__(self, party):
        self.party = party

    def train(self, task, party_ids, step_budget=None):
        batch = self.party.train(task, party_ids, step_budget)
        batch.deltas[batch.party_ids == 4] = 0.0
        return batch

    def __getattr__(self, name):
        return getattr(self.party, name)


@pytest.fixture(scope="module")
def values():
    sections = {"run": {"rounds": 6, "seed": 0}, "data": {"num_parties": 6}, "strategy": {"lr": 0.3}}
    cfg = parse_config(make_config(**sections))
    fed = planted_federation()
    sim = Simulation(cfg, fed, LogisticRegression(fed.num_features, fed.num_classes))
    sim.transport.party = FreeRider(sim.transport.party)
    valuers = {m: Valuation.of(sim, m) for m in ("exact", "gtg", "tmc", "loo")}

    def every(record):
        for v in valuers.values():
            v(record)

    sim.run(None, every)
    return {m: np.array([v.totals[p] for p in range(6)]) for m, v in valuers.items()}


def test_sampled_methods_match_exact_shapley_on_the_planted_federation(values):
    exact = values["exact"]
    spread = exact.max() - exact.min()
    for method in ("gtg", "tmc"):
        assert np.max(np.abs(values[method] - exact)) <= 0.10 * spread, method
        assert spearmanr(values[method], exact).statistic >= 0.9, method


def test_planted_parties_rank_as_they_should(values):
    exact = values["exact"]
    clean = exact[[0, 1, 3, 5]]
    # the same rows, shuffled by each party's own stream: nearly the same update, nearly the same value
    assert exact[0] == pytest.approx(exact[1], rel=0.05)
    assert exact[2] < clean.min()  # random labels are worth less than any clean party
    # the free rider declares examples it never trained on, so its zero update dilutes FedAvg's mean: it is
    # worth less than nothing, and pay in proportion to non-negative value gives it exactly nothing
    assert exact[4] < 0 and max(exact[4], 0.0) == 0.0
    assert exact[4] < clean.min()


def test_leave_one_out_misses_what_duplicates_bring(values):
    loo, exact = values["loo"], values["exact"]
    # removing one copy of clinic A loses little (the other copy remains): LOO undervalues both copies
    # relative to the clean party C, while Shapley credits each copy half of what A's data bring
    assert loo[0] / loo[3] < exact[0] / exact[3]


def test_value_refuses_what_it_cannot_value_by_name(tmp_path):
    with pytest.raises(ConfigError, match="secagg"):
        value(make_config(strategy={"aggregator": "secagg", "aggregator_options": {"clip": 1.0}}), "gtg")
    with pytest.raises(ConfigError, match="DP noise hides"):
        value(make_config(privacy={"mode": "central", "noise_multiplier": 1.0}), "gtg")
    with pytest.raises(ConfigError, match="--method exact enumerates.*use gtg or tmc"):
        value(make_config(data={"num_parties": 20}), "exact")
    with pytest.raises(ConfigError, match="--method must be one of"):
        value(make_config(), "banzhaf")


def _valued_run(tmp_path, rounds=4, **sections):
    cfg = make_config(
        run={"rounds": rounds, "seed": 1, "checkpoint_every": 1},
        data={"num_parties": 6, "holdout_fraction": 0.2},
        valuation={"method": "gtg"},
        **sections,
    )
    return cfg, run(cfg, tmp_path / "run")


def test_a_valued_run_records_every_round_in_its_metrics_and_its_ledger(tmp_path):
    cfg, result = _valued_run(tmp_path, ledger={"validators": 3})
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(set(m["values"]) == {str(p) for p in range(6)} for m in lines)
    path = tmp_path / "run" / "ledger.db"
    assert verify(path, Head.from_dict(result.ledger)).valid
    entries = [e for e in read_entries(path) if e["kind"] == "valuation"]
    assert [e["body"]["values"] for e in entries] == [m["values"] for m in lines]
    # the same task valued in memory by `deai value` gives the same totals
    totals = value(cfg, "gtg")["values"]
    for p in range(6):
        assert totals[f"party-{p:03d}"] == pytest.approx(sum(m["values"][str(p)] for m in lines), abs=1e-6)


def test_resume_values_the_replayed_rounds_as_before(tmp_path):
    _, full = _valued_run(tmp_path, rounds=5)
    before = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    crashed = crashed_copy(tmp_path / "run", 2)
    for ckpt in (crashed / "checkpoints").glob("round-*.npz"):
        if int(ckpt.stem.split("-")[1]) > 2:
            ckpt.unlink()
    again = resume(crashed)
    after = (crashed / "metrics.jsonl").read_text().splitlines()
    strip = ("wall_time_s",)
    assert [{k: v for k, v in json.loads(x).items() if k not in strip} for x in after] == [
        {k: v for k, v in json.loads(x).items() if k not in strip} for x in before
    ]
    assert again.ledger["hash"] == full.ledger["hash"]  # the valuation entries were not appended twice


def test_a_valuation_entry_for_parties_the_round_never_accepted_is_caught(tmp_path):
    _valued_run(tmp_path, rounds=2)
    src = tmp_path / "run"
    keys = {i.id: i for i in (Identity.load(p) for p in (src / "keys").glob("*.key"))}
    entries = read_entries(src / "ledger.db")
    entries[-1]["body"]["values"]["99"] = 1.0  # pay someone who never sent an update
    forged = Ledger(tmp_path / "forged.db", entries[0]["task"])
    for e in entries:
        forged.append(e["kind"], e["body"], keys[e["signer"]], e["round"])
    forged.close()
    verdict = verify(tmp_path / "forged.db")
    assert not verdict.valid and "not accepted: ['99']" in verdict.first_bad["reason"]
