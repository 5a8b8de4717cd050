"""NumPy models with analytic gradients, batched over parties.

Every method takes a ``[P, dim]`` stack of parameter vectors and ``[P, B, F]`` inputs, so one
call trains or evaluates all sampled parties of a round with batched matrix products.
"""

from __future__ import annotations

import numpy as np

from deai.models.base import softmax_xent
from deai.params import Layout


class LogisticRegression:
    """Multinomial logistic (softmax) regression: ``logits = x @ W + b``."""

    def __init__(self, num_features: int, num_classes: int) -> None:
        self.num_features, self.num_classes = int(num_features), int(num_classes)
        self.layout = Layout.from_shapes({"W": (num_features, num_classes), "b": (num_classes,)})
        self._split = num_features * num_classes

    def init_params(self, seed: int) -> np.ndarray:
        # Zeros: the convex problem needs no symmetry breaking, and every run starts identically.
        return np.zeros(self.layout.dim, dtype=np.float32)

    def _unpack(self, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        P = W.shape[0]
        return W[:, : self._split].reshape(P, self.num_features, self.num_classes), W[:, self._split :]

    def logits(self, W: np.ndarray, X: np.ndarray) -> np.ndarray:
        Wm, b = self._unpack(W)
        return np.matmul(X, Wm) + b[:, None, :]

    def loss_grad(
        self, W: np.ndarray, X: np.ndarray, y: np.ndarray, mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        loss, d = softmax_xent(self.logits(W, X), y, mask)
        P = W.shape[0]
        grad = np.empty_like(W)
        grad[:, : self._split] = np.matmul(X.transpose(0, 2, 1), d).reshape(P, -1)
        grad[:, self._split :] = d.sum(axis=1)
        return loss, grad


class MLP:
    """One hidden ReLU layer: ``logits = relu(x @ W1 + b1) @ W2 + b2`` (He-initialised)."""

    def __init__(self, num_features: int, num_classes: int, hidden: int = 64) -> None:
        if hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {hidden}")
        self.num_features, self.num_classes, self.hidden = int(num_features), int(num_classes), int(hidden)
        self.layout = Layout.from_shapes(
            {"W1": (num_features, hidden), "b1": (hidden,), "W2": (hidden, num_classes), "b2": (num_classes,)}
        )

    def init_params(self, seed: int) -> np.ndarray:
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 1]))
        w = np.zeros(self.layout.dim, dtype=np.float32)
        f, h = self.num_features, self.hidden
        self.layout.view(w, "W1")[...] = rng.normal(0, np.sqrt(2.0 / f), (f, h))
        self.layout.view(w, "W2")[...] = rng.normal(0, np.sqrt(1.0 / h), (h, self.num_classes))
        return w

    def _parts(self, W: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(self.layout.view(W, n) for n in ("W1", "b1", "W2", "b2"))

    def _forward(self, W: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        W1, b1, W2, b2 = self._parts(W)
        h = np.maximum(np.matmul(X, W1) + b1[:, None, :], 0.0)
        return h, np.matmul(h, W2) + b2[:, None, :]

    def logits(self, W: np.ndarray, X: np.ndarray) -> np.ndarray:
        return self._forward(W, X)[1]

    def loss_grad(
        self, W: np.ndarray, X: np.ndarray, y: np.ndarray, mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        h, logits = self._forward(W, X)
        loss, d = softmax_xent(logits, y, mask)
        W2 = self.layout.view(W, "W2")
        dh = np.matmul(d, W2.transpose(0, 2, 1))
        dh *= h > 0
        P = W.shape[0]
        grads = {
            "W1": np.matmul(X.transpose(0, 2, 1), dh),
            "b1": dh.sum(axis=1),
            "W2": np.matmul(h.transpose(0, 2, 1), d),
            "b2": d.sum(axis=1),
        }
        grad = np.empty_like(W)
        for e in self.layout.entries:
            grad[:, e.offset : e.offset + e.size] = grads[e.name].reshape(P, -1)
        return loss, grad
