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


def legacy_names(arrays):
    """A checkpoint's arrays as deai wrote them before named state (flat names, no version/sim_clock)."""
    prefixes = {"server/opt/": "server_", "server/rule/": "agg_", "server/dp/accountant/": "dp_"}
    plain = {"server/wall_time_s": "wall_time_s", "party/trained_rounds": "trained_rounds"}
    out = {}
    for key, value in arrays.items():
        if key in ("round", "config_toml"):
            out[key] = value
        elif key in plain:
            out[plain[key]] = value
        elif key not in ("server/round", "server/version", "server/sim_clock"):
            prefix = next(p for p in prefixes if key.startswith(p))
            out[prefixes[prefix] + key[len(prefix) :]] = value
    return out


def test_a_checkpoint_written_before_named_state_resumes_to_the_same_model(tmp_path):
    cfg = make_config(
        run={"rounds": 2},
        data={"num_parties": 8},
        strategy={"algorithm": "fedadam", "server_lr": 0.05, "aggregator": "centered_clipping",
                  "aggregator_options": {"clip_radius": 1.0}},
    )  # fmt: skip
    out = tmp_path / "run"
    run(cfg, out)
    latest = out / "checkpoints" / "latest.npz"
    params, layout, arrays = load_params(latest)
    assert "server/opt/m" in arrays and "server/rule/center" in arrays  # named state today
    save_params(latest, params, layout, **legacy_names(arrays))
    again = resume(out, rounds=4)
    straight = run({**cfg, "run": {"rounds": 4}}, write=False)
    assert again.rounds == 4 and again.model_hash == straight.model_hash
