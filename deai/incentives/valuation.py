"""What each party's update was worth, round by round: Shapley-style values from the round event stream.

**The utility, defined once.** For a round ``t`` and a coalition ``S`` of the round's accepted parties,
``U_t(S)`` is the task owner's evaluation score of the model the server would have released had only
``S``'s updates arrived: the same rule aggregates ``S``'s rows (with their weights), the same server
optimizer steps from the round's starting model and optimizer state. ``U_t(none)`` is the starting model's
score. The score is minus the evaluation set's mean cross-entropy (``utility = "loss"``, the default:
smooth, so small contributions still register) or its accuracy (``"accuracy"``). A party's value for the
run is the sum of its per-round Shapley values (as GTG-Shapley does); per round the values sum to
``U_t(all) - U_t(none)``, the round's whole gain, except under the sampled methods' truncation.

Valuation reads every accepted update, so it needs an in-process record stream (the simulator, or a task
owner who aggregates itself); it is not available under secure aggregation or HE, where no one sees an
update, and it evaluates on the owner's evaluation rows (never a party's).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deai.aggregate import PRIVATE
from deai.aggregate.mean import WeightedMean
from deai.context import RoundContext
from deai.incentives.shapley import Coalitions, exact_shapley, gtg_shapley, leave_one_out, tmc_shapley
from deai.messages import RoundRecord
from deai.rng import Purpose, generator

METHODS = ("exact", "gtg", "tmc", "loo")
UTILITIES = ("loss", "accuracy")


def round_game(
    record: RoundRecord,
    params: np.ndarray,
    opt_state: dict[str, np.ndarray],
    aggregator: Any,
    server_opt: Any,
    evaluate: Callable[[np.ndarray], dict[str, float]],
    seed: int,
    utility: str = "loss",
    scorer: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Coalitions:
    """The coalition game of one round over its accepted parties (in ``record.batch`` order).

    ``scorer`` (optional) scores a stack of models ``[k, dim]`` at once (:func:`batch_scorer`); without
    it each coalition's model is scored by ``evaluate``.
    """
    batch = record.batch

    def model_of(mask: np.ndarray) -> np.ndarray:
        if not mask.any():
            return params
        ctx = RoundContext(seed, record.round, batch.party_ids[mask], steps=batch.steps[mask])
        try:
            update = aggregator(batch.deltas[mask], batch.weights[mask], ctx)
        except (ValueError, ArithmeticError):  # e.g. a rule that needs more rows than the coalition has
            return params
        return server_opt.step(params, update, opt_state)[0]

    def u(mask: np.ndarray) -> float:
        scores = evaluate(model_of(mask))
        return -float(scores["loss"]) if utility == "loss" else float(scores["accuracy"])

    def models_of(masks: np.ndarray) -> np.ndarray:
        if not isinstance(aggregator, WeightedMean):
            return np.stack([model_of(m) for m in masks])
        # FedAvg's mean of every coalition at once: one matrix product, then the optimizer's elementwise
        # step broadcast over the stack (the same arithmetic as the rule, coalition by coalition)
        shares = masks * batch.weights[None, :]
        total = shares.sum(axis=1, keepdims=True)
        shares = (shares / np.where(total > 0, total, 1.0)).astype(np.float32)
        models = server_opt.step(params, shares @ batch.deltas, opt_state)[0]
        models[~masks.any(axis=1)] = params
        return models

    many = None if scorer is None else (lambda masks: scorer(models_of(masks)))
    return Coalitions(len(batch), u, many)


def batch_scorer(model: Any, x: np.ndarray, y: np.ndarray, utility: str, budget: int = 4_000_000):
    """Score ``[k, dim]`` models on the owner's rows ``x, y`` in batched forward passes: minus the mean
    cross-entropy (``"loss"``) or the accuracy, the same numbers :func:`deai.evaluation.evaluate` gives."""
    per_model = max(1, len(y) * x.shape[1])

    def score(models: np.ndarray) -> np.ndarray:
        out = np.empty(len(models))
        step = max(1, budget // per_model)
        for s in range(0, len(models), step):
            w = models[s : s + step]
            logits = model.logits(w, np.broadcast_to(x, (len(w), *x.shape))).astype(np.float64)
            z = logits - logits.max(axis=-1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
            if utility == "loss":
                out[s : s + len(w)] = logp[:, np.arange(len(y)), y].mean(axis=1)
            else:
                out[s : s + len(w)] = (logits.argmax(axis=-1) == y[None, :]).mean(axis=1)
        return out

    return score


def shapley_values(game: Coalitions, method: str, rng: np.random.Generator) -> np.ndarray:
    if method == "exact":
        return exact_shapley(game)
    if method == "gtg":
        return gtg_shapley(game, rng)
    if method == "tmc":
        return tmc_shapley(game, rng)
    if method == "loo":
        return leave_one_out(game)
    raise ValueError(f"valuation method must be one of {', '.join(METHODS)}; got {method!r}")


@dataclass
class Valuation:
    """A record-stream subscriber that values every round and keeps each party's running total.

    It must see the server's state *before* each round (the model and optimizer state the coalitions
    step from), so it reads them from ``server`` once at the start and after every round it values.
    """

    server: Any  # deai.server.program.ServerProgram (in-process)
    method: str = "gtg"
    utility: str = "loss"
    totals: dict[int, float] = field(default_factory=dict)
    seconds: float = 0.0
    scorer: Callable[[np.ndarray], np.ndarray] | None = None  # batched scoring (see batch_scorer)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"valuation method must be one of {', '.join(METHODS)}; got {self.method!r}")
        if self.utility not in UTILITIES:
            raise ValueError(f"valuation utility must be one of {', '.join(UTILITIES)}; got {self.utility!r}")
        self._snapshot()

    @classmethod
    def of(cls, sim: Any, method: str = "gtg", utility: str = "loss") -> Valuation:
        """The valuation of a :class:`~deai.engine.simulation.Simulation`: batched scoring when the task
        owner holds its own evaluation rows (else each coalition is scored by federated evaluation)."""
        fed = sim.fed
        scorer = None
        if fed.x_heldout is not None:
            scorer = batch_scorer(sim.model, fed.x_heldout, fed.y_heldout, utility)
        return cls(sim.server, method, utility, scorer=scorer)

    def _snapshot(self) -> None:
        st = self.server.state
        self._params = st.params
        self._opt_state = {k: np.array(v, copy=True) for k, v in st.opt_state.items()}

    def __call__(self, record: RoundRecord) -> None:
        t0 = time.perf_counter()
        if record.batch is not None and len(record.batch):
            s = self.server
            game = round_game(
                record, self._params, self._opt_state, s.aggregator, s.server_opt, s.evaluator,
                s.cfg.run.seed, self.utility, self.scorer,
            )  # fmt: skip
            with np.errstate(over="ignore", invalid="ignore"):
                phi = shapley_values(
                    game, self.method, generator(s.cfg.run.seed, record.round, Purpose.VALUE)
                )
            record.metrics["valuation_evaluations"] = game.evaluations
            if np.isfinite(phi).all():
                values = {int(p): float(v) for p, v in zip(record.batch.party_ids, phi, strict=True)}
                for p, v in values.items():
                    self.totals[p] = self.totals.get(p, 0.0) + v
                record.metrics["values"] = {str(p): round(v, 8) for p, v in values.items()}
            else:  # some coalition's model overflowed: there is no finite utility to share out
                record.metrics["valuation_skipped"] = "a coalition's model diverged (infinite loss)"
        self._snapshot()
        self.seconds += time.perf_counter() - t0


def value(
    config: Any, method: str = "gtg", utility: str = "loss", on_round: Callable[[dict], None] | None = None
) -> dict[str, Any]:
    """Run ``config`` in memory and value every party: ``{"method", "utility", "values", "seconds", ...}``.

    ``values`` maps each party's name to its summed per-round value; ``seconds`` is the valuation's own
    time (training excluded); ``rounds`` holds the per-round values from the metrics lines.
    """
    from deai.config import ConfigError
    from deai.engine.api import as_config, build_data, build_model
    from deai.engine.simulation import Simulation

    if method not in METHODS:
        raise ConfigError(f"--method must be one of {', '.join(METHODS)}; got {method!r}")
    if utility not in UTILITIES:
        raise ConfigError(f"--utility must be one of {', '.join(UTILITIES)}; got {utility!r}")
    cfg = as_config(config)
    check_valuable(cfg, method, "--method")
    fed = build_data(cfg)
    sim = Simulation(cfg, fed, build_model(cfg, fed))
    valuation = Valuation.of(sim, method, utility)
    t0 = time.perf_counter()
    sim.run(on_round, valuation)
    names = fed.party_names if len(set(fed.party_names)) == len(fed.party_names) else None

    def name(p: int) -> str:
        return names[p] if names is not None else str(p)

    return {
        "method": method,
        "utility": "minus evaluation cross-entropy" if utility == "loss" else "evaluation accuracy",
        "values": {name(p): valuation.totals.get(p, 0.0) for p in range(fed.num_parties)},
        "seconds": valuation.seconds,
        "run_seconds": time.perf_counter() - t0,
        "rounds": [  # each round's values as its metrics line records them
            {"round": m["round"], "values": {name(int(p)): v for p, v in m.get("values", {}).items()}}
            for m in sim.state.history
        ],
    }


def check_valuable(cfg: Any, method: str, field: str = "valuation.method") -> None:
    """Refuse, naming ``field``, a task whose parties cannot be valued from their updates."""
    from deai.config import ConfigError
    from deai.incentives.shapley import MAX_EXACT

    if cfg.strategy.aggregator in PRIVATE:
        raise ConfigError(
            f"{field}: valuation rebuilds coalition models from single updates; under "
            f"{cfg.strategy.aggregator!r} no one sees one. Value the task with a plain aggregator"
        )
    if cfg.privacy.mode != "none":
        raise ConfigError(
            f"{field}: valuation reads every party's own update, so its values would leak what DP noise "
            "hides; value the task with privacy.mode = 'none'"
        )
    if method == "exact" and cfg.data.num_parties > MAX_EXACT:
        raise ConfigError(
            f"{field} exact enumerates 2^n coalitions per round; {cfg.data.num_parties} parties is above "
            f"{MAX_EXACT}: use gtg or tmc"
        )
