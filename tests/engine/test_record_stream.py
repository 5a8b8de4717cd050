"""The record stream subscribers see, and checkpoints written before the record stream existed."""

import numpy as np

from deai.engine.api import resume, run
from deai.params import load_params, save_params
from tests.conftest import make_config


def test_on_record_sees_each_released_round_with_its_accepted_batch():
    records = []
    r = run(make_config(run={"rounds": 3}, data={"num_parties": 8}), write=False, on_record=records.append)
    assert [rec.round for rec in records] == [1, 2, 3]
    assert [rec.version for rec in records] == [1, 2, 3]  # every round released a model
    last = records[-1]
    np.testing.assert_array_equal(last.params, r.params)
    assert sorted(last.accepted.tolist()) == list(range(8)) and last.batch.deltas.shape[0] == 8
    np.testing.assert_allclose(last.weights.sum(), 1.0)
    # the released update is the example-weighted mean of the accepted rows
    w = last.batch.weights / last.batch.weights.sum()
    np.testing.assert_allclose(last.aggregate, w @ last.batch.deltas, rtol=1e-5, atol=1e-7)


def test_a_checkpoint_without_version_and_sim_clock_still_resumes(tmp_path):
    cfg = make_config(run={"rounds": 2}, data={"num_parties": 8})
    out = tmp_path / "run"
    run(cfg, out)
    latest = out / "checkpoints" / "latest.npz"
    params, layout, arrays = load_params(latest)
    older = {k: v for k, v in arrays.items() if k not in ("version", "sim_clock")}
    save_params(latest, params, layout, **older)
    again = resume(out, rounds=3)
    assert again.rounds == 3
