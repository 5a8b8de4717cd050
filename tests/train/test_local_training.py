"""The batched trainer must equal a plain per-party SGD loop with the same batch order."""

import numpy as np

from deai.data import build_federation, load_dataset
from deai.models import MLP, LogisticRegression
from deai.rng import Purpose, key, party_permutations
from deai.train import LocalSpec, planned_steps, train_parties


def _reference_sgd(model, fed, party, w0, spec, seed, round_, budget=None):
    """Textbook loop: for each epoch, for each mini-batch of this party's permutation, one SGD step."""
    start, stop = fed.train_offsets[party], fed.train_offsets[party + 1]
    n = stop - start
    w = w0.copy()
    steps = 0
    limit = spec.epochs * -(-n // spec.batch_size) if budget is None else budget
    for e in range(spec.epochs):
        perm = party_permutations(key(seed, round_, Purpose.PERMUTE, e), np.array([party]), np.array([n]))[
            0, :n
        ]
        for b in range(0, n, spec.batch_size):
            if steps == limit:
                return w - w0, steps
            rows = start + perm[b : b + spec.batch_size]
            x, y = fed.x_train[rows][None], fed.y_train[rows][None]
            _, g = model.loss_grad(w[None], x, y, np.ones((1, len(rows)), np.float32))
            g = g[0] + spec.prox_mu * (w - w0)
            w = w - spec.lr * g
            steps += 1
    return w - w0, steps


def _fed(num_parties=7, scheme="quantity_skew"):
    return build_federation(load_dataset("digits"), num_parties, scheme, seed=3, quantity_sigma=1.0)


def test_batched_training_equals_per_party_loop_with_skewed_sizes():
    fed = _fed()
    model = MLP(fed.num_features, fed.num_classes, hidden=16)
    w0 = model.init_params(0)
    spec = LocalSpec(epochs=2, batch_size=16, lr=0.1, prox_mu=0.05)
    parties = np.array([5, 0, 3, 6])
    res = train_parties(model, fed.x_train, fed.y_train, fed.train_offsets, parties, w0, spec, 11, 4)
    assert len(set(fed.train_sizes[parties])) > 1  # sizes differ, so the active prefix shrinks
    for i, p in enumerate(parties):
        ref, steps = _reference_sgd(model, fed, p, w0, spec, 11, 4)
        np.testing.assert_allclose(res.deltas[i], ref, rtol=1e-4, atol=1e-5)
        assert res.steps[i] == steps == planned_steps(fed.train_sizes[[p]], spec)[0]


def test_step_budget_stops_each_party_early():
    fed = _fed()
    model = LogisticRegression(fed.num_features, fed.num_classes)
    w0 = model.init_params(0)
    spec = LocalSpec(epochs=1, batch_size=8, lr=0.2)
    parties = np.arange(fed.num_parties)
    budget = np.array([1, 2, 3, 1, 2, 3, 4])
    res = train_parties(model, fed.x_train, fed.y_train, fed.train_offsets, parties, w0, spec, 0, 1, budget)
    for i, p in enumerate(parties):
        ref, steps = _reference_sgd(model, fed, p, w0, spec, 0, 1, budget=min(budget[i], 10**9))
        np.testing.assert_allclose(res.deltas[i], ref, rtol=1e-5, atol=1e-6)
        assert res.steps[i] == steps


def test_party_result_does_not_depend_on_who_else_trains():
    fed = _fed()
    model = LogisticRegression(fed.num_features, fed.num_classes)
    w0 = model.init_params(0)
    spec = LocalSpec(epochs=1, batch_size=8, lr=0.2)
    alone = train_parties(model, fed.x_train, fed.y_train, fed.train_offsets, np.array([4]), w0, spec, 0, 2)
    crowd = train_parties(
        model, fed.x_train, fed.y_train, fed.train_offsets, np.array([1, 4, 2]), w0, spec, 0, 2
    )
    np.testing.assert_array_equal(alone.deltas[0], crowd.deltas[1])


def test_class_weights_scale_the_loss_of_rare_classes():
    fed = _fed(3, "iid")
    model = LogisticRegression(fed.num_features, fed.num_classes)
    w0 = model.init_params(0)
    plain = LocalSpec(epochs=1, batch_size=10_000, lr=1.0)
    weights = tuple(float(c == 3) for c in range(10))  # only class 3 counts
    weighted = LocalSpec(epochs=1, batch_size=10_000, lr=1.0, class_weights=weights)
    res = train_parties(model, fed.x_train, fed.y_train, fed.train_offsets, np.array([0]), w0, weighted, 0, 1)
    rows = np.arange(fed.train_offsets[0], fed.train_offsets[1])
    only3 = rows[fed.y_train[rows] == 3]
    _, g = model.loss_grad(
        w0[None], fed.x_train[only3][None], fed.y_train[only3][None], np.ones((1, len(only3)), np.float32)
    )
    np.testing.assert_allclose(res.deltas[0], -g[0], rtol=1e-5, atol=1e-6)
    other = train_parties(model, fed.x_train, fed.y_train, fed.train_offsets, np.array([0]), w0, plain, 0, 1)
    assert not np.allclose(other.deltas[0], res.deltas[0])
