"""Example-level DP-SGD for one party's PyTorch model, through Opacus.

For models that :func:`deai.privacy.dp.dpsgd.per_example_clipped_mean_grad` cannot batch well,
or where Opacus' per-layer gradient-sample hooks are the reference one wants, a party can train
locally with Opacus (Yousefpour et al. 2021, "Opacus: User-Friendly Differential Privacy Library
in PyTorch"): ``GradSampleModule`` computes per-example gradients, ``DPOptimizer`` clips them to
``max_grad_norm``, adds ``N(0, (z max_grad_norm)^2)`` and divides by the expected batch size, and
``DPDataLoader`` draws Poisson batches — DP-SGD as in Abadi et al. 2016.

Opacus' ``PrivacyEngine`` is deliberately not used: it would attach an accountant of its own, and
in deai accounting happens in one place (:mod:`deai.privacy.dp.accountant`). The caller records
``(noise_multiplier, opacus_sampling_rate(len(x), batch_size), steps)``.
"""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import torch
from opacus import GradSampleModule
from opacus.data_loader import DPDataLoader
from opacus.optimizers import DPOptimizer
from opacus.validators import ModuleValidator
from torch.utils.data import TensorDataset

from deai.rng import Purpose, key


def opacus_sampling_rate(num_examples: int, batch_size: int) -> float:
    """Poisson sampling rate of :func:`opacus_local_train`: ``min(1, batch_size / num_examples)``."""
    return min(1.0, int(batch_size) / int(num_examples))


def _torch_generator(seed: int, purpose: Purpose) -> torch.Generator:
    """A torch generator seeded from deai.rng, so Opacus' draws are reproducible and stream-separated."""
    return torch.Generator().manual_seed(int(key(seed, 0, purpose)) & (2**63 - 1))


def _trainable_vector(module: torch.nn.Module) -> np.ndarray:
    """Trainable parameters flattened in ``named_parameters`` order, the layout TorchModel uses."""
    parts = [p.detach().reshape(-1) for _, p in module.named_parameters() if p.requires_grad]
    return torch.cat(parts).to(torch.float32).numpy().copy()


def opacus_local_train(
    module: torch.nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    epochs: int,
    batch_size: int,
    lr: float,
    noise_multiplier: float,
    max_grad_norm: float,
    seed: int,
) -> tuple[np.ndarray, int]:
    """Train a copy of ``module`` with DP-SGD (Opacus) on one party's data; the caller's module is unchanged.

    Parameters
    ----------
    module:
        A classifier mapping ``x`` batches to logits; layers Opacus cannot handle (e.g. BatchNorm)
        are rejected by ``opacus.validators.ModuleValidator``.
    x, y:
        The party's examples ``[n, ...]`` (float) and integer labels ``[n]``.
    epochs, batch_size:
        Each epoch is ``int(1 / q)`` Poisson-sampled steps with ``q = min(1, batch_size / n)``
        (:func:`opacus_sampling_rate`); ``batch_size`` is the expected batch size.
    lr:
        Plain SGD learning rate.
    noise_multiplier, max_grad_norm:
        DP-SGD's ``z`` and per-example clip norm.
    seed:
        Seeds the batch sampling (``Purpose.PERMUTE``) and the noise (``Purpose.NOISE``) through
        :mod:`deai.rng`; pass one derived from (run seed, round, party). Opacus' ``secure_mode``
        (noise hardened against floating-point attacks) is off so runs are reproducible.

    Returns
    -------
    (params, steps):
        The trained trainable parameters as one float32 vector in ``named_parameters`` order
        (the :class:`~deai.models.torch_adapter.TorchModel` layout), and the number of DP-SGD
        steps taken — what the accountant needs with :func:`opacus_sampling_rate`.
    """
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    x_np, y_np = np.asarray(x), np.asarray(y)
    if x_np.shape[0] == 0 or y_np.shape != (x_np.shape[0],):
        raise ValueError(
            f"x must be [n, ...] with n >= 1 and y [n]; got shapes {x_np.shape} and {y_np.shape}"
        )
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or int(value) != value or int(value) < (0 if name == "epochs" else 1):
            raise ValueError(f"{name} must be an integer >= {0 if name == 'epochs' else 1}, got {value!r}")
    for name, value, allow_zero in (
        ("lr", lr, False),
        ("noise_multiplier", noise_multiplier, True),
        ("max_grad_norm", max_grad_norm, False),
    ):
        v = float(value)
        if not (math.isfinite(v) and (v >= 0 if allow_zero else v > 0)):
            raise ValueError(
                f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {value!r}"
            )

    model = copy.deepcopy(module).train()
    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        raise ValueError(
            f"Opacus cannot compute per-example gradients of this module: {errors}; "
            "opacus.validators.ModuleValidator.fix(module) replaces e.g. BatchNorm with GroupNorm"
        )
    n = x_np.shape[0]
    q = opacus_sampling_rate(n, int(batch_size))
    data = TensorDataset(
        torch.as_tensor(np.ascontiguousarray(x_np, dtype=np.float32)),
        torch.as_tensor(np.ascontiguousarray(y_np, dtype=np.int64)),
    )
    loader = DPDataLoader(data, sample_rate=q, generator=_torch_generator(seed, Purpose.PERMUTE))
    sampled = GradSampleModule(model, batch_first=True, loss_reduction="mean")
    optimizer = DPOptimizer(
        torch.optim.SGD(sampled.parameters(), lr=float(lr)),
        noise_multiplier=float(noise_multiplier),
        max_grad_norm=float(max_grad_norm),
        expected_batch_size=min(int(batch_size), n),
        loss_reduction="mean",
        generator=_torch_generator(seed, Purpose.NOISE),
    )
    steps = 0
    with warnings.catch_warnings():
        # Inputs never require grad here; torch warns about that for Opacus' backward hooks.
        warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)
        for _ in range(int(epochs)):
            for xb, yb in loader:
                optimizer.zero_grad(set_to_none=True)
                # An empty Poisson batch still takes a (noise-only) step: skipping it would reveal it.
                loss = torch.nn.functional.cross_entropy(sampled(xb), yb)
                loss.backward()
                optimizer.step()
                steps += 1
    return _trainable_vector(model), steps
