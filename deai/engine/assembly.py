"""A task's parts, built from its config once for every place that runs it.

The simulator and the network nodes build the same strategy (local training, client transforms, rule,
server optimizer) and the same DP mechanism from the same config: a party node takes the party's half,
the aggregator node the server's, and the simulator both. Nothing here reads a party's rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from deai.aggregate import make_aggregator
from deai.config import ConfigError, ExperimentConfig
from deai.engine.strategy import Strategy, build_strategy
from deai.models.base import Model
from deai.party.budget import PartyBudget
from deai.server import ServerControl, ServerProgram
from deai.server.registry import PartyRegistry
from deai.transforms import chain


def task_strategy(
    cfg: ExperimentConfig, num_parties: int, class_counts: np.ndarray | None = None
) -> tuple[Strategy, Any]:
    """The task's strategy, with its configured rule and, under user-level DP, its mechanism
    (:class:`deai.engine.privacy.DPFedAvg`, whose client transforms replace the strategy's)."""
    pv = cfg.privacy
    gradient_fn = None
    if pv.example_noise_multiplier is not None and pv.example_dp_engine == "vectorized":
        from deai.privacy.dp.dpsgd import ExampleLevelDPSGD

        gradient_fn = ExampleLevelDPSGD(
            pv.example_clip_norm, pv.example_noise_multiplier, cfg.strategy.batch_size, pv.simulation
        )
    strategy = build_strategy(cfg.strategy, class_counts, gradient_fn)
    if cfg.strategy.aggregator is not None:
        try:
            strategy.aggregator = make_aggregator(
                cfg.strategy.aggregator,
                cfg.strategy.aggregator_options,
                num_parties=num_parties,
                f_max=cfg.strategy.f_max,
            )
        except (TypeError, ValueError) as err:
            raise ConfigError(f"strategy.aggregator_options: {err}") from None
    if cfg.ledger.enabled and cfg.ledger.commit_reveal and hasattr(strategy.aggregator, "commit_reveal"):
        strategy.aggregator.commit_reveal = True  # SecAgg+: parties commit to their masked inputs
    dp = None
    if pv.mode != "none":
        from deai.engine.privacy import DPFedAvg

        dp = DPFedAvg(cfg, num_parties)
        strategy.transforms = chain(*dp.client_transforms())
    compressor = _compressor(cfg)
    if compressor is not None:  # last: what leaves the party (after clipping and any noise share)
        strategy.transforms = chain(*strategy.transforms.transforms, compressor)
    return strategy, dp


def _compressor(cfg: ExperimentConfig) -> Any:
    from deai.transforms.compress import ErrorFeedbackCompressor, StochasticInt8

    c = cfg.compression
    if c.kind == "none":
        return None
    if cfg.strategy.aggregator in ("secagg", "he_ckks"):
        raise ConfigError(
            f"compression.kind {c.kind!r}: under strategy.aggregator {cfg.strategy.aggregator!r} a party "
            "sends masked inputs or ciphertexts, which are dense whatever the update; set compression.kind "
            "= 'none'"
        )
    if c.kind == "int8":
        return StochasticInt8()
    return ErrorFeedbackCompressor(c.topk_fraction, int8=c.kind == "topk_int8")


def party_budget(cfg: ExperimentConfig, dp: Any) -> PartyBudget | None:
    """Each party's own epsilon limit, at the task's noise multiplier (after any calibration)."""
    pv = cfg.privacy
    if pv.party_budget_epsilon is None or dp is None:
        return None
    return PartyBudget(pv.party_budget_epsilon, dp.noise_multiplier, pv.delta, pv.accountant)


def server_program(
    cfg: ExperimentConfig,
    model: Model,
    strategy: Strategy,
    dp: Any,
    registry: PartyRegistry,
    evaluator: Callable[[np.ndarray], dict[str, float]],
    train_sizes: np.ndarray,
    *,
    root: tuple[np.ndarray, np.ndarray] | None = None,
    exchange: Callable[[str, Any], dict[int, bytes]] | None = None,
) -> ServerProgram:
    """The task's server program; ``train_sizes`` are the example counts the parties declare."""
    control = None
    if strategy.control_variates:
        # c must average the c_i with the aggregate's own weights: DP-FedAvg's are uniform, the mean's
        # are example counts (public: each party declares its count with its update)
        weights = np.ones(len(registry)) if cfg.privacy.mode != "none" else train_sizes
        control = ServerControl(model.layout.dim, weights)
    return ServerProgram(
        cfg,
        model,
        strategy.aggregator,
        strategy.server_opt,
        registry,
        strategy.local,
        evaluator,
        dp=dp,
        control=control,
        root=root,
        exchange=exchange,
    )
