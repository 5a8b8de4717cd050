"""Example-level DP-SGD for any deai model, batched over parties (Abadi et al. 2016).

DP-SGD (Abadi, Chu, Goodfellow, McMahan, Mironov, Talwar & Zhang 2016, "Deep Learning with
Differential Privacy", CCS) clips every *example's* gradient to norm ``clip``, sums, adds
``N(0, (z clip)^2)`` and divides by the batch size. Per-example gradients need no model support:
the batched :class:`~deai.models.base.Model` API already computes one gradient per *party*, so
``P`` parties with ``B`` examples each are recast as ``P * B`` pseudo-parties with one example each,
and one ``loss_grad`` call returns every per-example gradient (padding examples are all-masked
pseudo-parties, whose gradient the model contract makes zero).

Accounting is not done here: with Poisson sampling at rate ``q`` and ``denominator`` set to the
expected batch size ``q n``, each step is one Poisson-subsampled Gaussian mechanism — record
``(z, q, steps)`` with :class:`deai.privacy.dp.accountant.PrivacyAccountant`. With shuffled
fixed-size batches the same accounting is the customary approximation, not a proof.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from deai.models.base import Model
from deai.privacy.dp.sampling import lattice_gaussian, noise_bits

# Parameter floats per batched loss_grad call: np.repeat(W, B) materializes [P*B, dim], so large
# rounds are cut into chunks of parties (64 MiB of float32 per chunk).
_MAX_REPEATED_FLOATS = 2**24

# DP-SGD step noise lives in key(seed, round, NOISE, extra=_STEP_EXTRA_BASE + step): far from
# extra=0 (client-side DP-FedAvg noise) and extra=1 (server-side noise), so the streams never meet.
_STEP_EXTRA_BASE = 2**32


def _check_denominator(denominator: float | np.ndarray | None, parties: int) -> np.ndarray | None:
    if denominator is None:
        return None
    d = np.asarray(denominator, dtype=np.float64)
    if d.ndim > 1 or (d.ndim == 1 and d.shape[0] != parties):
        raise ValueError(f"denominator must be a scalar or a [P={parties}] array, got shape {d.shape}")
    if not (np.isfinite(d).all() and (d > 0).all()):
        raise ValueError("denominator must be finite and > 0 (the real or expected batch size)")
    return np.broadcast_to(d, (parties,))


def per_example_clipped_mean_grad(
    model: Model,
    W: np.ndarray,
    X: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray,
    clip: float,
    *,
    denominator: float | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each party's mean of per-example gradients clipped to ``clip``, for any deai model.

    Parameters
    ----------
    model:
        Any :class:`~deai.models.base.Model` (NumPy models, :class:`~deai.models.torch_adapter.TorchModel`).
    W, X, y, mask:
        ``[P, dim]`` parameters, ``[P, B, F]`` inputs, ``[P, B]`` labels and ``[P, B]`` mask
        (1 real, 0 padding), as in ``Model.loss_grad``.
    clip:
        Per-example L2 clip norm.
    denominator:
        What the clipped sum is divided by: ``None`` for each party's number of real examples
        (plain clipped averaging), or a scalar / ``[P]`` array — for Poisson-subsampled DP-SGD the
        *expected* batch size, so the sensitivity of the mean is ``clip / denominator`` whatever the
        sampled batch size turned out to be.

    Returns
    -------
    loss:
        ``[P]`` float32 mean (unclipped) loss over each party's real examples.
    grad:
        ``[P, dim]`` float32 ``sum_b clip(g_pb) / denominator_p`` (0 for a party without examples).
    clipped_fraction:
        ``[P]`` float32 share of each party's real examples whose gradient norm exceeded ``clip``.
    """
    clip = float(clip)
    if not (math.isfinite(clip) and clip > 0):
        raise ValueError(f"clip must be a finite number > 0, got {clip!r}")
    W, X, y, mask = np.asarray(W), np.asarray(X), np.asarray(y), np.asarray(mask)
    if X.ndim != 3 or W.ndim != 2 or W.shape[0] != X.shape[0]:
        raise ValueError(f"W must be [P, dim] and X [P, B, F] with the same P; got {W.shape} and {X.shape}")
    if y.shape != X.shape[:2] or mask.shape != X.shape[:2]:
        raise ValueError(f"y and mask must have shape {X.shape[:2]}, got {y.shape} and {mask.shape}")
    P, B, F = X.shape
    dim = W.shape[1]
    denom = _check_denominator(denominator, P)
    real = mask > 0
    # Padding may carry any label; NumPy models index with it, so point it at class 0.
    y = np.where(real, y, 0)
    counts = real.sum(axis=1).astype(np.float64)

    losses = np.zeros((P, B), dtype=np.float64)
    sums = np.zeros((P, dim), dtype=np.float64)
    n_clipped = np.zeros(P, dtype=np.float64)
    chunk = max(1, _MAX_REPEATED_FLOATS // max(1, B * dim))
    for start in range(0, P, chunk):
        stop = min(P, start + chunk)
        p = stop - start
        ex_loss, ex_grad = model.loss_grad(
            np.repeat(W[start:stop], B, axis=0),
            X[start:stop].reshape(p * B, 1, F),
            y[start:stop].reshape(p * B, 1),
            real[start:stop].reshape(p * B, 1).astype(np.float32),
        )
        ex_grad = np.asarray(ex_grad, dtype=np.float64)
        norms = np.linalg.norm(ex_grad, axis=1)
        scale = np.minimum(1.0, clip / np.maximum(norms, 1e-12))
        sums[start:stop] = (ex_grad * scale[:, None]).reshape(p, B, dim).sum(axis=1)
        losses[start:stop] = np.asarray(ex_loss, dtype=np.float64).reshape(p, B)
        n_clipped[start:stop] = ((norms > clip).reshape(p, B) & real[start:stop]).sum(axis=1)

    safe_counts = np.maximum(counts, 1.0)
    loss = (losses * real).sum(axis=1) / safe_counts
    grad = sums / (safe_counts if denom is None else denom)[:, None]
    return loss.astype(np.float32), grad.astype(np.float32), (n_clipped / safe_counts).astype(np.float32)


def dp_sgd_noise(
    grad: np.ndarray,
    noise_multiplier: float,
    clip: float,
    denominator: float | np.ndarray,
    seed: int,
    round: int,
    party_ids: np.ndarray,
    step: int,
    simulation: bool = False,
) -> np.ndarray:
    """``grad + N(0, (z clip)^2) / denominator`` per party: the noise step of DP-SGD.

    ``grad`` is ``[P, dim]`` from :func:`per_example_clipped_mean_grad` with the same
    ``denominator``. The noise is discrete Gaussian on a lattice over the clipped *sum*
    (:func:`~deai.privacy.dp.sampling.lattice_gaussian`), from the OS's CSPRNG; under ``simulation``
    party ``p``'s noise is keyed by ``(seed, round, party_ids[p], step)``, so it does not depend on which
    other parties train in the same batch.
    """
    grad = np.asarray(grad)
    if grad.ndim != 2:
        raise ValueError(f"grad must be a [P, dim] matrix, got shape {grad.shape}")
    z = float(noise_multiplier)
    if not (math.isfinite(z) and z >= 0):
        raise ValueError(f"noise_multiplier must be a finite number >= 0, got {noise_multiplier!r}")
    clip = float(clip)
    if not (math.isfinite(clip) and clip > 0):
        raise ValueError(f"clip must be a finite number > 0, got {clip!r}")
    if isinstance(step, bool) or int(step) != step or int(step) < 0:
        raise ValueError(f"step must be an integer >= 0, got {step!r}")
    ids = np.asarray(party_ids)
    if ids.shape != (grad.shape[0],):
        raise ValueError(f"party_ids must have shape [P={grad.shape[0]}], got {ids.shape}")
    denom = _check_denominator(denominator, grad.shape[0])
    if denom is None:
        raise ValueError("denominator is required: the real or expected batch size that grad was divided by")
    if z == 0:
        return grad.copy()
    bits = noise_bits(simulation, seed, round, _STEP_EXTRA_BASE + int(step))
    summed = np.asarray(grad, dtype=np.float64) * denom[:, None]  # the clipped sum: sensitivity clip
    noisy = lattice_gaussian(summed, z, clip, ids, bits) / denom[:, None]
    out_dtype = grad.dtype if np.issubdtype(grad.dtype, np.floating) else np.float64
    return noisy.astype(out_dtype, copy=False)


@dataclass(frozen=True)
class ExampleLevelDPSGD:
    """The gradient oracle of example-level DP-SGD (Abadi et al. 2016) for deai's batched trainer.

    Plug it into :class:`deai.train.LocalSpec` as ``gradient_fn``: each step clips every example's
    gradient to ``clip``, sums, adds ``N(0, (z clip)^2)`` and divides by the batch size ``B`` (the
    expected batch size of the accountant's sampling rate ``B / n``). Mini-batches are drawn by
    shuffling, while the accountant assumes Poisson sampling of examples — the same gap Opacus
    documents for shuffled loaders; the reported epsilon is for Poisson sampling.
    """

    clip: float
    noise_multiplier: float
    batch_size: int
    simulation: bool = False

    def __call__(
        self,
        model: Any,
        W: np.ndarray,
        X: np.ndarray,
        y: np.ndarray,
        mask: np.ndarray,
        seed: int,
        round_: int,
        party_ids: np.ndarray,
        step: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        denominator = np.full(W.shape[0], float(self.batch_size))
        loss, grad, _ = per_example_clipped_mean_grad(
            model, W, X, y, mask, self.clip, denominator=denominator
        )
        grad = dp_sgd_noise(
            grad,
            self.noise_multiplier,
            self.clip,
            denominator,
            seed,
            round_,
            party_ids,
            step,
            self.simulation,
        )
        return loss, grad.astype(np.float32, copy=False)
