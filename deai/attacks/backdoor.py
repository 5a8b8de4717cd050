"""Backdoor by model replacement (Bagdasaryan, Veit, Hua, Estrin and Shmatikov 2020, "How To Backdoor
Federated Learning", AISTATS), with a pixel-pattern trigger.

The malicious party trains on a mix of clean rows and rows stamped with a trigger and relabelled to a
target class, so its model keeps the main task while learning "trigger -> target". It then scales its
update by ``boost`` so that, averaged with the honest updates (which roughly cancel near convergence), the
aggregate is replaced by its backdoored model. Success is measured as the share of triggered test rows of
other classes that the global model sends to the target.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from deai.attacks._common import (
    AttackBase,
    attack_generator,
)
from deai.attacks.base import RoundContext
from deai.checks import check_count, check_label, check_positive, check_real


def _trigger_value(x: np.ndarray, trigger_value: float | None) -> float:
    if trigger_value is not None:
        return float(trigger_value)
    return float(np.max(x)) if np.size(x) else 1.0


def apply_trigger(
    x: np.ndarray,
    image_shape: tuple[int, ...] | None,
    *,
    trigger_size: int = 3,
    trigger_value: float | None = None,
) -> np.ndarray:
    """A copy of the ``[N, F]`` rows ``x`` with the trigger stamped on every row.

    For images (``image_shape`` whose last two axes are height and width, e.g. deai's channels-first
    ``(1, 28, 28)``) the trigger is a ``trigger_size x trigger_size`` patch in the bottom-right corner of
    every channel; for tabular rows (``image_shape=None``) it is the last ``trigger_size`` features. The
    patch is set to ``trigger_value``, by default the largest value in ``x`` (the brightest pixel), which
    for deai's image sets scaled to ``[0, 1]`` is 1.0; pass it explicitly so training and test rows carry
    the same trigger when their maxima differ.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must be a 2-D [rows, features] array; got shape {x.shape}")
    check_count("trigger_size", trigger_size, 1)
    value = _trigger_value(x, trigger_value)
    out = x.copy()
    if image_shape is None:
        out[:, -min(trigger_size, x.shape[1]) :] = value
        return out
    if len(image_shape) < 2 or int(np.prod(image_shape)) != x.shape[1]:
        raise ValueError(
            f"image_shape {image_shape} must have at least 2 axes (..., height, width) and hold the "
            f"{x.shape[1]} features of x"
        )
    out.reshape((x.shape[0], *image_shape))[..., -trigger_size:, -trigger_size:] = value
    return out


def backdoor_success_rate(
    predict_fn: Callable[[np.ndarray], np.ndarray],
    x_test: np.ndarray,
    y_test: np.ndarray,
    target_label: int,
    image_shape: tuple[int, ...] | None,
    *,
    trigger_size: int = 3,
    trigger_value: float | None = None,
) -> float:
    """Attack success rate: the share of triggered test rows whose true label is not ``target_label`` that
    ``predict_fn`` classifies as ``target_label``.

    Rows already of the target class are left out, since predicting the target for them is no evidence of a
    backdoor. ``predict_fn`` maps ``[N, F]`` rows to ``[N]`` labels or ``[N, C]`` scores (argmax is taken).
    """
    y_test = np.asarray(y_test)
    keep = y_test != target_label
    if not keep.any():
        raise ValueError(
            f"no test row has a label other than target_label={target_label}; the success rate is undefined"
        )
    triggered = apply_trigger(
        np.asarray(x_test)[keep], image_shape, trigger_size=trigger_size, trigger_value=trigger_value
    )
    predicted = np.asarray(predict_fn(triggered))
    if predicted.ndim == 2:
        predicted = predicted.argmax(axis=1)
    if predicted.shape != (int(keep.sum()),):
        raise ValueError(
            f"predict_fn must return [N] labels or [N, C] scores for N={int(keep.sum())} rows; "
            f"got shape {predicted.shape}"
        )
    return float(np.mean(predicted == target_label))


class Backdoor(AttackBase):
    """Poison a share of the malicious party's rows with a trigger and the target label; boost the update.

    Parameters
    ----------
    target_label : the class triggered rows are relabelled to (default 0).
    poison_fraction : share of the party's rows to poison, in ``(0, 1]`` (default 0.5; Bagdasaryan et al.
        mix poisoned and clean rows in every batch so the main task does not degrade and give the attack
        away).
    boost : the factor ``gamma`` applied to the malicious updates. ``None`` (default) uses model
        replacement's ``n / m`` for the round's ``n`` parties and ``m`` malicious ones, which makes a plain
        unweighted mean of otherwise cancelling updates equal the malicious update. The paper's ``n / eta``
        also divides by the server learning rate, and deai's weighted mean calls for
        ``sum(weights) / sum(malicious weights)``; pass either explicitly when it differs.
    trigger_size, trigger_value : the trigger of :func:`apply_trigger`.

    The rows poisoned are chosen by ``seed`` (``poison_data``'s argument), exactly
    ``round(poison_fraction * rows)`` of them.
    """

    name = "backdoor"

    def __init__(
        self,
        *,
        target_label: int = 0,
        poison_fraction: float = 0.5,
        boost: float | None = None,
        trigger_size: int = 3,
        trigger_value: float | None = None,
    ) -> None:
        self.target_label = check_label("target_label", target_label)
        self.poison_fraction = check_positive("poison_fraction", poison_fraction)
        if self.poison_fraction > 1:
            raise ValueError(f"poison_fraction must lie in (0, 1]; got {poison_fraction!r}")
        self.boost = None if boost is None else check_positive("boost", boost)
        self.trigger_size = check_count("trigger_size", trigger_size, 1)
        self.trigger_value = None if trigger_value is None else check_real("trigger_value", trigger_value)

    def poison_data(
        self, x: np.ndarray, y: np.ndarray, num_classes: int, image_shape: tuple[int, ...] | None, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Copies of ``x`` and ``y`` with ``round(poison_fraction * rows)`` rows triggered and relabelled."""
        if self.target_label >= num_classes:
            raise ValueError(f"target_label={self.target_label} is not a class of a {num_classes}-class task")
        x, y = np.asarray(x), np.asarray(y)
        count = int(round(self.poison_fraction * len(y)))
        rows = attack_generator(seed, 0, self.name).choice(len(y), size=count, replace=False)
        x_out, y_out = x.copy(), y.copy()
        value = _trigger_value(x, self.trigger_value)  # the brightest of all the party's rows
        x_out[rows] = apply_trigger(x[rows], image_shape, trigger_size=self.trigger_size, trigger_value=value)
        y_out[rows] = self.target_label
        return x_out, y_out

    def forge(self, updates: np.ndarray, malicious: np.ndarray, ctx: RoundContext) -> np.ndarray:
        boost = len(malicious) / int(malicious.sum()) if self.boost is None else self.boost
        return boost * updates[malicious].astype(np.float32)
