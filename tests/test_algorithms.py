"""Each federated algorithm against an independent truth (closed form or hand computation)."""

import numpy as np

from deai.aggregate import FedNova, RoundContext, WeightedMean
from deai.config import parse_config
from deai.engine.api import build_data, build_model, run
from deai.engine.simulation import Simulation
from deai.optim import ServerAdaptive
from deai.train.scaffold import ServerControl, party_control_update
from tests.conftest import make_config


def _softmax_regression_grad(W, b, x, y):
    """Closed-form gradient of mean softmax cross-entropy (written independently of deai)."""
    logits = x @ W + b
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    return x.T @ p / len(y), p.mean(axis=0)


def test_fedavg_with_one_party_and_one_step_equals_centralized_gradient_descent():
    cfg = parse_config(
        make_config(
            run={"rounds": 5},
            data={"num_parties": 1, "test_fraction": 0.2},
            strategy={"lr": 0.3, "batch_size": 100_000, "local_epochs": 1},
        )
    )
    sim = Simulation(cfg, build_data(cfg), model := build_model(cfg, fed := build_data(cfg)))
    sim.run()
    x, y = fed.x_train.astype(np.float64), fed.y_train
    W, b = np.zeros((64, 10)), np.zeros(10)
    for _ in range(5):
        gW, gb = _softmax_regression_grad(W, b, x, y)
        W, b = W - 0.3 * gW, b - 0.3 * gb
    np.testing.assert_allclose(model.layout.view(sim.state.params, "W"), W, atol=2e-5)
    np.testing.assert_allclose(model.layout.view(sim.state.params, "b"), b, atol=2e-5)


def test_fedavg_round_is_the_size_weighted_mean_of_local_models():
    cfg = parse_config(
        make_config(
            run={"rounds": 1},
            data={"partition": "quantity_skew", "num_parties": 4},
            strategy={"lr": 0.2, "batch_size": 16},
        )
    )
    fed = build_data(cfg)
    model = build_model(cfg, fed)
    sim = Simulation(cfg, fed, model)
    w0 = sim.state.params.copy()
    sim.run()
    # Independent truth: train each party alone with the trainer, then average by hand.
    from deai.train import train_parties

    res = train_parties(
        model, fed.x_train, fed.y_train, fed.train_offsets, np.arange(4), w0, sim.strategy.local, 0, 1
    )
    n = fed.train_sizes.astype(np.float64)
    expected = w0 + (n[:, None] * res.deltas).sum(axis=0) / n.sum()
    np.testing.assert_allclose(sim.state.params, expected, rtol=1e-5, atol=1e-6)


def test_fedprox_with_mu_zero_equals_fedavg_exactly():
    base = make_config(
        run={"rounds": 4},
        data={"partition": "dirichlet", "alpha": 0.3},
        strategy={"local_epochs": 3, "lr": 0.2},
    )
    avg = run(base, write=False)
    prox = run(
        make_config(**{**base, "strategy": {**base["strategy"], "algorithm": "fedprox", "mu": 0.0}}),
        write=False,
    )
    assert prox.model_hash == avg.model_hash
    strong = run(
        make_config(**{**base, "strategy": {**base["strategy"], "algorithm": "fedprox", "mu": 1.0}}),
        write=False,
    )
    assert strong.model_hash != avg.model_hash
    # the proximal term pulls local models toward the global one: smaller updates
    assert strong.history[0]["update_norm_mean"] < avg.history[0]["update_norm_mean"]


def test_fedadam_server_step_equals_hand_computed_adam():
    opt = ServerAdaptive("adam", lr=0.05, beta1=0.9, beta2=0.99, tau=1e-3)
    x = np.array([1.0, -2.0, 0.5], np.float32)
    deltas = [np.array([0.1, -0.3, 0.0], np.float32), np.array([-0.2, 0.1, 0.4], np.float32)]
    state = opt.init(3)
    m, v, xe = np.zeros(3), np.full(3, 1e-6), x.astype(np.float64)
    for d in deltas:
        x, state = opt.step(x, d, state)
        # Reddi et al. 2021, Algorithm 2 (FedAdam), written out by hand
        m = 0.9 * m + 0.1 * d
        v = 0.99 * v + 0.01 * d**2
        xe = xe + 0.05 * m / (np.sqrt(v) + 1e-3)
    np.testing.assert_allclose(x, xe, rtol=1e-6)


def test_fedyogi_and_fedadagrad_second_moments_follow_their_rules():
    d = np.array([0.3, -0.1], np.float32)
    v0 = np.array([0.5, 1e-6], np.float32)
    _, s = ServerAdaptive("yogi", beta2=0.9).step(
        np.zeros(2, np.float32), d, {"m": np.zeros(2, np.float32), "v": v0}
    )
    np.testing.assert_allclose(s["v"], v0 - 0.1 * d**2 * np.sign(v0 - d**2), rtol=1e-6)
    _, s = ServerAdaptive("adagrad").step(np.zeros(2, np.float32), d, {"m": np.zeros(2, np.float32), "v": v0})
    np.testing.assert_allclose(s["v"], v0 + d**2, rtol=1e-6)


def test_fedadam_round_in_the_engine_applies_adam_to_the_fedavg_delta():
    avg = run(make_config(run={"rounds": 1}), write=False)  # server lr 1: params = mean delta
    adam = run(
        make_config(run={"rounds": 1}, strategy={"algorithm": "fedadam", "server_lr": 0.02}), write=False
    )
    delta = avg.params.astype(np.float64)  # initial params are zeros
    expected = 0.02 * (0.1 * delta) / (np.sqrt(0.99 * 1e-6 + 0.01 * delta**2) + 1e-3)
    np.testing.assert_allclose(adam.params, expected, rtol=1e-4, atol=1e-7)


def test_fednova_normalizes_by_local_steps():
    updates = np.array([[2.0, 0.0], [0.0, 6.0]], np.float32)
    weights = np.array([1.0, 3.0])
    steps = np.array([2, 6])
    ctx = RoundContext(round=1, party_ids=np.arange(2), steps=steps)
    p = weights / weights.sum()
    tau_eff = (p * steps).sum()
    expected = tau_eff * (p[0] * updates[0] / 2 + p[1] * updates[1] / 6)
    np.testing.assert_allclose(FedNova()(updates, weights, ctx), expected, rtol=1e-6)
    equal = RoundContext(round=1, party_ids=np.arange(2), steps=np.array([4, 4]))
    np.testing.assert_allclose(
        FedNova()(updates, weights, equal), WeightedMean()(updates, weights, equal), rtol=1e-6
    )


def test_scaffold_control_update_is_option_two():
    c, c_i = np.array([0.5, -0.5], np.float32), np.array([[0.1, 0.2]], np.float32)
    deltas = np.array([[-1.0, 2.0]], np.float32)
    new_ci = party_control_update(c_i, c, deltas, np.array([5]), lr=0.1)
    np.testing.assert_allclose(new_ci[0], c_i[0] - c - deltas[0] / (5 * 0.1), rtol=1e-6)
    server = ServerControl(dim=2, weights=np.ones(4))
    server.c[:] = c
    server.update(np.array([1]), new_ci - c_i)
    np.testing.assert_allclose(server.c, c + (1 / 4) * (new_ci[0] - c_i[0]), rtol=1e-6)


# The shards split (20 parties, two label shards each, 5 local epochs, lr 0.1), seeds 0-4, measured:
#   accuracy after 10 rounds   FedAvg   0.897 0.908 0.881 0.894 0.894  (mean 0.895)
#                              SCAFFOLD 0.906 0.919 0.894 0.914 0.911  (mean 0.909)
#   rounds to 90%              FedAvg   11  6 17  9  9   SCAFFOLD 10  4 14  6  6
# Seeds 5-9 and an earlier per-party test split gave the same picture: SCAFFOLD never behind after 10
# rounds (once level), ahead by 0.014-0.021 on average; the rounds-to-90% gap swung from 2.4 to 4.8 rounds
# and tied on some seeds, so the claim is made at a fixed round budget. One of ~360 test rows is 0.0028.
def test_scaffold_beats_fedavg_after_ten_rounds_on_pathological_split_over_seeds():
    accuracy = {"fedavg": [], "scaffold": []}
    for seed in range(5):
        for algorithm, after_ten in accuracy.items():
            config = make_config(
                run={"rounds": 10, "seed": seed},
                data={"num_parties": 20, "partition": "shards", "shards_per_party": 2},
                strategy={"lr": 0.1, "local_epochs": 5, "algorithm": algorithm},
            )
            after_ten.append(run(config, write=False).final_accuracy)
    fedavg, scaffold = np.array(accuracy["fedavg"]), np.array(accuracy["scaffold"])
    assert (scaffold >= fedavg).all(), accuracy
    assert scaffold.mean() - fedavg.mean() >= 0.007, accuracy


def test_personalization_helps_on_two_label_parties():
    r = run(
        make_config(
            run={"rounds": 10},
            data={"num_parties": 20, "partition": "shards"},
            strategy={"lr": 0.1, "personalization_epochs": 2},
        ),
        write=False,
    )
    p = r.personalization
    assert p["personalized"] > p["global_on_party_tests"] + 0.02
