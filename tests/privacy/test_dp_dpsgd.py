"""Batched per-example clipping (DP-SGD, Abadi et al. 2016) against per-example loops."""

import numpy as np
import pytest
import torch

from deai.models import LogisticRegression
from deai.models.torch_adapter import TorchModel
from deai.privacy.dp.dpsgd import dp_sgd_noise, per_example_clipped_mean_grad

P, B, F, C = 3, 6, 4, 3


def party_data(seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(P, B, F)).astype(np.float32) * 2
    y = rng.integers(0, C, size=(P, B)).astype(np.int64)
    mask = np.ones((P, B), np.float32)
    mask[1, 4:] = 0  # party 1 has 4 real examples
    mask[2, :] = 0  # party 2 has none
    y[mask == 0] = 99  # padding labels are garbage and must not matter
    return X, y, mask


def logistic_example_grad(w: np.ndarray, x: np.ndarray, label: int) -> tuple[float, np.ndarray]:
    """Closed-form softmax-regression loss and gradient of one example (layout: W [F, C], then b [C])."""
    Wm, b = w[: F * C].reshape(F, C), w[F * C :]
    logits = x @ Wm + b
    p = np.exp(logits - logits.max())
    p /= p.sum()
    err = p - np.eye(C)[label]
    return -np.log(p[label]), np.concatenate([np.outer(x, err).ravel(), err])


def loop_reference(example_grad, W, X, y, mask, clip, denominator=None):
    loss, grad, frac = np.zeros(P), np.zeros(W.shape), np.zeros(P)
    for p in range(P):
        real = [b for b in range(B) if mask[p, b] > 0]
        for b in real:
            l_pb, g = example_grad(W[p], X[p, b], int(y[p, b]))
            norm = np.linalg.norm(g)
            frac[p] += norm > clip
            loss[p] += l_pb
            grad[p] += g * min(1.0, clip / norm)
        count = max(len(real), 1)
        loss[p] /= count
        frac[p] /= count
        grad[p] /= count if denominator is None else denominator
    return loss, grad, frac


def test_numpy_model_equals_a_per_example_loop():
    model = LogisticRegression(F, C)
    X, y, mask = party_data()
    W = np.random.default_rng(1).normal(size=(P, model.layout.dim)).astype(np.float32) * 0.3
    got = per_example_clipped_mean_grad(model, W, X, y, mask, clip=2.0)
    want = loop_reference(logistic_example_grad, W.astype(np.float64), X.astype(np.float64), y, mask, 2.0)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    assert (0 < got[2][:2]).all() and (got[2][:2] < 1).all()  # some, not all, examples were clipped


def test_torch_model_equals_a_per_example_autograd_loop():
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(F, 5), torch.nn.Tanh(), torch.nn.Linear(5, C))
    model = TorchModel(module, C)
    X, y, mask = party_data(2)
    W = np.stack([model.init_params(s) for s in range(P)])
    module = module.double()

    def torch_example_grad(w, x, label):
        flat = torch.tensor(w, dtype=torch.float64, requires_grad=True)
        params, offset = {}, 0
        for name, p in module.named_parameters():
            params[name] = flat[offset : offset + p.numel()].view(p.shape)
            offset += p.numel()
        logits = torch.func.functional_call(module, params, (torch.tensor(x[None], dtype=torch.float64),))
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor([label]))
        (g,) = torch.autograd.grad(loss, flat)
        return float(loss.detach()), g.numpy()

    got = per_example_clipped_mean_grad(model, W, X, y, mask, clip=0.5, denominator=4.0)
    want = loop_reference(torch_example_grad, W.astype(np.float64), X.astype(np.float64), y, mask, 0.5, 4.0)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_every_clipped_example_gradient_has_norm_at_most_clip():
    model = LogisticRegression(F, C)
    rng = np.random.default_rng(3)
    X = rng.normal(size=(1, 40, F)).astype(np.float32) * 5
    y = rng.integers(0, C, size=(1, 40))
    W = rng.normal(size=(1, model.layout.dim)).astype(np.float32)
    # One pseudo-party per example: each "mean" is one clipped per-example gradient.
    _, grads, frac = per_example_clipped_mean_grad(
        model,
        np.repeat(W, 40, 0),
        X.reshape(40, 1, F),
        y.reshape(40, 1),
        np.ones((40, 1), np.float32),
        clip=0.3,
    )
    norms = np.linalg.norm(grads, axis=1)
    assert (norms <= 0.3 * (1 + 1e-6)).all()
    np.testing.assert_allclose(norms[frac == 1], 0.3, rtol=1e-5)


def test_denominator_divides_the_clipped_sum():
    model = LogisticRegression(F, C)
    X, y, mask = party_data()
    W = np.zeros((P, model.layout.dim), np.float32)
    _, by_count, _ = per_example_clipped_mean_grad(model, W, X, y, mask, clip=1.0)
    _, by_expected, _ = per_example_clipped_mean_grad(
        model, W, X, y, mask, clip=1.0, denominator=[10, 10, 10]
    )
    counts = np.maximum(mask.sum(axis=1), 1)
    np.testing.assert_allclose(by_expected * 10, by_count * counts[:, None], rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="denominator"):
        per_example_clipped_mean_grad(model, W, X, y, mask, clip=1.0, denominator=0.0)


def test_dp_sgd_noise_has_std_z_clip_over_denominator():
    grad = np.zeros((2, 100_000), np.float32)
    noisy = dp_sgd_noise(
        grad, 1.5, 0.4, np.array([8.0, 2.0]), seed=5, round=2, party_ids=np.array([0, 1]), step=3
    )
    np.testing.assert_allclose(noisy.std(axis=1), [1.5 * 0.4 / 8, 1.5 * 0.4 / 2], rtol=0.02)


def test_dp_sgd_noise_is_keyed_by_party_and_step_in_simulation_mode_only():
    grad = np.zeros((3, 16), np.float32)
    ids = np.array([4, 8, 15])
    keyed = {"seed": 0, "round": 1, "simulation": True}
    first = dp_sgd_noise(grad, 1.0, 1.0, 1.0, party_ids=ids, step=0, **keyed)
    np.testing.assert_array_equal(first, dp_sgd_noise(grad, 1.0, 1.0, 1.0, party_ids=ids, step=0, **keyed))
    alone = dp_sgd_noise(grad[:1], 1.0, 1.0, 1.0, party_ids=ids[1:2], step=0, **keyed)
    np.testing.assert_array_equal(alone[0], first[1])
    assert not np.array_equal(first, dp_sgd_noise(grad, 1.0, 1.0, 1.0, party_ids=ids, step=1, **keyed))
    fresh = {"seed": 0, "round": 1, "party_ids": ids, "step": 0}
    assert not np.array_equal(
        dp_sgd_noise(grad, 1.0, 1.0, 1.0, **fresh), dp_sgd_noise(grad, 1.0, 1.0, 1.0, **fresh)
    )
