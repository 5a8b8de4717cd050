"""TorchModel against independent truth: plain autograd per party and closed-form softmax regression."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch

from deai.models.base import Model
from deai.models.cnn import cnn_model, small_cnn
from deai.models.torch_adapter import TorchModel

IMAGE = (1, 8, 8)
FEATURES = 64
CLASSES = 4


def _load(module: torch.nn.Module, vector: np.ndarray) -> torch.nn.Module:
    """Copy a flat vector into ``module`` in ``named_parameters`` order, without the adapter."""
    offset = 0
    with torch.no_grad():
        for _, param in module.named_parameters():
            param.copy_(torch.from_numpy(vector[offset : offset + param.numel()]).view(param.shape))
            offset += param.numel()
    assert offset == vector.size
    return module


def _autograd_loss_grad(module: torch.nn.Module, vector: np.ndarray, x: np.ndarray, y: np.ndarray):
    """Mean cross-entropy over ``x`` and its gradient, by ``loss.backward()`` on a real module."""
    _load(module, vector)
    module.zero_grad()
    logits = module(torch.from_numpy(x).reshape(len(x), *IMAGE))
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y))
    loss.backward()
    grad = torch.cat([p.grad.reshape(-1) for p in module.parameters()])
    return loss.item(), grad.numpy()


def _party_batch(rng: np.random.Generator, parties: int, batch: int):
    X = rng.normal(size=(parties, batch, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, size=(parties, batch))
    mask = (rng.random((parties, batch)) < 0.7).astype(np.float32)
    mask[:, 0] = 1.0  # every party has at least one real example
    return X, y, mask


@pytest.fixture(scope="module")
def cnn() -> TorchModel:
    return TorchModel(small_cnn(IMAGE, CLASSES), CLASSES, IMAGE)


def test_torch_model_satisfies_model_protocol(cnn: TorchModel) -> None:
    assert isinstance(cnn, Model)


@pytest.mark.parametrize("vectorize", [True, False], ids=["vmap", "loop"])
def test_loss_grad_equals_per_party_autograd_on_unmasked_rows(vectorize: bool) -> None:
    model = TorchModel(small_cnn(IMAGE, CLASSES), CLASSES, IMAGE, vectorize=vectorize)
    rng = np.random.default_rng(0)
    X, y, mask = _party_batch(rng, parties=5, batch=9)
    W = np.stack([model.init_params(seed) for seed in range(5)])

    loss, grad = model.loss_grad(W, X, y, mask)

    assert loss.shape == (5,) and grad.shape == (5, model.layout.dim)
    assert loss.dtype == np.float32 and grad.dtype == np.float32
    for p in range(5):
        real = mask[p] > 0
        true_loss, true_grad = _autograd_loss_grad(small_cnn(IMAGE, CLASSES), W[p], X[p][real], y[p][real])
        np.testing.assert_allclose(loss[p], true_loss, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(grad[p], true_grad, rtol=1e-5, atol=1e-5)


def test_masked_rows_do_not_change_loss_or_gradient(cnn: TorchModel) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(1, 6, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, size=(1, 6))
    W = cnn.init_params(3)[None]
    padded_X = np.concatenate([X, rng.normal(scale=50.0, size=(1, 4, FEATURES)).astype(np.float32)], axis=1)
    padded_y = np.concatenate([y, np.array([[-1, 99, 2, 0]])], axis=1)  # garbage labels in padding
    padded_mask = np.concatenate([np.ones((1, 6)), np.zeros((1, 4))], axis=1).astype(np.float32)

    loss, grad = cnn.loss_grad(W, X, y, np.ones((1, 6), np.float32))
    padded_loss, padded_grad = cnn.loss_grad(W, padded_X, padded_y, padded_mask)

    np.testing.assert_allclose(padded_loss, loss, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(padded_grad, grad, rtol=1e-5, atol=1e-7)


def test_all_zero_mask_gives_zero_loss_and_gradient_without_touching_other_parties(cnn: TorchModel) -> None:
    rng = np.random.default_rng(2)
    X, y, mask = _party_batch(rng, parties=3, batch=5)
    W = np.stack([cnn.init_params(seed) for seed in range(3)])
    empty = mask.copy()
    empty[1] = 0.0

    loss, grad = cnn.loss_grad(W, X, y, empty)
    full_loss, full_grad = cnn.loss_grad(W, X, y, mask)

    assert loss[1] == 0.0 and not grad[1].any()
    np.testing.assert_allclose(loss[[0, 2]], full_loss[[0, 2]], rtol=1e-6)
    np.testing.assert_allclose(grad[[0, 2]], full_grad[[0, 2]], rtol=1e-5, atol=1e-7)


def test_linear_model_matches_closed_form_softmax_regression_gradient() -> None:
    features, classes, parties, batch = 7, 3, 4, 10
    model = TorchModel(torch.nn.Linear(features, classes), classes)
    rng = np.random.default_rng(3)
    W = rng.normal(size=(parties, model.layout.dim)).astype(np.float32)
    X = rng.normal(size=(parties, batch, features)).astype(np.float32)
    y = rng.integers(0, classes, size=(parties, batch))
    mask = np.ones((parties, batch), np.float32)
    mask[:, -3:] = 0.0

    loss, grad = model.loss_grad(W, X, y, mask)

    assert model.layout.names() == ["weight", "bias"]
    for p in range(parties):
        n = int(mask[p].sum())
        x, labels = X[p, :n].astype(np.float64), y[p, :n]
        weight = W[p, : classes * features].reshape(classes, features).astype(np.float64)
        bias = W[p, classes * features :].astype(np.float64)
        z = x @ weight.T + bias
        probs = np.exp(z - z.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        onehot = np.eye(classes)[labels]
        true_loss = -np.log(probs[np.arange(n), labels]).mean()
        true_grad = np.concatenate([((probs - onehot).T @ x / n).ravel(), (probs - onehot).sum(axis=0) / n])
        np.testing.assert_allclose(loss[p], true_loss, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(grad[p], true_grad, rtol=1e-5, atol=1e-6)


def test_init_params_is_deterministic_in_seed_and_differs_across_seeds(cnn: TorchModel) -> None:
    first, again, other = cnn.init_params(7), cnn.init_params(7), cnn.init_params(8)

    assert first.dtype == np.float32 and first.shape == (cnn.layout.dim,)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_init_params_leaves_global_torch_rng_and_callers_module_alone() -> None:
    module = small_cnn(IMAGE, CLASSES)
    before = [p.detach().clone() for p in module.parameters()]
    model = TorchModel(module, CLASSES, IMAGE)
    rng_state = torch.get_rng_state()

    model.init_params(11)

    assert torch.equal(torch.get_rng_state(), rng_state)
    assert all(torch.equal(b, p) for b, p in zip(before, module.parameters(), strict=True))


def test_layout_covers_exactly_the_trainable_parameters() -> None:
    module = small_cnn(IMAGE, CLASSES)
    module[0].bias.requires_grad_(False)  # frozen: shared, not part of the vector
    model = TorchModel(module, CLASSES, IMAGE)

    trainable = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    assert model.layout.names() == [n for n, _ in trainable]
    assert model.layout.dim == sum(p.numel() for _, p in trainable)


def test_vector_round_trips_into_module_parameters_and_logits(cnn: TorchModel) -> None:
    rng = np.random.default_rng(4)
    W = np.stack([cnn.init_params(seed) for seed in (5, 6)])
    X = rng.normal(size=(2, 3, FEATURES)).astype(np.float32)

    logits = cnn.logits(W, X)

    assert logits.shape == (2, 3, CLASSES) and logits.dtype == np.float32
    for p in range(2):
        module = _load(small_cnn(IMAGE, CLASSES), W[p])
        for entry in cnn.layout.entries:
            np.testing.assert_array_equal(
                module.get_parameter(entry.name).detach().numpy(), cnn.layout.view(W[p], entry.name)
            )
        with torch.no_grad():
            expected = module(torch.from_numpy(X[p]).reshape(3, *IMAGE)).numpy()
        np.testing.assert_allclose(logits[p], expected, rtol=1e-5, atol=1e-6)


def _bright_quadrant_images(rng: np.random.Generator, parties: int, batch: int):
    """8x8 noise images whose label is the quadrant (0..3) that is brighter than the rest."""
    y = rng.integers(0, 4, size=(parties, batch))
    images = rng.normal(scale=0.3, size=(parties, batch, 8, 8))
    for quadrant in range(4):
        top, left = 4 * (quadrant // 2), 4 * (quadrant % 2)
        images[..., top : top + 4, left : left + 4] += np.where(y == quadrant, 1.0, 0.0)[..., None, None]
    return images.reshape(parties, batch, FEATURES).astype(np.float32), y


def test_sgd_with_loss_grad_learns_bright_quadrant(cnn: TorchModel) -> None:
    rng = np.random.default_rng(5)
    X, y = _bright_quadrant_images(rng, parties=3, batch=32)
    mask = np.ones(y.shape, np.float32)
    W = np.stack([cnn.init_params(seed) for seed in range(3)])

    start, _ = cnn.loss_grad(W, X, y, mask)
    for _ in range(10):
        _, grad = cnn.loss_grad(W, X, y, mask)
        W -= 0.5 * grad
    end, _ = cnn.loss_grad(W, X, y, mask)

    assert np.all(end < 0.5 * start), (start, end)


def test_model_survives_pickling_for_process_backends(cnn: TorchModel) -> None:
    rng = np.random.default_rng(8)
    X, y, mask = _party_batch(rng, parties=2, batch=3)
    W = np.stack([cnn.init_params(seed) for seed in range(2)])

    copy = pickle.loads(pickle.dumps(cnn))

    np.testing.assert_array_equal(copy.init_params(0), W[0])
    for ours, theirs in zip(cnn.loss_grad(W, X, y, mask), copy.loss_grad(W, X, y, mask), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_batchnorm_is_rejected_with_a_pointer_to_groupnorm() -> None:
    module = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten())
    with pytest.raises(ValueError, match="GroupNorm/LayerNorm"):
        TorchModel(module, CLASSES, IMAGE)


class _DataDependentBranch(torch.nn.Module):
    """Python control flow on tensor values: torch.func.vmap cannot batch ``.item()``."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(FEATURES, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x)
        return out if out.sum().item() < 1e30 else -out


def test_unbatchable_module_falls_back_to_a_loop_with_one_warning() -> None:
    model = TorchModel(_DataDependentBranch(), CLASSES)
    rng = np.random.default_rng(6)
    X, y, mask = _party_batch(rng, parties=3, batch=4)
    W = np.stack([model.init_params(seed) for seed in range(3)])
    truth = TorchModel(torch.nn.Linear(FEATURES, CLASSES), CLASSES)

    with pytest.warns(RuntimeWarning, match="per-party loop"):
        loss, grad = model.loss_grad(W, X, y, mask)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.loss_grad(W, X, y, mask)
        model.logits(W, X)

    true_loss, true_grad = truth.loss_grad(W, X, y, mask)
    np.testing.assert_allclose(loss, true_loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad, true_grad, rtol=1e-5, atol=1e-6)


def test_shape_and_label_errors_name_what_to_fix(cnn: TorchModel) -> None:
    X = np.zeros((2, 3, FEATURES), np.float32)
    y, mask = np.zeros((2, 3), np.int64), np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"W must have shape \[P, "):
        cnn.loss_grad(np.zeros((2, 5), np.float32), X, y, mask)
    with pytest.raises(ValueError, match="input_shape"):
        cnn.logits(np.zeros((2, cnn.layout.dim), np.float32), np.zeros((2, 3, 10), np.float32))
    with pytest.raises(ValueError, match=r"labels of unmasked examples must lie in \[0, 4\)"):
        cnn.loss_grad(np.zeros((2, cnn.layout.dim), np.float32), X, y + 4, mask)


def test_cnn_model_handles_fashion_mnist_sized_images() -> None:
    model = cnn_model((1, 28, 28), 10)
    W = np.stack([model.init_params(seed) for seed in range(2)])
    X = np.random.default_rng(7).random((2, 3, 784), dtype=np.float32)

    loss, grad = model.loss_grad(W, X, np.array([[0, 1, 9], [2, 3, 4]]), np.ones((2, 3), np.float32))

    assert model.logits(W, X).shape == (2, 3, 10)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad)) and grad.shape == (2, model.layout.dim)
