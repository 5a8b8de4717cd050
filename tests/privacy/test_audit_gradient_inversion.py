"""Gradient inversion (DLG, iDLG, Inverting Gradients) against one party's one-step update."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from deai.data.datasets import load_digits  # noqa: E402
from deai.models import MLP, LogisticRegression  # noqa: E402
from deai.models.cnn import cnn_model, small_cnn  # noqa: E402
from deai.privacy.audit.gradient_inversion import (  # noqa: E402
    clip_and_noise,
    gradient_inversion_attack,
    infer_labels,
    party_update,
    torch_forward,
)

IMAGE = (1, 8, 8)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The models here are tiny; intra-op threads only slow them down on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ds = load_digits()
    return ds.x, ds.y, ds.x.mean(axis=0)


def _models() -> list[tuple[str, object, object]]:
    return [
        ("logreg", LogisticRegression(64, 10), None),
        ("mlp", MLP(64, 10, 32), None),
        ("cnn", cnn_model(IMAGE, 10), small_cnn(IMAGE, 10)),
    ]


@pytest.mark.parametrize(
    ("name", "model", "module"), _models(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_torch_forward_gives_the_models_own_gradient(name: str, model, module, digits) -> None:
    x, y, _ = digits
    params = model.init_params(1) + 0.01 * np.random.default_rng(0).standard_normal(model.layout.dim).astype(
        np.float32
    )
    forward = torch_forward(model, module)
    flat = torch.tensor(params, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(forward(flat, torch.tensor(x[:5])), torch.tensor(y[:5]))
    (grad,) = torch.autograd.grad(loss, flat)
    _, expected = model.loss_grad(params[None], x[None, :5], y[None, :5], np.ones((1, 5), np.float32))
    np.testing.assert_allclose(grad.numpy(), expected[0], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "model", "module"), _models(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_idlg_label_is_exact_for_batch_of_one(name: str, model, module, digits) -> None:
    x, y, _ = digits
    params = model.init_params(0)
    for i in range(0, 200, 7):
        update = party_update(model, params, x[i : i + 1], y[i : i + 1], lr=0.1)
        assert infer_labels(model, update)[0] == y[i]


def test_inversion_recovers_a_digit_from_an_undefended_update(digits) -> None:
    x, y, mean_image = digits
    model = MLP(64, 10, 32)
    result = gradient_inversion_attack(
        model, model.init_params(0), x[[5]], y[[5]], mean_image, image_shape=IMAGE, iterations=150
    )
    assert result.labels_correct
    assert result.mse < 0.1 * result.baseline_mse
    assert result.psnr > 25.0


def test_inversion_recovers_a_digit_through_the_cnn(digits) -> None:
    x, y, mean_image = digits
    model = cnn_model(IMAGE, 10)
    result = gradient_inversion_attack(
        model,
        model.init_params(0),
        x[[5]],
        y[[5]],
        mean_image,
        module=small_cnn(IMAGE, 10),
        image_shape=IMAGE,
        iterations=100,
    )
    assert result.mse < 0.5 * result.baseline_mse


def test_dlg_l2_loss_recovers_a_batch_of_two(digits) -> None:
    x, y, mean_image = digits
    model = MLP(64, 10, 32)
    result = gradient_inversion_attack(
        model,
        model.init_params(0),
        x[[0, 1]],
        y[[0, 1]],
        mean_image,
        image_shape=IMAGE,
        loss="l2",
        iterations=150,
    )
    assert result.labels_correct  # distinct labels: the two most negative bias-gradient entries
    assert result.mse < 0.1 * result.baseline_mse


def test_clipping_alone_does_not_protect(digits) -> None:
    x, y, mean_image = digits
    model = MLP(64, 10, 32)
    kw = {"image_shape": IMAGE, "iterations": 150}
    plain = gradient_inversion_attack(model, model.init_params(0), x[[5]], y[[5]], mean_image, **kw)
    clipped = gradient_inversion_attack(
        model, model.init_params(0), x[[5]], y[[5]], mean_image, clip_norm=1e-3, **kw
    )
    assert clipped.mse == pytest.approx(plain.mse, rel=0.1, abs=1e-4)  # cosine matching ignores scale


def test_heavy_noise_defeats_the_attack(digits) -> None:
    x, y, mean_image = digits
    model = MLP(64, 10, 32)
    kw = {"image_shape": IMAGE, "iterations": 150, "clip_norm": 1.0}
    clean = gradient_inversion_attack(model, model.init_params(0), x[[5]], y[[5]], mean_image, **kw)
    mild = gradient_inversion_attack(
        model, model.init_params(0), x[[5]], y[[5]], mean_image, noise_multiplier=0.01, **kw
    )
    heavy = gradient_inversion_attack(
        model, model.init_params(0), x[[5]], y[[5]], mean_image, noise_multiplier=1.0, **kw
    )
    assert clean.mse < mild.mse < heavy.mse
    assert heavy.mse > 0.5 * heavy.baseline_mse  # no better than guessing the mean image
    assert heavy.mse > 20 * clean.mse


def test_clip_and_noise_bounds_the_norm_and_adds_the_stated_noise() -> None:
    update = np.full(10_000, 1.0, np.float32)
    clipped = clip_and_noise(update, clip_norm=2.0, noise_multiplier=0.0, seed=0)
    assert np.linalg.norm(clipped) == pytest.approx(2.0, rel=1e-6)
    noisy = clip_and_noise(update, clip_norm=2.0, noise_multiplier=0.5, seed=0)
    assert np.std(noisy - clipped) == pytest.approx(1.0, rel=0.05)  # 0.5 * 2.0


def test_noise_needs_a_clipping_bound(digits) -> None:
    x, y, mean_image = digits
    model = LogisticRegression(64, 10)
    with pytest.raises(ValueError, match="clip_norm"):
        gradient_inversion_attack(
            model, model.init_params(0), x[[0]], y[[0]], mean_image, noise_multiplier=1.0
        )


def test_torch_model_needs_its_module() -> None:
    with pytest.raises(TypeError, match="module="):
        torch_forward(cnn_model(IMAGE, 10))
