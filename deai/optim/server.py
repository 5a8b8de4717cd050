"""Server optimizers: apply the aggregated update to the global model.

FedAvg is server SGD with learning rate 1 on the pseudo-gradient ``-mean(delta)``. FedAdam,
FedYogi and FedAdagrad follow Reddi et al. 2021 ("Adaptive Federated Optimization", Alg. 2):
no bias correction, adaptivity ``tau`` added outside the square root.
State is an explicit dict of arrays so it checkpoints losslessly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

State = dict[str, np.ndarray]


@dataclass(frozen=True)
class ServerSGD:
    """``x <- x + lr * delta`` (with optional heavy-ball momentum, as in FedAvgM; ``nesterov`` looks ahead:
    ``x <- x + lr * (delta + momentum * m)`` with ``m = momentum * m + delta``, PyTorch's form, which is
    DiLoCo's outer step (Douillard et al. 2023: lr 0.7, momentum 0.9 on the averaged delta))."""

    lr: float = 1.0
    momentum: float = 0.0
    nesterov: bool = False

    def init(self, dim: int) -> State:
        return {"m": np.zeros(dim, np.float32)} if self.momentum else {}

    def step(self, x: np.ndarray, delta: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        if self.momentum:
            m = self.momentum * state["m"] + delta
            step = delta + self.momentum * m if self.nesterov else m
            return (x + self.lr * step).astype(np.float32), {"m": m.astype(np.float32)}
        return (x + self.lr * delta).astype(np.float32), state


@dataclass(frozen=True)
class ServerAdaptive:
    """FedAdagrad / FedAdam / FedYogi: one class, the second-moment rule differs."""

    rule: str  # "adagrad" | "adam" | "yogi"
    lr: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3

    def init(self, dim: int) -> State:
        # Reddi et al. initialise v to tau^2 so the first step is bounded.
        return {"m": np.zeros(dim, np.float32), "v": np.full(dim, self.tau**2, np.float32)}

    def step(self, x: np.ndarray, delta: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        d = delta.astype(np.float64)
        m = self.beta1 * state["m"] + (1 - self.beta1) * d
        d2 = d * d
        v = state["v"].astype(np.float64)
        if self.rule == "adagrad":
            v = v + d2
        elif self.rule == "adam":
            v = self.beta2 * v + (1 - self.beta2) * d2
        elif self.rule == "yogi":
            v = v - (1 - self.beta2) * d2 * np.sign(v - d2)
        else:
            raise ValueError(f"unknown adaptive rule {self.rule!r}; use adagrad, adam or yogi")
        x_new = x + self.lr * m / (np.sqrt(v) + self.tau)
        return x_new.astype(np.float32), {"m": m.astype(np.float32), "v": v.astype(np.float32)}
