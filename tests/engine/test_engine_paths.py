"""Engine paths that other tests reach only in pieces, run end to end against an independent truth."""

import numpy as np

from deai.config import parse_config
from deai.data import load_dataset
from deai.engine.api import build_data, build_model, run
from deai.engine.participation import party_speeds
from deai.engine.simulation import Simulation
from tests.conftest import make_config


def _row_ids(x: np.ndarray, dataset_x: np.ndarray) -> np.ndarray:
    """Which row of the original data set each row of ``x`` is (digits has no two identical images)."""
    index = {row.tobytes(): i for i, row in enumerate(dataset_x)}
    assert len(index) == len(dataset_x)
    return np.array([index[row.tobytes()] for row in x], dtype=np.int64)


def _logreg_accuracy(layout, params: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    logits = x.astype(np.float64) @ layout.view(params, "W") + layout.view(params, "b")
    return float((logits.argmax(axis=1) == y).mean())


def test_replicated_data_trains_on_tiled_rows_and_evaluates_only_on_rows_never_trained_on():
    cfg = parse_config(make_config(run={"rounds": 2}, data={"num_parties": 10, "replicate": 3}))
    result = run(cfg, write=False)
    assert result.rounds == 2

    digits = load_dataset("digits")
    fed = build_data(cfg)
    evaluated = _row_ids(fed.x_eval, digits.x)
    partied = np.concatenate([_row_ids(fed.x_train, digits.x), _row_ids(fed.x_test, digits.x)])
    copies = np.bincount(partied, minlength=len(digits.y))
    # every row is either the task's evaluation row (never tiled, never trained on) or tiled 3 times
    assert (copies[evaluated] == 0).all()
    assert len(np.unique(evaluated)) == len(evaluated)
    rest = np.setdiff1d(np.arange(len(digits.y)), evaluated)
    assert (copies[rest] == 3).all()
    # the default holdout with replicate > 1 is 20% of each class (stratified)
    per_class = np.bincount(digits.y, minlength=10)
    np.testing.assert_array_equal(
        np.bincount(digits.y[evaluated], minlength=10), np.floor(0.2 * per_class + 0.5)
    )
    # and the accuracy the engine reports is its final model's on exactly those rows
    model = build_model(cfg, fed)
    assert result.final_accuracy == _logreg_accuracy(model.layout, result.params, fed.x_eval, fed.y_eval)


def _softmax_gd(W: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray, lr: float, steps: int):
    """``steps`` full-batch gradient steps on mean softmax cross-entropy, written independently of deai."""
    onehot = np.eye(W.shape[1])[y]
    for _ in range(steps):
        z = x @ W + b
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        W, b = W - lr * x.T @ (p - onehot) / len(y), b - lr * (p - onehot).mean(axis=0)
    return W, b


def test_fednova_with_partial_stragglers_equals_its_closed_form():
    seed, epochs, deadline, lr, rounds = 2, 6, 3.0, 0.3, 2
    cfg = parse_config(
        make_config(
            run={"rounds": rounds, "seed": seed},
            data={"num_parties": 4, "partition": "quantity_skew"},
            strategy={"algorithm": "fednova", "lr": lr, "local_epochs": epochs, "batch_size": 100_000},
            participation={"deadline": deadline, "speed_sigma": 1.0, "straggler_policy": "partial"},
        )
    )
    fed = build_data(cfg)
    model = build_model(cfg, fed)
    sim = Simulation(cfg, fed, model)
    W, b = (model.layout.view(sim.state.params, name).astype(np.float64) for name in ("W", "b"))

    # one full batch per epoch, so a party plans `epochs` steps; by the deadline it finishes
    # floor(deadline * speed) of them, and one that finishes none sends nothing
    steps = np.minimum(epochs, np.floor(deadline * party_speeds(seed, 4, 1.0))).astype(int)
    np.testing.assert_array_equal(steps, [0, 3, 6, 1])  # the case covers all three outcomes
    reporting = np.flatnonzero(steps > 0)
    p = fed.train_sizes[reporting] / fed.train_sizes[reporting].sum()
    tau = steps[reporting]
    for _ in range(rounds):
        moves = []
        for party in reporting:
            x, y = fed.party_train(party)
            W_i, b_i = _softmax_gd(W, b, x.astype(np.float64), y, lr, steps[party])
            moves.append((W_i - W, b_i - b))
        # Wang et al. 2020: tau_eff * sum_i p_i * delta_i / tau_i, applied with server lr 1
        tau_eff = p @ tau
        W = W + tau_eff * sum(w / t * dW for w, t, (dW, _) in zip(p, tau, moves, strict=True))
        b = b + tau_eff * sum(w / t * db for w, t, (_, db) in zip(p, tau, moves, strict=True))

    sim.run()
    assert [m["participants"] for m in sim.state.history] == [3, 3]
    assert [m["stragglers"] for m in sim.state.history] == [3, 3]
    np.testing.assert_allclose(model.layout.view(sim.state.params, "W"), W, atol=2e-5)
    np.testing.assert_allclose(model.layout.view(sim.state.params, "b"), b, atol=2e-5)
