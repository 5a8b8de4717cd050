"""A simulated federation: the party program, the server program and the in-process transport, wired.

``Simulation`` builds the two programs from a config, puts the simulated adversary around the transport
and the ground-truth observer on the record stream, and runs :func:`deai.engine.driver.drive`. Every
random choice is keyed by (seed, round, party, purpose), so a run resumed from a checkpoint is
bit-identical to one never interrupted.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from deai.aggregate.base import traits
from deai.attacks import choose_malicious, make_attack
from deai.config import ConfigError, ExperimentConfig
from deai.data.federated import FederatedData
from deai.engine.assembly import party_budget, server_program, task_strategy
from deai.engine.federation import Federation, SimulationState
from deai.engine.participation import RoundPlan, party_speeds, plan_round
from deai.evaluation import evaluate
from deai.models.base import Model
from deai.party import PartyProgram, PartyShards
from deai.rng import Purpose
from deai.server.registry import PartyRegistry
from deai.sim import AdversarialParties, Adversary, GroundTruthObserver
from deai.state import flatten_tree, unflatten_tree
from deai.train import LocalSpec, planned_steps
from deai.transport import InProcessTransport, SimulatedClock
from deai.transport.inprocess import CHUNK_PARTIES

__all__ = ["Simulation", "SimulationState", "evaluate"]


class Simulation(Federation):
    """One federated training run over an in-memory federation."""

    def __init__(self, cfg: ExperimentConfig, fed: FederatedData, model: Model) -> None:
        self.cfg, self.fed, self.model = cfg, fed, model
        seed = cfg.run.seed
        pv = cfg.privacy
        # class counts are one task-level histogram (in a deployment, summed under secure aggregation)
        self.strategy, self.dp = task_strategy(
            cfg, fed.num_parties, np.bincount(fed.y_train, minlength=fed.num_classes)
        )
        self.malicious = np.zeros(fed.num_parties, dtype=bool)
        adversary = None
        if cfg.attack.kind != "none":
            try:
                attack = make_attack(cfg.attack.kind, **cfg.attack.options)
            except (TypeError, ValueError) as err:
                raise ConfigError(f"attack.options: {err}") from None
            self.malicious = choose_malicious(fed.num_parties, cfg.attack.fraction, seed)
            if not self.malicious.any():
                raise ConfigError(
                    f"attack.fraction={cfg.attack.fraction} of {fed.num_parties} parties selects no one; "
                    "raise it"
                )
            adversary = Adversary(attack, self.malicious, seed)
            if not traits(self.strategy.aggregator).private:  # nothing to tailor to under secure sums
                adversary.defence = self.strategy.aggregator
        # -- the party side: every party's own rows, trained in one batched program -------------
        shards = PartyShards.from_federation(fed)
        if adversary is not None:
            shards = adversary.poison(shards)
        opacus = pv.example_dp_engine == "opacus"
        self.party = PartyProgram(
            model,
            shards,
            self.strategy.transforms,
            scaffold=self.strategy.control_variates,
            backend="opacus" if opacus else cfg.run.backend,
            workers=cfg.run.workers,
            example_dp=(pv.example_noise_multiplier, pv.example_clip_norm) if opacus else None,
            budget=party_budget(cfg, self.dp),
        )
        self.speeds = party_speeds(seed, fed.num_parties, cfg.participation.speed_sigma)
        self.planned = planned_steps(fed.train_sizes, self.strategy.local)
        parties = self.party
        if adversary is not None:
            parties = AdversarialParties(self.party, adversary, fed.num_classes, fed.image_shape)
        self.transport = InProcessTransport(
            parties,
            SimulatedClock(seed, self.speeds, self.planned, cfg.participation.dropout_rate),
            asynchronous=cfg.participation.async_buffer is not None,
            # an omniscient attack reads every honest row of the round: train the round in one call
            chunk_parties=fed.num_parties if adversary is not None else CHUNK_PARTIES,
            ring_noise=None if self.dp is None else self.dp.ring_noise,
        )
        if self.dp is not None and self.dp.ring_noise is not None:
            self.strategy.aggregator.noise_headroom = self.dp.ring_noise.headroom()
        # -- the server side ----------------------------------------------------------------------
        root = self._fltrust_root() if traits(self.strategy.aggregator).needs_root else None
        self.server = server_program(
            cfg,
            model,
            self.strategy,
            self.dp,
            self._registry(),
            self._evaluator(),
            fed.train_sizes,
            root=root,
            exchange=self.transport.exchange,
        )
        if adversary is not None and root is not None:
            adversary.defence_signals = lambda r, steps: {"server_update": self.server._root_update(r, steps)}
        self.state = SimulationState(self.server)
        self.observer = GroundTruthObserver(self.malicious)

    def _registry(self) -> PartyRegistry:
        """The parties by name; anonymous dense names if the data set's names are not unique."""
        named = PartyRegistry(self.fed.party_names)
        return named if len(named) == self.fed.num_parties else PartyRegistry.dense(self.fed.num_parties)

    def _evaluator(self) -> Callable[[np.ndarray], dict[str, float]]:
        """The task owner's own evaluation rows when it holds some; else federated evaluation, where each
        party scores the model on its own test rows and the counts are summed."""
        f = self.fed
        if f.x_heldout is not None:
            return lambda w: evaluate(self.model, w, f.x_heldout, f.y_heldout)
        return lambda w: self.transport.evaluate(w).scores()

    # -- state ----------------------------------------------------------------------------
    def state_arrays(self) -> dict[str, np.ndarray]:
        """Everything needed to continue the run, as named arrays (for a checkpoint; see deai.state)."""
        return flatten_tree({"server": self.server.state_tree(), "party": self.party.state_tree()})

    def required_state(self) -> dict[str, np.ndarray]:
        """The arrays a checkpoint must hold to resume; ``version`` and ``sim_clock`` came later and
        default (to the round, and to 0) in checkpoints written before them."""
        optional = ("server/version", "server/sim_clock")
        return {k: v for k, v in self.state_arrays().items() if k not in optional}

    def load_state(self, params: np.ndarray, arrays: dict[str, np.ndarray]) -> None:
        tree = unflatten_tree(arrays)  # RunDirectory.restore has upgraded pre-named-state names already
        self.server.load_tree(params, tree["server"])
        self.party.load_tree(tree["party"])
        self.transport.now = self.server.state.sim_clock  # simulated clocks go on from where they stopped

    # -- rounds ---------------------------------------------------------------------------
    def plan(self, r: int) -> RoundPlan:
        """Who takes part in round ``r`` and who reports: a pure function of the seed and the round."""
        part = self.cfg.participation
        return plan_round(
            self.cfg.run.seed,
            r,
            self.fed.num_parties,
            self.planned,
            self.speeds,
            fraction=part.fraction,
            count=part.count,
            dropout_rate=part.dropout_rate,
            deadline=part.deadline,
            straggler_policy=part.straggler_policy,
            poisson=part.poisson,
        )

    def observers(self) -> list:
        return [self.observer]

    def example_epsilon(self) -> float | None:
        """Example-level DP-SGD: the largest epsilon over parties, from the steps each actually took.

        Each party is its own data set for example-level privacy; its epsilon composes
        ``epochs * ceil(n / B)`` steps at sampling rate ``B / n`` per round it took part in.
        """
        pv = self.cfg.privacy
        if pv.example_noise_multiplier is None:
            return None
        from deai.privacy.dp.accountant import compute_epsilon

        rounds_in = self.party.trained_rounds
        B, E = self.strategy.local.batch_size, self.strategy.local.epochs
        worst = 0.0
        for n, r in {(int(n), int(r)) for n, r in zip(self.fed.train_sizes, rounds_in, strict=True) if r}:
            q = min(1.0, B / n)
            steps = r * E * -(-n // B)
            worst = max(
                worst, compute_epsilon(pv.example_noise_multiplier, q, steps, pv.delta, pv.accountant)
            )
        return worst

    def _fltrust_root(self) -> tuple[np.ndarray, np.ndarray]:
        """FLTrust's root set: the task owner's own clean rows (simulated as a seeded sample of honest
        parties' training rows, which the owner is assumed to hold too)."""
        f = self.fed
        owner = np.repeat(np.arange(f.num_parties), f.train_sizes)
        honest_rows = np.flatnonzero(~self.malicious[owner])
        rng = np.random.default_rng(np.random.SeedSequence([self.cfg.run.seed, int(Purpose.ATTACK), 1]))
        n = min(self.cfg.strategy.fltrust_root_size, len(honest_rows))
        rows = np.sort(rng.choice(honest_rows, size=n, replace=False))
        return f.x_train[rows], f.y_train[rows]

    # -- personalization ------------------------------------------------------------------
    def personalize(self, epochs: int) -> dict[str, float]:
        """Fine-tune the global model on each party's own data (party-side); see PartyProgram.personalize."""
        local = self.strategy.local
        spec = LocalSpec(
            epochs=epochs, batch_size=local.batch_size, lr=local.lr, class_weights=local.class_weights
        )
        return self.party.personalize(self.state.params, spec, self.cfg.run.seed, self.cfg.run.rounds + 1)
