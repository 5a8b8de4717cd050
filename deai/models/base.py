"""The contract every model fulfils so the engine can train many parties in one batched call.

Parameters live in one float32 vector (see :mod:`deai.params`); a *batch of parties* is a
``[P, dim]`` matrix. Data arrive flat: ``X`` is ``[P, B, F]`` float32 (image models reshape
internally), ``y`` is ``[P, B]`` int64 labels, ``mask`` is ``[P, B]`` float32 with 1 for real
examples and 0 for padding.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from deai.params import Layout


@runtime_checkable
class Model(Protocol):
    layout: Layout
    num_classes: int

    def init_params(self, seed: int) -> np.ndarray:
        """A fresh ``[dim]`` float32 parameter vector, deterministic in ``seed``."""
        ...

    def loss_grad(
        self, W: np.ndarray, X: np.ndarray, y: np.ndarray, mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-party mean cross-entropy over masked examples ``[P]`` and its gradient ``[P, dim]``.

        A party whose mask is all zero gets loss 0 and gradient 0.
        """
        ...

    def logits(self, W: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Batched forward pass: ``W [P, dim]``, ``X [P, B, F]`` -> ``[P, B, C]`` float32."""
        ...


def softmax_xent(logits: np.ndarray, y: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-party mean cross-entropy ``[P]`` and d(loss)/d(logits) ``[P, B, C]`` for masked examples."""
    z = logits - logits.max(axis=-1, keepdims=True)
    expz = np.exp(z)
    sumexp = expz.sum(axis=-1, keepdims=True)
    probs = expz / sumexp
    count = np.maximum(mask.sum(axis=1), 1.0)  # [P]
    logp_true = np.take_along_axis(z, y[..., None], axis=-1)[..., 0] - np.log(sumexp[..., 0])
    loss = -(logp_true * mask).sum(axis=1) / count
    dlogits = probs
    np.put_along_axis(
        dlogits, y[..., None], np.take_along_axis(dlogits, y[..., None], axis=-1) - 1.0, axis=-1
    )
    dlogits *= (mask / count[:, None])[..., None]
    return loss.astype(np.float32), dlogits.astype(np.float32, copy=False)
