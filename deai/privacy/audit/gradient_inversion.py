"""Gradient inversion: rebuild a party's training images from the one update it sends.

The attacker is an honest-but-curious aggregator that sees one party's update (one local SGD
step on a small batch) and the global model it was computed from. It follows

- DLG, Zhu et al. 2019 ("Deep Leakage from Gradients"): optimise a dummy input until its
  gradient matches the observed one (``loss="l2"``);
- Inverting Gradients, Geiping et al. 2020 ("Inverting Gradients – How easy is it to break
  privacy in federated learning?"): match the gradient's *direction* (cosine distance, so the
  unknown learning rate and any clipping do not matter), add a total-variation image prior, and
  optimise with Adam inside the pixel box (``loss="cosine"``, the default);
- iDLG, Zhao et al. 2020 ("iDLG: Improved Deep Leakage from Gradients"): the label of a single
  example is read off the output layer's gradient exactly, before any optimisation.

How to read the numbers: MSE and PSNR compare the reconstruction with the true image (pixels in
``pixel_range``). ``baseline_mse`` is the MSE of the mean image — what an attacker who learnt
nothing from the update would guess — so a reconstruction MSE well below it means the update
leaks the image; at or above it, the attack learnt nothing this metric can see. Higher PSNR is a
better reconstruction (about 20 dB on 8x8 digits is a clearly recognisable image).

Defences are tested by clipping the update and adding Gaussian noise to it
(:func:`clip_and_noise`, the per-party Gaussian mechanism of DP-FedAvg, McMahan et al. 2018).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch.func import functional_call

from deai.models.base import Model
from deai.models.numpy_models import MLP, LogisticRegression
from deai.models.torch_adapter import TorchModel
from deai.params import Layout

Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``forward(flat_params [dim], x [B, F]) -> logits [B, C]``, differentiable in both arguments."""

# Geiping et al. decay the step size by 10x at 3/8, 5/8 and 7/8 of the iterations.
_DECAY_POINTS = (3 / 8, 5 / 8, 7 / 8)


@dataclass(frozen=True)
class InversionResult:
    """One gradient-inversion attack and how close it came.

    ``reconstruction`` is ``[B, F]``, matched row by row to ``truth`` (for ``B > 1`` by the
    assignment with least total MSE, since a batch's order is not recoverable). ``mse`` /
    ``psnr`` compare it with ``truth``; ``baseline_mse`` / ``baseline_psnr`` do the same for
    the mean image. ``labels`` are those the attack used and ``labels_correct`` whether they
    matched the true labels (as a multiset).
    """

    reconstruction: np.ndarray
    truth: np.ndarray
    labels: np.ndarray
    labels_correct: bool
    mse: float
    psnr: float
    baseline_mse: float
    baseline_psnr: float

    def summary(self) -> dict[str, float | bool | None]:
        """The numbers, JSON-ready (an infinite PSNR, from an exact reconstruction, becomes ``None``)."""
        return {
            "mse": self.mse,
            "psnr": self.psnr if np.isfinite(self.psnr) else None,
            "baseline_mse": self.baseline_mse,
            "baseline_psnr": self.baseline_psnr if np.isfinite(self.baseline_psnr) else None,
            "labels_correct": self.labels_correct,
        }


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Run torch on one thread, then restore the caller's setting.

    The attack's tensors are tiny (one 8x8 image, ~10k parameters): intra-op threads only add
    synchronisation, and measured on a busy 2-core machine they made 100 CNN iterations 50x
    slower (17 s instead of 0.3 s).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def torch_forward(model: Model, module: torch.nn.Module | None = None) -> Forward:
    """A differentiable PyTorch forward pass equal to ``model.logits`` for one parameter vector.

    deai's NumPy :class:`LogisticRegression` and :class:`MLP` are re-expressed in torch over
    the same :class:`~deai.params.Layout`. A :class:`TorchModel` needs the ``module`` it wraps
    (e.g. ``small_cnn(...)`` for the CNN); its trainable parameters must give ``model.layout``.
    """
    layout = model.layout

    def unflatten(flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return {e.name: flat[e.offset : e.offset + e.size].view(e.shape) for e in layout.entries}

    if isinstance(model, LogisticRegression):

        def logreg(flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            p = unflatten(flat)
            return x @ p["W"] + p["b"]

        return logreg
    if isinstance(model, MLP):

        def mlp(flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            p = unflatten(flat)
            return torch.relu(x @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]

        return mlp
    if isinstance(model, TorchModel):
        if module is None:
            raise TypeError("a TorchModel needs the torch.nn.Module it wraps: pass module=...")
        module_layout = Layout.from_shapes(
            {name: tuple(p.shape) for name, p in module.named_parameters() if p.requires_grad}
        )
        if module_layout != layout:
            raise ValueError(
                "module's trainable parameters do not match model.layout; pass the module it wraps"
            )
        module = module.eval()
        input_shape = model.input_shape

        def wrapped(flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            if input_shape is not None:
                x = x.reshape(x.shape[0], *input_shape)
            return functional_call(module, unflatten(flat), (x,))

        return wrapped
    raise TypeError(
        f"gradient inversion supports LogisticRegression, MLP and TorchModel, not {type(model).__name__}"
    )


def _input_size(model: Model) -> int:
    if isinstance(model, TorchModel):
        if model.input_shape is None:
            raise ValueError("cannot tell the input size of this TorchModel: build it with an input_shape")
        return int(np.prod(model.input_shape))
    return int(model.num_features)  # LogisticRegression and MLP; torch_forward rejects the rest


def party_update(model: Model, params: np.ndarray, x: np.ndarray, y: np.ndarray, lr: float) -> np.ndarray:
    """The ``[dim]`` update a party sends after one local SGD step on the batch ``(x, y)``: ``-lr * grad``.

    Computed with the model's own batched ``loss_grad``, exactly as local training does.
    """
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.int64)
    with _one_torch_thread():
        _, grad = model.loss_grad(
            np.asarray(params, np.float32)[None, :], x[None], y[None], np.ones((1, len(y)), np.float32)
        )
    return (-float(lr) * grad[0]).astype(np.float32)


def clip_and_noise(update: np.ndarray, clip_norm: float, noise_multiplier: float, seed: int) -> np.ndarray:
    """The Gaussian mechanism on one update: clip to L2 norm ``clip_norm``, add ``N(0, (z·C)² I)``.

    ``noise_multiplier`` ``z`` is the noise standard deviation in units of the clipping bound,
    as in DP-SGD (Abadi et al. 2016) and DP-FedAvg (McMahan et al. 2018).
    """
    if not clip_norm > 0 or noise_multiplier < 0:
        raise ValueError(
            f"need clip_norm > 0 and noise_multiplier >= 0, got {clip_norm} and {noise_multiplier}"
        )
    update = np.asarray(update, np.float64)
    norm = float(np.linalg.norm(update))
    clipped = update * min(1.0, clip_norm / norm) if norm > 0 else update
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x6E6F6973]))  # "nois"
    return (clipped + rng.normal(0.0, noise_multiplier * clip_norm, update.shape)).astype(np.float32)


def output_bias_or_weight(layout: Layout, num_classes: int) -> tuple[str, int | None]:
    """Name of the output layer's gradient that iDLG reads, and the axis to sum over (None for a bias).

    The last layout entry of shape ``(C,)`` is the output bias; failing that, the last 2-D
    entry with one axis of size ``C`` is the output weight.
    """
    for e in reversed(layout.entries):
        if e.shape == (num_classes,):
            return e.name, None
    for e in reversed(layout.entries):
        if len(e.shape) == 2 and num_classes in e.shape:
            return e.name, 1 if e.shape[0] == num_classes else 0
    raise ValueError(f"no output layer with {num_classes} classes found in the layout {layout.names}")


def infer_labels(model: Model, update: np.ndarray, batch_size: int = 1) -> np.ndarray:
    """Labels of the batch behind ``update``, from the output layer's gradient (Zhao et al. 2020).

    With cross-entropy, the output bias gradient of one example is ``softmax - onehot(y)``:
    negative at the true label only, positive elsewhere, so the label is exact for batch size 1.
    (iDLG reads the output *weight* rows, ``(softmax - onehot) ⊗ h`` with ``h >= 0`` after a
    ReLU; the bias says the same without needing ``h >= 0``, so it is used when present.) For a
    batch of ``B``, the ``B`` most negative entries are returned: exact when the labels are
    distinct and each example is confidently learnt, a heuristic otherwise.
    """
    name, axis = output_bias_or_weight(model.layout, model.num_classes)
    grad = -np.asarray(update, np.float64)  # an SGD update points against the gradient
    g = model.layout.view(grad, name)
    per_class = g if axis is None else g.sum(axis=axis)
    return np.argsort(per_class, kind="stable")[: int(batch_size)].astype(np.int64)


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels of ``[B, C, H, W]`` images."""
    dh = (images[..., 1:, :] - images[..., :-1, :]).abs().mean()
    dw = (images[..., :, 1:] - images[..., :, :-1]).abs().mean()
    return dh + dw


def invert_update(
    model: Model,
    params: np.ndarray,
    update: np.ndarray,
    labels: np.ndarray,
    *,
    module: torch.nn.Module | None = None,
    image_shape: tuple[int, ...] | None = None,
    loss: str = "cosine",
    lr: float | None = None,
    iterations: int = 300,
    step_size: float = 0.1,
    tv_weight: float = 1e-2,
    pixel_range: tuple[float, float] = (0.0, 1.0),
    seed: int = 0,
) -> np.ndarray:
    """Reconstruct the ``[B, F]`` inputs behind one-step ``update`` with the given ``labels``.

    Parameters
    ----------
    model, params : the model and the global ``[dim]`` parameters the party started from.
    update : the party's update, ``-lr * grad`` (possibly clipped and noised).
    labels : ``[B]`` labels of the batch (e.g. from :func:`infer_labels`).
    module : the wrapped module, for a :class:`TorchModel` (see :func:`torch_forward`).
    image_shape : ``(channels, height, width)``; turns on the total-variation prior.
    loss : ``"cosine"`` (Geiping et al. 2020) or ``"l2"`` (DLG, Zhu et al. 2019; needs ``lr``
        to rescale the update into a gradient).
    iterations, step_size : Adam steps on the dummy input and its initial step size, decayed
        10x at 3/8, 5/8 and 7/8 of the run.
    tv_weight : weight of the total-variation prior.
    pixel_range : the box the dummy input is kept in.
    seed : seeds the dummy input's random start.
    """
    if loss not in ("cosine", "l2"):
        raise ValueError(f"loss must be 'cosine' or 'l2', got {loss!r}")
    if loss == "l2" and (lr is None or not lr > 0):
        raise ValueError(
            "loss='l2' needs the party's learning rate lr > 0 to turn the update into a gradient"
        )
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    labels = np.asarray(labels, np.int64).ravel()
    forward = torch_forward(model, module)
    scale = 1.0 / lr if loss == "l2" else 1.0
    target = torch.as_tensor(-np.asarray(update, np.float32) * scale)
    flat = torch.as_tensor(np.asarray(params, np.float32)).clone().requires_grad_(True)
    y = torch.as_tensor(labels)
    lo, hi = pixel_range
    features = _input_size(model)
    generator = torch.Generator().manual_seed(int(seed))
    dummy = (lo + (hi - lo) * torch.rand(len(labels), features, generator=generator)).requires_grad_(True)
    optimizer = torch.optim.Adam([dummy], lr=step_size)
    schedule = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=[int(iterations * p) for p in _DECAY_POINTS], gamma=0.1
    )
    target_norm = target.norm().clamp_min(1e-12)
    with _one_torch_thread():
        for _ in range(int(iterations)):
            optimizer.zero_grad()
            ce = torch.nn.functional.cross_entropy(forward(flat, dummy), y)
            (dummy_grad,) = torch.autograd.grad(ce, flat, create_graph=True)  # double backward below
            if loss == "cosine":
                match = 1.0 - (dummy_grad * target).sum() / (dummy_grad.norm().clamp_min(1e-12) * target_norm)
            else:
                match = ((dummy_grad - target) ** 2).sum()
            objective = match
            if image_shape is not None and tv_weight > 0:
                objective = objective + tv_weight * total_variation(dummy.view(len(labels), *image_shape))
            objective.backward()
            optimizer.step()
            schedule.step()
            with torch.no_grad():
                dummy.clamp_(lo, hi)
    return dummy.detach().numpy().astype(np.float32)


def reconstruction_error(
    reconstruction: np.ndarray, truth: np.ndarray, baseline_image: np.ndarray, peak: float = 1.0
) -> tuple[np.ndarray, float, float, float, float]:
    """Match reconstructed rows to true rows, then MSE/PSNR of the reconstruction and of the baseline.

    Returns ``(matched_reconstruction, mse, psnr, baseline_mse, baseline_psnr)``; PSNR is
    ``10 log10(peak² / MSE)`` in dB, ``peak`` the pixel range.
    """
    reconstruction = np.asarray(reconstruction, np.float64)
    truth = np.asarray(truth, np.float64)
    cost = ((reconstruction[:, None, :] - truth[None, :, :]) ** 2).mean(axis=2)
    rows, cols = linear_sum_assignment(cost)
    matched = np.empty_like(reconstruction)
    matched[cols] = reconstruction[rows]
    mse = float(((matched - truth) ** 2).mean())
    baseline_mse = float(((np.asarray(baseline_image, np.float64)[None, :] - truth) ** 2).mean())
    return matched, mse, psnr(mse, peak), baseline_mse, psnr(baseline_mse, peak)


def psnr(mse: float, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB; infinite for a perfect reconstruction."""
    return float("inf") if mse <= 0 else float(10.0 * np.log10(peak**2 / mse))


def gradient_inversion_attack(
    model: Model,
    params: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    baseline_image: np.ndarray,
    *,
    lr: float = 0.1,
    module: torch.nn.Module | None = None,
    image_shape: tuple[int, ...] | None = None,
    clip_norm: float | None = None,
    noise_multiplier: float = 0.0,
    infer: bool = True,
    iterations: int = 300,
    loss: str = "cosine",
    tv_weight: float = 1e-2,
    pixel_range: tuple[float, float] = (0.0, 1.0),
    seed: int = 0,
) -> InversionResult:
    """End to end: a party's one-step update on ``(x, y)``, optionally DP-protected, attacked and scored.

    The update is :func:`party_update` at ``params``; with ``clip_norm`` it then goes through
    :func:`clip_and_noise` (``noise_multiplier`` 0 clips only). Labels come from
    :func:`infer_labels` (``infer=True``) or are handed to the attacker. ``baseline_image`` is the
    attacker's prior guess (e.g. the mean of public data) that the result is compared with.
    """
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.int64)
    if x.ndim != 2 or len(x) != len(y) or len(y) < 1:
        raise ValueError(f"x must be [B, F] and y [B] with B >= 1, got {x.shape} and {y.shape}")
    if noise_multiplier > 0 and clip_norm is None:
        raise ValueError(
            "noise_multiplier > 0 needs clip_norm: the noise scale is noise_multiplier * clip_norm"
        )
    with _one_torch_thread():
        update = party_update(model, params, x, y, lr)
        if clip_norm is not None:
            update = clip_and_noise(update, clip_norm, noise_multiplier, seed)
        labels = infer_labels(model, update, len(y)) if infer else y.copy()
        reconstruction = invert_update(
            model,
            params,
            update,
            labels,
            module=module,
            image_shape=image_shape,
            loss=loss,
            lr=lr,
            iterations=iterations,
            tv_weight=tv_weight,
            pixel_range=pixel_range,
            seed=seed,
        )
    matched, mse, psnr_db, baseline_mse, baseline_psnr = reconstruction_error(
        reconstruction, x, baseline_image, pixel_range[1] - pixel_range[0]
    )
    return InversionResult(
        reconstruction=matched.astype(np.float32),
        truth=x,
        labels=labels,
        labels_correct=bool(np.array_equal(np.sort(labels), np.sort(y))),
        mse=mse,
        psnr=psnr_db,
        baseline_mse=baseline_mse,
        baseline_psnr=baseline_psnr,
    )
