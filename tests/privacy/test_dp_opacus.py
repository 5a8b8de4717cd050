"""Opacus DP-SGD for one party, against a per-example clip-and-average reference."""

import numpy as np
import pytest
import torch

from deai.models.torch_adapter import TorchModel
from deai.privacy.dp.opacus_trainer import opacus_local_train, opacus_sampling_rate

N, F, C = 16, 5, 3


def small_module() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(F, 8), torch.nn.ReLU(), torch.nn.Linear(8, C))


def data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(N, F)).astype(np.float32) * 2, rng.integers(0, C, size=N).astype(np.int64)


def flat(module: torch.nn.Module) -> np.ndarray:
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()]).numpy()


def test_one_noiseless_step_equals_clipped_per_example_average():
    module = small_module()
    x, y = data()
    lr = 0.1
    # Independent truth: plain autograd one example at a time, clip each gradient, average, step.
    raw = []
    for i in range(N):
        module.zero_grad()
        logits = module(torch.from_numpy(x[i : i + 1]))
        torch.nn.functional.cross_entropy(logits, torch.from_numpy(y[i : i + 1])).backward()
        raw.append(torch.cat([p.grad.reshape(-1) for p in module.parameters()]).double().numpy())
    module.zero_grad(set_to_none=True)
    norms = np.linalg.norm(raw, axis=1)
    clip = float(np.median(norms))  # half the gradients are clipped, half are not
    clipped = [g * min(1.0, clip / n) for g, n in zip(raw, norms, strict=True)]
    expected = flat(module).astype(np.float64) - lr * np.mean(clipped, axis=0)
    before = flat(module).copy()

    # batch_size = N: sampling rate 1, so the one step sees every example.
    params, steps = opacus_local_train(
        module, x, y, epochs=1, batch_size=N, lr=lr, noise_multiplier=0.0, max_grad_norm=clip, seed=0
    )
    assert steps == 1
    np.testing.assert_allclose(params, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(flat(module), before)  # the caller's module is untouched


def test_parameters_follow_the_torch_model_layout():
    module = small_module()
    params, _ = opacus_local_train(
        module, *data(), epochs=0, batch_size=4, lr=0.1, noise_multiplier=1.0, max_grad_norm=1.0, seed=0
    )
    model = TorchModel(module, C)
    assert params.shape == (model.layout.dim,) and params.dtype == np.float32
    np.testing.assert_array_equal(params, flat(module))


def test_poisson_steps_and_seeded_noise_are_reproducible():
    x, y = data(1)
    kwargs = dict(epochs=2, batch_size=4, lr=0.05, noise_multiplier=1.0, max_grad_norm=1.0)
    a, steps = opacus_local_train(small_module(), x, y, seed=7, **kwargs)
    b, _ = opacus_local_train(small_module(), x, y, seed=7, **kwargs)
    c, _ = opacus_local_train(small_module(), x, y, seed=8, **kwargs)
    assert opacus_sampling_rate(N, 4) == 0.25
    assert steps == 2 * int(1 / 0.25)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_invalid_arguments_name_the_argument():
    x, y = data()
    with pytest.raises(ValueError, match="max_grad_norm"):
        opacus_local_train(small_module(), x, y, 1, 4, 0.1, 1.0, 0.0, 0)
    with pytest.raises(ValueError, match="batch_size"):
        opacus_local_train(small_module(), x, y, 1, 0, 0.1, 1.0, 1.0, 0)
