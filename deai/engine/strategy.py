"""Federated algorithms as configurations of shared parts, never as copies of a loop.

A strategy bundles the local trainer's settings, client transforms, an aggregator, a server
optimizer and (for SCAFFOLD) control variates:

===========  ===============================  ==========  ====================
algorithm    local training                   aggregator  server optimizer
===========  ===============================  ==========  ====================
fedavg       SGD (McMahan et al. 2017)        mean        SGD, lr 1
fedprox      SGD + mu/2 |w - w_g|^2 (Li 2020) mean        SGD, lr 1
scaffold     SGD + (c - c_i) (Karimireddy 20) mean        SGD, lr 1
fedadam      SGD                              mean        Adam (Reddi 2021)
fedyogi      SGD                              mean        Yogi (Reddi 2021)
fedadagrad   SGD                              mean        Adagrad (Reddi 2021)
fednova      SGD                              fednova     SGD, lr 1 (Wang 2020)
===========  ===============================  ==========  ====================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from deai.aggregate import Aggregator, FedNova, WeightedMean
from deai.config import StrategySection
from deai.optim import ServerAdaptive, ServerSGD
from deai.train import LocalSpec
from deai.transforms import Chain, ClipByNorm, chain

ADAPTIVE = {"fedadam": "adam", "fedyogi": "yogi", "fedadagrad": "adagrad"}


@dataclass
class Strategy:
    name: str
    local: LocalSpec
    transforms: Chain
    aggregator: Aggregator
    server_opt: ServerSGD | ServerAdaptive
    control_variates: bool = False


def build_strategy(
    cfg: StrategySection,
    class_counts: np.ndarray | None = None,
    gradient_fn: Callable[..., tuple[np.ndarray, np.ndarray]] | None = None,
) -> Strategy:
    """Assemble the parts for ``cfg.algorithm``; ``class_counts`` feeds ``class_weighting = 'balanced'``.

    Class counts are one histogram for the whole federation: a task-level statistic (in a
    deployment it is summed under secure aggregation), not any party's raw data.
    """
    weights = None
    if cfg.class_weighting == "balanced":
        if class_counts is None:
            raise ValueError("class_weighting 'balanced' needs the federation's class counts")
        counts = np.maximum(np.asarray(class_counts, dtype=np.float64), 1.0)
        weights = tuple(float(w) for w in counts.sum() / (len(counts) * counts))
    local = LocalSpec(
        epochs=cfg.local_epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        prox_mu=cfg.mu,
        class_weights=weights,
        gradient_fn=gradient_fn,
    )
    transforms = chain(ClipByNorm(cfg.clip_norm)) if cfg.clip_norm else chain()
    if cfg.algorithm in ADAPTIVE:
        server = ServerAdaptive(
            ADAPTIVE[cfg.algorithm], lr=cfg.server_lr or 0.01, beta1=cfg.beta1, beta2=cfg.beta2, tau=cfg.tau
        )
    else:
        server = ServerSGD(
            lr=cfg.server_lr or 1.0, momentum=cfg.server_momentum, nesterov=cfg.server_nesterov
        )
    aggregator: Aggregator = FedNova() if cfg.algorithm == "fednova" else WeightedMean()
    return Strategy(
        name=cfg.algorithm,
        local=local,
        transforms=transforms,
        aggregator=aggregator,
        server_opt=server,
        control_variates=cfg.algorithm == "scaffold",
    )
