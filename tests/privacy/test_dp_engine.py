"""DP-FedAvg through the engine and the `deai privacy` commands."""

import json
import math

import dp_accounting
import numpy as np
import pytest

from deai.cli import main
from deai.config import ConfigError
from deai.engine.api import resume, run
from tests.conftest import crashed_copy, make_config


def _reference_epsilon(z, q, steps, delta):
    acc = dp_accounting.rdp.RdpAccountant()
    event = (
        dp_accounting.GaussianDpEvent(z)
        if q == 1
        else dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z))
    )
    acc.compose(event, steps)
    return acc.get_epsilon(delta)


@pytest.mark.parametrize(
    "z,q,steps,delta",
    [(0.8, 0.01, 1000, 1e-5), (1.1, 0.1, 100, 1e-6), (2.0, 1.0, 30, 1e-5), (4.0, 0.05, 10, 1e-5)],
)
def test_privacy_epsilon_cli_equals_dp_accounting(capsys, z, q, steps, delta):
    code = main(
        [
            "privacy",
            "epsilon",
            "--noise-multiplier",
            str(z),
            "--sampling-rate",
            str(q),
            "--steps",
            str(steps),
            "--delta",
            str(delta),
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["accountant"] == "rdp"
    assert out["epsilon"] == pytest.approx(_reference_epsilon(z, q, steps, delta), rel=1e-6)


def test_privacy_calibrate_cli_reaches_the_target(capsys):
    assert (
        main(
            [
                "privacy",
                "calibrate",
                "--target-epsilon",
                "3",
                "--sampling-rate",
                "0.1",
                "--steps",
                "50",
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert _reference_epsilon(out["noise_multiplier"], 0.1, 50, 1e-5) == pytest.approx(3.0, rel=1e-3)


def test_epsilon_is_reported_every_round_and_matches_the_accountant():
    r = run(
        make_config(
            run={"rounds": 5},
            data={"num_parties": 40},
            participation={"fraction": 0.5, "poisson": True},
            privacy={"mode": "central", "noise_multiplier": 1.5},
        ),
        write=False,
    )
    eps = [m["epsilon"] for m in r.history]
    assert all(b > a for a, b in zip(eps, eps[1:], strict=False))
    assert eps[-1] == pytest.approx(_reference_epsilon(1.5, 0.5, 5, 1e-5), rel=1e-6)
    assert r.summary()["privacy"]["epsilon"] == eps[-1]


def test_budget_that_the_plan_exceeds_refuses_to_start_and_names_the_budget(tmp_path):
    cfg = make_config(
        run={"rounds": 50},
        data={"num_parties": 40},
        privacy={"mode": "central", "noise_multiplier": 1.0, "budget_epsilon": 2.0},
    )
    with pytest.raises(ConfigError, match=r"privacy.budget_epsilon=2.0 .* would be exceeded"):
        run(cfg, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_distributed_noise_stops_before_a_round_that_would_overshoot_the_budget():
    from deai.privacy.dp.accountant import compute_epsilon

    planned = compute_epsilon(2.0, 0.5, 30, 1e-5)
    r = run(
        make_config(
            run={"rounds": 30},
            data={"num_parties": 40},
            participation={"fraction": 0.5, "poisson": True, "dropout_rate": 0.3},
            privacy={"mode": "distributed", "noise_multiplier": 2.0, "budget_epsilon": planned * 1.01},
            strategy={"lr": 0.5, "aggregator": "secagg", "aggregator_options": {"clip": 2.0}},
        ),
        write=False,
    )
    assert r.rounds < 30 and "would be exceeded" in r.stopped
    assert r.history[-1]["epsilon"] <= planned * 1.01


def test_dp_fedavg_at_epsilon_8_stays_within_5_points_of_non_private():
    common = dict(
        run={"rounds": 30},
        data={"num_parties": 100},
        model={"kind": "mlp"},
        strategy={"lr": 0.3, "local_epochs": 5},
    )
    plain = run(make_config(**common), write=False)
    private = run(
        make_config(**common, privacy={"mode": "central", "target_epsilon": 8.0, "clip_norm": 1.0}),
        write=False,
    )
    assert private.history[-1]["epsilon"] == pytest.approx(8.0, rel=1e-3)
    assert private.final_accuracy >= plain.final_accuracy - 0.05, (
        private.final_accuracy,
        plain.final_accuracy,
    )


def test_central_and_distributed_noise_have_the_same_scale_on_the_aggregate():
    """Same z, C, q: the server-side noise on the average and the sum of party shares match in size."""
    base = dict(run={"rounds": 1}, data={"num_parties": 50}, strategy={"lr": 1e-9})
    norms = {}
    for mode in ("central", "distributed"):
        # distributed shares need secure aggregation; its per-coordinate clip (60) sits far above the
        # share's scale (z C / sqrt(qN) = 1.4), so the encoding does not cut the noise
        private = (
            {"aggregator": "secagg", "aggregator_options": {"clip": 60.0}} if mode == "distributed" else {}
        )
        r = run(
            make_config(
                **base | {"strategy": {"lr": 1e-9, **private}},
                privacy={"mode": mode, "noise_multiplier": 10.0, "clip_norm": 1.0},
            ),
            write=False,
        )
        norms[mode] = float(np.linalg.norm(r.params))
    expected = 10.0 * 1.0 / 50 * math.sqrt(650)  # z C / (qN) per coordinate, 650 coordinates
    for mode, n in norms.items():
        assert n == pytest.approx(expected, rel=0.15), mode


def test_resume_restores_the_accountant(tmp_path):
    cfg = make_config(
        run={"rounds": 6, "checkpoint_every": 3},
        data={"num_parties": 30},
        participation={"fraction": 0.5, "poisson": True},
        privacy={"mode": "central", "noise_multiplier": 1.2},
    )
    full = run(cfg, out=tmp_path / "full")
    again = resume(crashed_copy(tmp_path / "full", at_round=3))
    assert again.model_hash == full.model_hash
    assert again.history[-1]["epsilon"] == pytest.approx(full.history[-1]["epsilon"], rel=1e-12)


def test_example_level_dp_sgd_reports_epsilon_and_still_learns():
    r = run(
        make_config(run={"rounds": 10}, privacy={"example_noise_multiplier": 1.0, "example_clip_norm": 1.0}),
        write=False,
    )
    p = r.summary()["privacy"]
    assert 0 < p["example_epsilon"] < math.inf
    assert r.final_accuracy > 0.8


def test_privacy_with_a_robust_aggregator_is_refused():
    with pytest.raises(ConfigError, match="sum-based strategy.aggregator"):
        run(make_config(strategy={"aggregator": "median"}, privacy={"mode": "central"}), write=False)


@pytest.mark.parametrize("z", [0.0, 0.5])
def test_distributed_dp_under_secagg_and_under_he_agree(z):
    """Two independent private sums (SecAgg+ masks, CKKS ciphertexts) of the same clipped updates agree up
    to encoding precision when no noise is added, and both account the same epsilon; their noise differs
    (discrete shares after encoding under SecAgg+, lattice shares before encryption under HE).
    Distributed DP without one of them is refused (see test_review_regressions)."""
    results = {}
    # HE's flooding of the release is set to the error bound alone here: this compares the arithmetic
    for aggregator, options in (("secagg", {"clip": 1.0}), ("he_ckks", {"flooding_bits": 0})):
        cfg = make_config(
            run={"rounds": 3},
            data={"num_parties": 12},
            privacy={"mode": "distributed", "noise_multiplier": z, "clip_norm": 1.0},
            strategy={"lr": 0.5, "aggregator": aggregator, "aggregator_options": options},
        )
        results[aggregator] = run(cfg, write=False)
    if z == 0:
        np.testing.assert_allclose(results["secagg"].params, results["he_ckks"].params, atol=1e-4)
    assert results["secagg"].history[-1]["epsilon"] == results["he_ckks"].history[-1]["epsilon"]


@pytest.mark.slow
def test_opacus_engine_trains_a_cnn_with_dp_sgd_and_reports_epsilon():
    pytest.importorskip("opacus")
    cfg = make_config(
        run={"rounds": 3},
        data={"num_parties": 4, "max_examples": 400},
        model={"kind": "cnn"},
        strategy={"lr": 0.1, "local_epochs": 2},
        privacy={
            "example_noise_multiplier": 0.8,
            "example_clip_norm": 1.0,
            "example_dp_engine": "opacus",
            "simulation": True,
        },
    )
    r = run(cfg, write=False)
    assert r.rounds == 3 and np.isfinite(r.params).all()
    assert 0 < r.summary()["privacy"]["example_epsilon"] < math.inf
    assert r.history[-1]["mean_local_steps"] > 0


def test_opacus_engine_is_refused_outside_simulation_mode():
    cfg = make_config(
        model={"kind": "cnn"}, privacy={"example_noise_multiplier": 1.0, "example_dp_engine": "opacus"}
    )
    with pytest.raises(ConfigError, match="torchcsprng"):
        run(cfg, write=False)


def test_opacus_engine_needs_a_torch_model():
    with pytest.raises(ConfigError, match="example_dp_engine 'opacus'"):
        run(
            make_config(privacy={"example_noise_multiplier": 1.0, "example_dp_engine": "opacus"}), write=False
        )
