"""Experiment configuration: a TOML file validated up front with pydantic.

Every field is checked before any work starts; an unknown key or a bad value is reported with
its dotted path and what is allowed (see :func:`format_validation_error`).
"""

from __future__ import annotations

import re
import tomllib
import warnings
from pathlib import Path
from typing import Any, Literal, get_args

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from deai.data.datasets import DATASETS
from deai.data.partition import PARTITIONS
from deai.notice import DeaiWarning

# Each set of names is written once, as the Literal pydantic validates against; the tuples derive from it.
Algorithm = Literal["fedavg", "fedprox", "scaffold", "fedadam", "fedyogi", "fedadagrad", "fednova"]
BackendName = Literal["vectorized", "processes", "ray"]
ModelKind = Literal["logreg", "mlp", "cnn"]
ALGORITHMS: tuple[str, ...] = get_args(Algorithm)
BACKENDS: tuple[str, ...] = get_args(BackendName)
MODELS: tuple[str, ...] = get_args(ModelKind)


class ConfigError(ValueError):
    """A configuration problem, with a message that says what to fix."""


class ConfigWarning(DeaiWarning):
    """A setting that is valid but has no effect, or a config that sets nothing: worth a word, not a stop."""


class _Strict(BaseModel):
    # strict: "3" is not a number and true is not a count (TOML integers are still accepted as floats)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)


# A run name becomes a directory under runs/: one path component, no way out of runs/.
RUN_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


class RunSection(_Strict):
    name: str = Field(
        "run", description="letters, digits, '.', '_' and '-' (it names the directory under runs/)"
    )
    seed: int = 0
    rounds: int = Field(10, ge=1, le=100_000)
    backend: BackendName = "vectorized"
    workers: int = Field(2, ge=1, description="worker processes / Ray tasks for the parallel backends")
    eval_every: int = Field(1, ge=1)
    checkpoint_every: int = Field(5, ge=1, description="keep a numbered checkpoint every N rounds")
    party_signals: bool = Field(False, description="write per-party detection signals to metrics.jsonl")

    @field_validator("name")
    @classmethod
    def _one_path_component(cls, v: str) -> str:
        if not re.fullmatch(RUN_NAME_PATTERN, v):
            raise ValueError(
                "a run name names a directory under runs/: use 1-100 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit (no '/' or '..')"
            )
        return v


class DataSection(_Strict):
    dataset: Literal[DATASETS] = "digits"  # the names deai.data loads
    partition: Literal[PARTITIONS] = "iid"
    num_parties: int = Field(10, ge=1)
    alpha: float = Field(0.5, gt=0, description="Dirichlet concentration; smaller is more skewed")
    shards_per_party: int = Field(2, ge=1)
    quantity_sigma: float = Field(1.0, gt=0)
    test_fraction: float = Field(0.2, ge=0, le=0.9, description="share of each party's own test rows")
    holdout_fraction: float | None = Field(
        None,
        ge=0,
        le=0.5,
        description="share of all rows held out by the task before partitioning, as the evaluation set "
        "(stratified by label). Default: 0.2 when replicate > 1, else none (the union of the parties' test "
        "rows is the evaluation set). Data sets with an official test split always evaluate on it.",
    )
    max_examples: int | None = Field(None, ge=1, description="subsample the data set first (seeded)")
    replicate: int = Field(1, ge=1, le=1000, description="tile the data set N times (scale benchmarks)")

    @model_validator(mode="after")
    def _no_copies_in_evaluation(self) -> DataSection:
        if self.replicate > 1 and self.holdout_fraction == 0:
            raise ValueError(
                "replicate > 1 with holdout_fraction = 0 would evaluate on copies of training rows; leave "
                "holdout_fraction unset (0.2) or give a fraction > 0"
            )
        return self

    @property
    def effective_holdout(self) -> float:
        """``holdout_fraction`` resolved: with tiled rows, no copy of an evaluation row may be trained on."""
        if self.holdout_fraction is not None:
            return self.holdout_fraction
        return 0.2 if self.replicate > 1 else 0.0


class ModelSection(_Strict):
    kind: ModelKind = "logreg"
    hidden: int = Field(64, ge=1)


class StrategySection(_Strict):
    algorithm: Algorithm = "fedavg"
    local_epochs: int = Field(1, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(0.1, gt=0, description="local (client) learning rate")
    mu: float = Field(0.0, ge=0, description="FedProx proximal coefficient")
    server_lr: float | None = Field(
        None, gt=0, description="default 1.0, or 0.01 for fedadam/fedyogi/fedadagrad"
    )
    server_momentum: float = Field(0.0, ge=0, lt=1)
    server_nesterov: bool = Field(
        False, description="Nesterov momentum on the server step (DiLoCo's outer step)"
    )
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.99, ge=0, lt=1)
    tau: float = Field(1e-3, gt=0, description="adaptivity of FedAdam/FedYogi/FedAdagrad")
    class_weighting: Literal["none", "balanced"] = Field(
        "none", description="'balanced' weights each class's loss by N / (classes * count) for rare classes"
    )
    clip_norm: float | None = Field(None, gt=0, description="clip each party's update to this L2 norm")
    personalization_epochs: int = Field(
        0, ge=0, description="local fine-tuning epochs for personalized accuracy"
    )
    aggregator: str | None = Field(
        None,
        description="aggregation rule (default: the algorithm's own, mean or fednova); see deai.aggregate",
    )
    aggregator_options: dict[str, Any] = Field(
        default_factory=dict, description="keyword options of the rule"
    )
    fltrust_root_size: int = Field(100, ge=1, description="size of the server's clean root set for fltrust")
    f_max: float = Field(
        0.0,
        ge=0,
        lt=0.5,
        description="the most Byzantine parties the task assumes, as a fraction of all parties; distributed "
        "DP is accounted as if that many noise shares were missing from every round",
    )

    @field_validator("aggregator")
    @classmethod
    def _known_aggregator(cls, v: str | None) -> str | None:
        from deai.aggregate import AGGREGATORS, PRIVATE

        allowed = [*AGGREGATORS, *PRIVATE]
        if v is not None and v not in allowed:
            raise ValueError(f"unknown aggregator {v!r}; allowed: {', '.join(allowed)}")
        return v

    @model_validator(mode="after")
    def _mu_only_for_fedprox(self) -> StrategySection:
        if self.mu > 0 and self.algorithm != "fedprox":
            raise ValueError(f"mu applies only to algorithm 'fedprox' (algorithm is {self.algorithm!r})")
        return self


class ParticipationSection(_Strict):
    fraction: float | None = Field(None, gt=0, le=1, description="share of parties sampled each round")
    count: int | None = Field(None, ge=1, description="number of parties sampled each round")
    dropout_rate: float = Field(0.0, ge=0, lt=1, description="chance a sampled party vanishes in a round")
    deadline: float | None = Field(
        None, gt=0, description="round deadline in local steps of a speed-1 party; None waits for all"
    )
    speed_sigma: float = Field(0.0, ge=0, description="party speeds are lognormal(0, speed_sigma)")
    straggler_policy: Literal["drop", "partial"] = "drop"
    poisson: bool = Field(False, description="sample each party independently with probability `fraction`")
    async_buffer: int | None = Field(
        None,
        ge=1,
        description="FedBuff (Nguyen et al. 2022): parties train asynchronously and the server releases a "
        "model after this many updates arrive; None runs synchronous rounds",
    )
    concurrency: int | None = Field(
        None, ge=1, description="asynchronous mode: parties training at once (default: count, or all)"
    )
    staleness_exponent: float = Field(
        0.5, ge=0, description="asynchronous mode: an update s versions old is weighted (1 + s)^-exponent"
    )
    max_staleness: int | None = Field(
        None, ge=0, description="asynchronous mode: reject updates more than this many versions old"
    )

    @model_validator(mode="after")
    def _one_of_fraction_count(self) -> ParticipationSection:
        if self.fraction is not None and self.count is not None:
            raise ValueError("set either fraction or count, not both")
        return self


AttackKind = Literal[
    "none",
    "sign_flip",
    "gaussian",
    "alie",
    "ipm",
    "min_max",
    "min_sum",
    "adaptive",
    "label_flip",
    "backdoor",
    "free_rider",
    "sybil",
    "canary",
    "copier",
]
ATTACK_NAMES: tuple[str, ...] = get_args(AttackKind)[1:]


class AttackSection(_Strict):
    """Simulated malicious parties, for evaluating defences (deai.attacks)."""

    kind: AttackKind = "none"
    fraction: float = Field(0.0, ge=0, lt=1, description="share of parties the attacker controls")
    options: dict[str, Any] = Field(default_factory=dict, description="keyword options of the attack")


class ValidationSection(_Strict):
    """Checks on every update before aggregation (deai.verify.validation)."""

    max_update_norm: float | None = Field(None, gt=0, description="reject updates with a larger L2 norm")


class LedgerSection(_Strict):
    """The run's signed ledger (deai.verify): who took part, what they sent, what was released."""

    enabled: bool = Field(
        True, description="keep RUN_DIR/ledger.db, a signed hash-chained record of every round (written runs)"
    )
    validators: int = Field(
        0,
        ge=0,
        le=100,
        description="in-process validators that recompute each round and co-sign it; a result counts "
        "with more than 2/3 of them (0: no quorum)",
    )
    commit_reveal: bool = Field(
        False,
        description="each party commits to its update before revealing it; broken commitments and copies "
        "of another's update are rejected and, where provable, slashed (needs sign_updates)",
    )
    sign_updates: bool = Field(
        False,
        description="each party signs every update and the server rejects unsigned ones; the ledger "
        "keeps every signature (costs ~0.3 ms per update)",
    )


class ValuationSection(_Strict):
    """Each party's contribution, valued every round (deai.incentives.valuation)."""

    method: Literal["none", "exact", "gtg", "tmc", "loo"] = Field(
        "none",
        description="Shapley-style valuation per round: exact, GTG-Shapley, truncated Monte-Carlo, LOO",
    )
    utility: Literal["loss", "accuracy"] = Field(
        "loss", description="the score of a coalition's model on the owner's evaluation rows"
    )


class IncentivesSection(_Strict):
    """Rewards and reputation from the round's values (deai.incentives.rewards), recorded on the ledger."""

    reward_per_round: float = Field(
        0.0, ge=0, description="tokens paid each round among accepted parties by value x reputation (0: off)"
    )
    reputation_rate: float = Field(0.5, gt=0, le=1, description="weight of the newest round in reputation")
    stake: float = Field(0.0, ge=0, description="what each party stakes when it joins the task")
    slash_fraction: float = Field(
        1.0, ge=0, le=1, description="share of its remaining stake a party loses per proven offence"
    )


class PrivacySection(_Strict):
    """Differential privacy (deai.privacy.dp): user-level DP-FedAvg and example-level DP-SGD."""

    mode: Literal["none", "central", "distributed"] = Field(
        "none", description="user-level DP-FedAvg: the server adds noise (central) or each party adds a share"
    )
    noise_multiplier: float = Field(1.0, ge=0, description="z: noise std = z * clip_norm on the sum")
    target_epsilon: float | None = Field(
        None, gt=0, description="calibrate noise_multiplier so that epsilon after all rounds equals this"
    )
    clip_norm: float = Field(1.0, gt=0, description="C: each party's update is clipped to this L2 norm")
    delta: float = Field(1e-5, gt=0, lt=1)
    accountant: Literal["rdp", "pld"] = "rdp"
    budget_epsilon: float | None = Field(
        None, gt=0, description="refuse to start or stop before exceeding this"
    )
    adaptive_clipping: bool = Field(
        False, description="Andrew et al. 2021 quantile-tracking clip norm (central)"
    )
    target_quantile: float = Field(0.5, gt=0, lt=1)
    clip_learning_rate: float = Field(0.2, gt=0)
    example_noise_multiplier: float | None = Field(
        None, ge=0, description="example-level DP-SGD inside each party (per-example clipping + noise)"
    )
    example_clip_norm: float = Field(1.0, gt=0)
    example_dp_engine: Literal["vectorized", "opacus"] = Field(
        "vectorized", description="per-example clipping in deai's batched trainer, or Opacus per party (cnn)"
    )
    party_budget_epsilon: float | None = Field(
        None,
        gt=0,
        description="each party's own epsilon limit (no sampling amplification): it declines rounds past it",
    )
    simulation: bool = Field(
        False,
        description="key DP noise and Poisson sampling by (seed, round, party) so the run is reproducible "
        "and resumes bit for bit; private against NO ONE who holds the config (default: OS entropy)",
    )


class CompressionSection(_Strict):
    """What each party does to its update before it leaves (deai.transforms.compress)."""

    kind: Literal["none", "int8", "topk", "topk_int8"] = Field(
        "none",
        description="int8: 8-bit stochastic rounding; topk: the largest topk_fraction of coordinates with "
        "error feedback; topk_int8: both",
    )
    topk_fraction: float = Field(0.01, gt=0, le=1, description="share of coordinates top-k keeps")


class NetworkSection(_Strict):
    """How nodes run this task over a network (`deai node`, `deai launch`); the simulator ignores it."""

    topology: Literal["star", "hierarchical", "p2p"] = Field(
        "star",
        description="star: parties dial one aggregator over gRPC; hierarchical: parties dial edge "
        "aggregators, which aggregate their group and dial the top; p2p: peers gossip over hivemind, "
        "with no coordinator",
    )
    gossip_rule: Literal["gossip", "clipped_gossip", "trimmed_mean", "screened_gossip"] = Field(
        "gossip",
        description="p2p: how a peer mixes its neighbours' models (screened_gossip on a complete graph "
        "resists a Byzantine peer; see deai.net.gossip)",
    )
    gossip_graph: Literal["ring_matching", "complete"] = Field(
        "ring_matching",
        description="p2p: a ring plus a random matching each round (2-3 neighbours), or every peer",
    )
    gossip_weighting: Literal["examples", "uniform"] = Field(
        "examples", description="p2p: weight peers by their example counts (FedAvg's mean) or equally"
    )
    consensus_rounds: int = Field(
        5, ge=0, description="p2p: gossip rounds without local training after run.rounds, so peers agree"
    )
    edges: int | list[int] = Field(
        2,
        description="hierarchical: edge aggregators (parties split in contiguous blocks); a list gives "
        "each level's count from the top down, e.g. [2, 4]: 2 edges under the top, 4 leaf edges below them",
    )
    edge_aggregator: str = Field(
        "mean", description="hierarchical: the rule each edge applies to its parties"
    )
    edge_aggregator_options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("edges")
    @classmethod
    def _levels(cls, v: int | list[int]) -> int | list[int]:
        levels = [v] if isinstance(v, int) else v
        if not levels or any(n < 1 for n in levels):
            raise ValueError("give a positive number of edges, or a non-empty list of positive counts")
        if any(b < a for a, b in zip(levels, levels[1:], strict=False)):
            raise ValueError(f"{v}: each level needs at least as many edges as the one above it")
        return v

    @property
    def edge_levels(self) -> list[int]:
        """Edges per level, from the top's children down to the leaf edges over the parties."""
        return [self.edges] if isinstance(self.edges, int) else list(self.edges)

    round_timeout_s: float = Field(
        300.0, gt=0, description="longest wait for a round's answers; the deadline adapts below it"
    )
    join_timeout_s: float = Field(
        120.0, gt=0, description="how long the aggregator waits for parties to join"
    )
    min_parties: int | None = Field(
        None, ge=1, description="parties that must have joined before round 1 (default: every party)"
    )
    reconnect_s: float = Field(60.0, ge=0, description="how long a party keeps redialing a lost aggregator")
    max_message_mb: float = Field(256.0, gt=0, description="largest frame a node accepts; larger is refused")
    min_round_s: float = Field(
        0.0,
        ge=0,
        description="pace steering: a round lasts at least this long, so restarted and late nodes catch up",
    )


class ExperimentConfig(_Strict):
    run: RunSection = RunSection()
    data: DataSection = DataSection()
    model: ModelSection = ModelSection()
    strategy: StrategySection = StrategySection()
    participation: ParticipationSection = ParticipationSection()
    attack: AttackSection = AttackSection()
    validation: ValidationSection = ValidationSection()
    privacy: PrivacySection = PrivacySection()
    ledger: LedgerSection = LedgerSection()
    valuation: ValuationSection = ValuationSection()
    incentives: IncentivesSection = IncentivesSection()
    compression: CompressionSection = CompressionSection()
    network: NetworkSection = NetworkSection()

    @model_validator(mode="after")
    def _cross_checks(self) -> ExperimentConfig:
        if self.data.partition == "natural" and self.data.dataset != "covid_clinics":
            raise ValueError(
                "data.partition 'natural' needs a data set with real sites: dataset = 'covid_clinics'"
            )
        if self.model.kind == "cnn" and self.data.dataset not in ("digits", "fashion_mnist"):
            raise ValueError("model.kind 'cnn' needs image data: dataset = 'digits' or 'fashion_mnist'")
        pv, part = self.privacy, self.participation
        if pv.mode != "none":
            if part.count is not None or (part.fraction is not None and not part.poisson):
                raise ValueError(
                    "privacy accounting assumes Poisson party sampling: set participation.poisson = true "
                    "with participation.fraction (or sample every party every round)"
                )
            if self.strategy.aggregator not in (
                None,
                "mean",
                "secagg",
                "he_ckks",
            ) or self.strategy.algorithm not in (
                "fedavg",
                "fedprox",
                "fedadam",
                "fedyogi",
                "fedadagrad",
            ):
                raise ValueError(
                    "privacy.mode needs a sum-based strategy.aggregator (mean, secagg or he_ckks) "
                    "and an algorithm whose server step only sees the noisy average "
                    "(fedavg, fedprox, fedadam, fedyogi or fedadagrad)"
                )
            if pv.adaptive_clipping and pv.mode != "central":
                raise ValueError("privacy.adaptive_clipping is implemented for mode 'central' only")
        if pv.example_dp_engine == "opacus" and (
            pv.example_noise_multiplier is None or self.model.kind != "cnn"
        ):
            raise ValueError(
                "privacy.example_dp_engine 'opacus' needs privacy.example_noise_multiplier "
                "and model.kind 'cnn'"
            )
        if pv.party_budget_epsilon is not None and pv.mode == "none":
            raise ValueError(
                "privacy.party_budget_epsilon counts the epsilon of user-level DP rounds: set privacy.mode "
                "'central' or 'distributed', or remove it"
            )
        if pv.example_dp_engine == "opacus" and not pv.simulation:
            raise ValueError(
                "privacy.example_dp_engine 'opacus' draws its noise from torch's Mersenne Twister: Opacus's "
                "secure_mode needs torchcsprng, which has no build for torch 2.x. Use example_dp_engine "
                "'vectorized' (discrete noise from the OS's CSPRNG), or set privacy.simulation = true for a "
                "reproducible simulation that claims no privacy against whoever holds the config"
            )
        if self.strategy.personalization_epochs > 0 and self.data.test_fraction == 0:
            raise ValueError(
                "strategy.personalization_epochs needs parties' own test rows: data.test_fraction > 0"
            )
        if pv.mode == "distributed":
            expected = (part.fraction or 1.0) * self.data.num_parties
            if expected < 10:
                raise ValueError(
                    f"privacy.mode 'distributed' needs at least 10 parties per round on average to carry the "
                    f"noise shares (participation.fraction x data.num_parties = {expected:g})"
                )
            if self.strategy.aggregator not in ("secagg", "he_ckks"):
                raise ValueError(
                    "privacy.mode 'distributed' has each party add only its share of the noise, so an "
                    "aggregator that sees updates one by one sees each with z*C/sqrt(qN) noise instead of "
                    "z*C: set strategy.aggregator = 'secagg' (or 'he_ckks'), or use privacy.mode 'central'"
                )
        if self.strategy.clip_norm is not None and pv.mode != "none":
            raise ValueError(
                "strategy.clip_norm and privacy.mode both clip updates: under differential privacy the clip "
                f"is privacy.clip_norm ({pv.clip_norm:g}); remove strategy.clip_norm "
                f"({self.strategy.clip_norm:g})"
            )
        if self.strategy.algorithm == "scaffold" and self.strategy.aggregator in ("secagg", "he_ckks"):
            raise ValueError(
                "strategy.algorithm 'scaffold' sends each party's control-variate change to the server "
                f"in the clear, revealing what strategy.aggregator '{self.strategy.aggregator}' hides; "
                "use fedavg, fedprox or an adaptive server optimizer with secure aggregation"
            )
        if self.strategy.aggregator_options and self.strategy.aggregator is None:
            raise ValueError(
                "strategy.aggregator_options needs strategy.aggregator: name the rule the options are for"
            )
        n = self.data.num_parties
        if part.count is not None:
            sampled = float(part.count)
        elif part.fraction is None:
            sampled = float(n)
        else:
            sampled = part.fraction * n if part.poisson else float(max(1, round(part.fraction * n)))
        reporting = sampled * (1.0 - part.dropout_rate)
        if part.dropout_rate > 0 and reporting < 1.0:
            raise ValueError(
                f"participation.dropout_rate {part.dropout_rate:g} leaves {reporting:.3g} of "
                f"{sampled:g} sampled parties reporting per round on average, so most rounds would train "
                "nothing: lower participation.dropout_rate or sample more parties"
            )
        if part.async_buffer is None:
            for name in ("concurrency", "max_staleness"):
                if getattr(part, name) is not None:
                    raise ValueError(
                        f"participation.{name} applies to asynchronous mode: set participation.async_buffer"
                    )
        else:
            concurrency = part.concurrency or part.count or n
            if part.async_buffer > concurrency or concurrency > n:
                raise ValueError(
                    f"participation.async_buffer ({part.async_buffer}) must be at most "
                    f"participation.concurrency ({concurrency}), itself at most data.num_parties ({n})"
                )
            clash = [
                name
                for name, on in (
                    ("privacy.mode", pv.mode != "none"),
                    ("strategy.aggregator secagg/he_ckks", self.strategy.aggregator in ("secagg", "he_ckks")),
                    ("participation.deadline", part.deadline is not None),
                    ("participation.poisson", part.poisson),
                    ("participation.fraction", part.fraction is not None),
                    (
                        "strategy.algorithm scaffold/fednova",
                        self.strategy.algorithm in ("scaffold", "fednova"),
                    ),
                )
                if on
            ]
            if clash:
                raise ValueError(
                    "participation.async_buffer (FedBuff) runs without synchronous rounds, so it cannot be "
                    f"combined with {', '.join(clash)}: remove those or participation.async_buffer"
                )
        if part.poisson and part.fraction is None:
            raise ValueError("participation.poisson needs participation.fraction")
        if self.attack.kind != "none" and self.attack.fraction == 0:
            raise ValueError(f"attack.kind {self.attack.kind!r} needs attack.fraction > 0")
        if self.participation.count is not None and self.participation.count > self.data.num_parties:
            raise ValueError(
                f"participation.count ({self.participation.count}) exceeds data.num_parties "
                f"({self.data.num_parties})"
            )
        return self

    def to_toml(self) -> str:
        return tomli_w.dumps(self.model_dump(exclude_none=True))

    def with_sections(self, source: str = "config", **sections: dict[str, Any]) -> ExperimentConfig:
        """A validated copy with section keys replaced: ``with_sections(run={"rounds": 5})``.

        Raises :class:`ConfigError` naming the field when the result is not a valid config.
        """
        data = self.model_dump()
        for name, values in sections.items():
            data[name] = {**data.get(name, {}), **values}
        return parse_config(data, source=source)


def ineffective_settings(cfg: ExperimentConfig) -> list[str]:
    """Settings that are valid but change nothing in this config, one sentence each (shown as warnings).

    A value equal to its default is never reported, so a resolved ``config.toml`` (which spells out
    every default) raises no warning of its own.
    """
    out: list[str] = []
    st, part, pv, atk = cfg.strategy, cfg.participation, cfg.privacy, cfg.attack

    def changed(section: BaseModel, name: str) -> bool:
        return getattr(section, name) != type(section).model_fields[name].default

    adaptive = st.algorithm in ("fedadam", "fedyogi", "fedadagrad")
    if not adaptive:
        out += [
            f"strategy.{n} applies only to fedadam, fedyogi and fedadagrad (algorithm is {st.algorithm!r})"
            for n in ("beta1", "beta2", "tau")
            if changed(st, n)
        ]
    elif changed(st, "server_momentum"):
        out.append(f"strategy.server_momentum has no effect on the adaptive server step of {st.algorithm}")
    if st.server_nesterov and (adaptive or st.server_momentum == 0):
        out.append("strategy.server_nesterov needs strategy.server_momentum > 0 and an SGD server step")
    if part.straggler_policy != "drop" and part.deadline is None:
        out.append("participation.straggler_policy has no effect without participation.deadline")
    if pv.mode == "none":
        out += [
            f"privacy.{n} has no effect while privacy.mode is 'none'"
            for n in ("noise_multiplier", "target_epsilon", "clip_norm", "adaptive_clipping")
            if changed(pv, n)
        ]
    if pv.mode == "none" and pv.example_noise_multiplier is None:
        out += [
            f"privacy.{n} has no effect without privacy.mode or privacy.example_noise_multiplier"
            for n in ("budget_epsilon", "accountant", "delta")
            if changed(pv, n)
        ]
    if pv.example_noise_multiplier is None and changed(pv, "example_clip_norm"):
        out.append("privacy.example_clip_norm has no effect without privacy.example_noise_multiplier")
    if not cfg.ledger.enabled:
        out += [
            f"ledger.{n} has no effect while ledger.enabled is false"
            for n in ("validators", "sign_updates", "commit_reveal")
            if changed(cfg.ledger, n)
        ]
    if cfg.incentives.reward_per_round == 0:
        out += [
            f"incentives.{n} has no effect while incentives.reward_per_round is 0"
            for n in ("reputation_rate", "stake", "slash_fraction")
            if changed(cfg.incentives, n)
        ]
    if cfg.valuation.method == "none" and changed(cfg.valuation, "utility"):
        out.append("valuation.utility has no effect while valuation.method is 'none'")
    if atk.kind == "none" and (atk.options or atk.fraction > 0):
        out.append("attack.fraction and attack.options have no effect while attack.kind is 'none'")
    return out


def format_validation_error(err: ValidationError) -> str:
    """One line per problem: the dotted field, what is wrong, and the value given."""
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            section = _section_model(e["loc"][:-1])
            allowed = ", ".join(section.model_fields) if section else ""
            lines.append(f"{where}: unknown key; allowed keys here: {allowed}")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            given = e.get("input")
            shown = "" if isinstance(given, dict) or e["type"] == "missing" else f" (got {given!r})"
            lines.append(f"{where}: {msg}{shown}" if e["loc"] else f"{msg}{shown}")
    return "\n".join(lines)


def _section_model(loc: tuple) -> type[BaseModel] | None:
    model: type[BaseModel] = ExperimentConfig
    for part in loc:
        field = model.model_fields.get(str(part))
        if (
            field is None
            or not isinstance(field.annotation, type)
            or not issubclass(field.annotation, BaseModel)
        ):
            return None
        model = field.annotation
    return model


def parse_config(data: dict[str, Any], source: str = "config") -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"invalid {source}:\n{format_validation_error(err)}") from None


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate a TOML experiment file; raises :class:`ConfigError` with a clear message.

    An empty file is valid (every default) but warned about with :class:`ConfigWarning`.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a directory; give a TOML config file (see examples/)")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = tomllib.loads(path.read_text())
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text file; give a TOML config file (see examples/)") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from None
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror or err}") from None
    if not data:
        warnings.warn(
            f"{path} sets nothing: running on every default (10 IID parties on digits, fedavg, 10 rounds)",
            ConfigWarning,
            stacklevel=2,
        )
    return parse_config(data, source=str(path))


__all__ = [
    "ALGORITHMS",
    "BACKENDS",
    "DATASETS",
    "MODELS",
    "PARTITIONS",
    "ConfigError",
    "ConfigWarning",
    "DeaiWarning",
    "ExperimentConfig",
    "ineffective_settings",
    "load_config",
    "parse_config",
]
