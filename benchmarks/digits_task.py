"""The benchmark task, shared by every side (Flower, deai, plain NumPy loop) so all do identical arithmetic.

Multinomial logistic regression (softmax, W [64, 10] + b [10]) on scikit-learn's digits, FedAvg over an
IID partition. Depends only on NumPy and scikit-learn so it imports from the deai venv and the Flower venv.
Everything is float32 (features, weights, gradients), matching what Flower's FedAvg aggregates in.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

LR = 0.5
BATCH_SIZE = 32
LOCAL_EPOCHS = 1
ROUNDS = 10
N_FEATURES = 64
N_CLASSES = 10
EVAL_FRACTION = 0.2


def read_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits file, read directly: the same rows as ``load_digits()``.

    Reading the CSV instead of importing scikit-learn (about 1 s) keeps every side's start-up to its
    framework's own cost; all sides use this same function.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("scikit-learn is needed for its bundled digits data")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    table = np.loadtxt(path, delimiter=",", dtype=np.float64)
    return table[:, :-1], table[:, -1].astype(np.int64)


def load_task(
    parties: int, seed: int, replicate: int = 1
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray, np.ndarray]:
    """Return (x_parts, y_parts, x_eval, y_eval): an IID split of digits into `parties` parts.

    Shuffle with default_rng(seed), hold out 20% of the 1,797 rows as the evaluation set, split the rest
    into near-equal parts with np.array_split. With replicate > 1 the *training* rows are tiled that many
    times (and shuffled again) before the split, so 10,000 parties each get at least one example; the
    evaluation set is taken first and stays the same 359 distinct rows, never leaked into training.
    """
    if parties < 1 or replicate < 1:
        raise ValueError("parties and replicate must be >= 1")
    data, target = read_digits()
    x = (data / 16.0).astype(np.float32)
    y = target.astype(np.int64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    n_eval = int(EVAL_FRACTION * len(x))
    eval_idx, train_idx = order[:n_eval], order[n_eval:]
    if replicate > 1:
        train_idx = rng.permutation(np.tile(train_idx, replicate))
    if parties > len(train_idx):
        raise ValueError(f"{parties} parties but only {len(train_idx)} training rows; raise replicate")
    x_parts = [x[idx] for idx in np.array_split(train_idx, parties)]
    y_parts = [y[idx] for idx in np.array_split(train_idx, parties)]
    return x_parts, y_parts, x[eval_idx], y[eval_idx]


@lru_cache(maxsize=4)
def load_task_cached(
    parties: int, seed: int, replicate: int = 1
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray, np.ndarray]:
    """load_task memoised per process (for long-lived workers such as Flower's Ray actors)."""
    return load_task(parties, seed, replicate)


def initial_weights() -> tuple[np.ndarray, np.ndarray]:
    """Zeros: W [64, 10], b [10], float32."""
    return np.zeros((N_FEATURES, N_CLASSES), np.float32), np.zeros(N_CLASSES, np.float32)


def softmax_grad(W: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradient of the mean cross-entropy of softmax(x @ W + b) against integer labels y."""
    logits = x @ W + b
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    p /= len(y)
    return x.T @ p, p.sum(axis=0)


def party_rng(seed: int, party: int, round_: int) -> np.random.Generator:
    """The generator for one party's mini-batch order in one round (same on every side)."""
    return np.random.default_rng([seed, party, round_])


def local_epoch(
    W: np.ndarray,
    b: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
    lr: float = LR,
    batch_size: int = BATCH_SIZE,
) -> tuple[np.ndarray, np.ndarray]:
    """One epoch of plain mini-batch SGD over a fresh random permutation; returns new (W, b)."""
    order = rng.permutation(len(x))
    for start in range(0, len(x), batch_size):
        idx = order[start : start + batch_size]
        gW, gb = softmax_grad(W, b, x[idx], y[idx])
        W = W - lr * gW
        b = b - lr * gb
    return W, b


def accuracy(W: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of rows whose arg-max class is the label."""
    return float(np.mean(np.argmax(x @ W + b, axis=1) == y))
