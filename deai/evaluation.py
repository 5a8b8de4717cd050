"""Scoring a model as sums of counts, so the task owner, one party, or a whole federation scores alike.

Accuracy, balanced accuracy and mean cross-entropy are ratios of sums (hits per class, rows per class,
summed loss); a party reports its sums over its own held-out rows, and the federation's scores are the
ratios of the summed reports: exactly what scoring the union of those rows in one place would give.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deai.models.base import Model

EVAL_CHUNK = 4096


@dataclass
class EvalCounts:
    """Sufficient statistics of the scores: what a party reports about the model on its own rows."""

    hits: np.ndarray  # float64 [classes] correct predictions per true class
    support: np.ndarray  # int64 [classes] rows per true class
    loss_sum: float  # summed cross-entropy; inf once the model's logits overflow

    def __add__(self, other: EvalCounts) -> EvalCounts:
        return EvalCounts(
            self.hits + other.hits, self.support + other.support, self.loss_sum + other.loss_sum
        )

    def scores(self) -> dict[str, float]:
        """The scores of these counts; the loss is ``inf`` for a diverged model (the run loop stops on it)."""
        n = int(self.support.sum())
        if n == 0:
            raise ValueError("the evaluation set is empty: set data.holdout_fraction or data.test_fraction")
        if not np.isfinite(self.loss_sum):
            return {"accuracy": 0.0, "balanced_accuracy": 0.0, "loss": float("inf")}
        present = self.support > 0
        return {
            "accuracy": float(self.hits.sum() / n),
            "balanced_accuracy": float((self.hits[present] / self.support[present]).mean()),
            "loss": self.loss_sum / n,
        }


def evaluation_counts(model: Model, w: np.ndarray, x: np.ndarray, y: np.ndarray) -> EvalCounts:
    """Hits and rows per class and the summed loss of the model ``w`` on ``x, y`` (chunked)."""
    num_classes = model.num_classes
    hits = np.zeros(num_classes)
    loss_sum = 0.0
    for s in range(0, len(y), EVAL_CHUNK):
        xb, yb = x[s : s + EVAL_CHUNK], y[s : s + EVAL_CHUNK]
        logits = model.logits(w[None, :], xb[None])[0].astype(np.float64)
        if not np.isfinite(logits).all():
            return EvalCounts(hits, np.bincount(y, minlength=num_classes), float("inf"))
        z = logits - logits.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        loss_sum += float(-logp[np.arange(len(yb)), yb].sum())
        hits += np.bincount(yb[logits.argmax(axis=1) == yb], minlength=num_classes)
    return EvalCounts(hits, np.bincount(y, minlength=num_classes), loss_sum)


def evaluate(model: Model, w: np.ndarray, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy (mean per-class recall) and mean cross-entropy of ``w`` on ``x, y``."""
    if len(y) == 0:
        raise ValueError("the evaluation set is empty: set data.holdout_fraction or data.test_fraction")
    return evaluation_counts(model, w, x, y).scores()
