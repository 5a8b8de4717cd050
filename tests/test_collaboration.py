"""Local-only, federated and pooled arms of `deai compare`, checked against direct computations."""

import numpy as np
import pytest

from deai.collaboration import compare, local_only_score, markdown, pooled_score, t_interval
from deai.config import ConfigError, parse_config
from deai.engine.api import build_data, build_model, run
from deai.engine.strategy import build_strategy
from deai.evaluation import evaluate


def cfg_for(**strategy):
    return parse_config(
        {
            "run": {"rounds": 4, "seed": 0},
            "data": {"dataset": "digits", "num_parties": 5, "holdout_fraction": 0.2, "test_fraction": 0.0},
            "strategy": {"lr": 0.5, "batch_size": 10_000, "local_epochs": 2, **strategy},  # full-batch GD
        }
    )


def gradient_descent(model, w, x, y, steps, lr, class_weights):
    """Plain full-batch GD through the model's own loss, one party at a time (no batched trainer)."""
    weight = (
        np.ones(len(y), np.float32) if class_weights is None else np.asarray(class_weights, np.float32)[y]
    )
    for _ in range(steps):
        _, grad = model.loss_grad(w[None], x[None], y[None], weight[None])
        w = w - lr * grad[0]
    return w


def test_t_interval_matches_the_closed_form():
    v = [0.41, 0.45, 0.44, 0.47, 0.43]
    mean, lo, hi = t_interval(v)
    half = 2.7764451051977987 * np.std(v, ddof=1) / np.sqrt(5)  # t(0.975, df=4)
    assert mean == pytest.approx(np.mean(v)) and (lo, hi) == pytest.approx((mean - half, mean + half))


@pytest.mark.parametrize("weighting", ["none", "balanced"])
def test_local_only_is_each_party_trained_alone_and_weighted_by_size(weighting):
    cfg = cfg_for(class_weighting=weighting)
    fed = build_data(cfg)
    model = build_model(cfg, fed)
    spec = build_strategy(cfg.strategy, np.bincount(fed.y_train, minlength=fed.num_classes)).local
    w0 = model.init_params(0)
    scores = []
    for p in range(fed.num_parties):
        x, y = fed.party_train(p)
        w = gradient_descent(model, w0, x, y, 4 * 2, 0.5, spec.class_weights)
        scores.append(evaluate(model, w, fed.x_eval, fed.y_eval)["balanced_accuracy"])
    expected = np.average(scores, weights=fed.train_sizes)
    assert local_only_score(cfg, fed, model) == pytest.approx(expected, abs=1e-9)


def test_pooled_is_one_party_holding_every_row_and_equals_one_party_fedavg():
    cfg = cfg_for()
    fed = build_data(cfg)
    model = build_model(cfg, fed)
    w = gradient_descent(model, model.init_params(0), fed.x_train, fed.y_train, 8, 0.5, None)
    direct = evaluate(model, w, fed.x_eval, fed.y_eval)["balanced_accuracy"]
    assert pooled_score(cfg, fed, model) == pytest.approx(direct, abs=1e-9)
    # a federation of one party holding everything is the pooled model (full batch: order cannot matter)
    one = cfg.with_sections(data={"num_parties": 1})
    assert run(one, write=False).final_balanced_accuracy == pytest.approx(direct, abs=1e-9)


def test_compare_pairs_seeds_and_reports_every_arm():
    cfg = cfg_for(batch_size=32)
    report = compare(cfg, ["fedavg", "scaffold"], [0, 1, 2], references=False)
    rows = {r["model"]: r for r in report["rows"]}
    assert list(rows) == [
        "local-only",
        "federated: fedavg",
        "federated: scaffold",
        "pooled",
        "majority class (chance)",
    ]
    fedavg, pooled = np.array(rows["federated: fedavg"]["per_seed"]), np.array(rows["pooled"]["per_seed"])
    for seed, score in enumerate(fedavg):
        assert score == run(cfg.with_sections(run={"seed": seed}), write=False).final_balanced_accuracy
    assert rows["federated: fedavg"]["vs_pooled"]["mean"] == pytest.approx((fedavg - pooled).mean())
    assert rows["majority class (chance)"]["balanced_accuracy"] == pytest.approx(0.1)
    assert "| federated: scaffold |" in markdown(report)


def test_compare_refuses_what_it_cannot_measure_honestly():
    no_holdout = parse_config({"data": {"dataset": "digits"}})
    with pytest.raises(ConfigError, match="data.holdout_fraction"):
        compare(no_holdout, ["fedavg"], [0, 1])
    with pytest.raises(ConfigError, match="options given for fedadam"):
        compare(cfg_for(), ["fedavg"], [0, 1], strategy_options={"fedadam": {"server_lr": 0.03}})
    with pytest.raises(ConfigError, match="mu applies only to algorithm .fedprox."):
        compare(cfg_for(), ["fedavg"], [0, 1], strategy_options={"fedavg": {"mu": 0.1}})


def test_compare_cli_writes_its_table(tmp_path):
    from deai.cli import main

    cfg = tmp_path / "c.toml"
    cfg.write_text(cfg_for(batch_size=32).to_toml())
    code = main(["compare", str(cfg), "--seeds", "2", "--no-references", "--out", str(tmp_path / "o")])
    assert code == 0 and "| pooled |" in (tmp_path / "o" / "collaboration.md").read_text()
    assert main(["compare", str(cfg), "--seeds", "1"]) == 2
    assert main(["compare", str(cfg), "--strategy-option", "bad"]) == 2
