"""Commit–reveal under secure aggregation: parties commit to their masked inputs before any is revealed."""

import numpy as np
import pytest

import deai.privacy.secagg.phases as phases
from deai.config import ConfigError
from deai.engine.api import run
from deai.verify.ledger import Head, read_entries, verify
from tests.conftest import make_config

SECAGG = {"aggregator": "secagg", "aggregator_options": {"clip": 1.0}}


def _run(tmp_path, name, **ledger):
    cfg = make_config(run={"rounds": 3, "seed": 0}, data={"num_parties": 8}, strategy=SECAGG, ledger=ledger)
    return run(cfg, tmp_path / name)


def test_honest_commitments_change_nothing_in_the_sum(tmp_path):
    plain = _run(tmp_path, "plain")
    committed = _run(tmp_path, "committed", commit_reveal=True)
    np.testing.assert_allclose(committed.params, plain.params, atol=1e-5)  # fixed-point encoding only
    assert verify(tmp_path / "committed" / "ledger.db", Head.from_dict(committed.ledger)).valid
    results = [e for e in read_entries(tmp_path / "committed" / "ledger.db") if e["kind"] == "round_result"]
    assert all(r["body"]["rejected"] == {} and len(r["body"]["participants"]) == 8 for r in results)


def test_a_masked_input_that_breaks_its_commitment_is_dropped_and_recorded(tmp_path, monkeypatch):
    honest = phases.PartyStages._answer_one

    def answer(self, kind, key, payload):
        out = honest(self, kind, key, payload)
        if kind == phases.MASKED_REVEAL and key == 3:  # party 3 reveals another masked input than committed
            out = bytes([out[0] ^ 1]) + out[1:]
        return out

    monkeypatch.setattr(phases.PartyStages, "_answer_one", answer)
    result = _run(tmp_path, "cheat", commit_reveal=True)
    path = tmp_path / "cheat" / "ledger.db"
    assert verify(path, Head.from_dict(result.ledger)).valid
    for e in (e for e in read_entries(path) if e["kind"] == "round_result"):
        assert e["body"]["rejected"] == {"3": "reveal_mismatch"} and 3 not in e["body"]["participants"]
    assert all(m["rejected_reasons"] == {"reveal_mismatch": 1} for m in result.history)


def test_commit_reveal_under_he_is_refused_by_name(tmp_path):
    he = {"aggregator": "he_ckks"}
    with pytest.raises(ConfigError, match="use secagg, or set ledger.commit_reveal = false"):
        run(make_config(strategy=he, ledger={"commit_reveal": True}), tmp_path / "run")
    assert not (tmp_path / "run").exists()
