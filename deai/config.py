"""Experiment configuration: a TOML file validated up front with pydantic.

Every field is checked before any work starts; an unknown key or a bad value is reported with
its dotted path and what is allowed (see :func:`format_validation_error`).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal, get_args

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from deai.data.datasets import DATASETS
from deai.data.partition import PARTITIONS

# Each set of names is written once, as the Literal pydantic validates against; the tuples derive from it.
Algorithm = Literal["fedavg", "fedprox", "scaffold", "fedadam", "fedyogi", "fedadagrad", "fednova"]
BackendName = Literal["vectorized", "processes", "ray"]
ModelKind = Literal["logreg", "mlp", "cnn"]
ALGORITHMS: tuple[str, ...] = get_args(Algorithm)
BACKENDS: tuple[str, ...] = get_args(BackendName)
MODELS: tuple[str, ...] = get_args(ModelKind)


class ConfigError(ValueError):
    """A configuration problem, with a message that says what to fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RunSection(_Strict):
    name: str = "run"
    seed: int = 0
    rounds: int = Field(10, ge=1, le=100_000)
    backend: BackendName = "vectorized"
    workers: int = Field(2, ge=1, description="worker processes / Ray tasks for the parallel backends")
    eval_every: int = Field(1, ge=1)
    checkpoint_every: int = Field(5, ge=1, description="keep a numbered checkpoint every N rounds")
    party_signals: bool = Field(False, description="write per-party detection signals to metrics.jsonl")


class DataSection(_Strict):
    dataset: Literal[DATASETS] = "digits"  # the names deai.data loads
    partition: Literal[PARTITIONS] = "iid"
    num_parties: int = Field(10, ge=1)
    alpha: float = Field(0.5, gt=0, description="Dirichlet concentration; smaller is more skewed")
    shards_per_party: int = Field(2, ge=1)
    quantity_sigma: float = Field(1.0, gt=0)
    test_fraction: float = Field(0.2, ge=0, le=0.9)
    max_examples: int | None = Field(None, ge=1, description="subsample the data set first (seeded)")
    replicate: int = Field(1, ge=1, le=1000, description="tile the data set N times (scale benchmarks)")


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
    "label_flip",
    "backdoor",
    "free_rider",
    "sybil",
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


class ExperimentConfig(_Strict):
    run: RunSection = RunSection()
    data: DataSection = DataSection()
    model: ModelSection = ModelSection()
    strategy: StrategySection = StrategySection()
    participation: ParticipationSection = ParticipationSection()
    attack: AttackSection = AttackSection()
    validation: ValidationSection = ValidationSection()
    privacy: PrivacySection = PrivacySection()

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
            lines.append(f"{where}: {msg}{shown}")
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
    """Read and validate a TOML experiment file; raises :class:`ConfigError` with a clear message."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from None
    return parse_config(data, source=str(path))


__all__ = [
    "ALGORITHMS",
    "BACKENDS",
    "DATASETS",
    "MODELS",
    "PARTITIONS",
    "ConfigError",
    "ExperimentConfig",
    "load_config",
    "parse_config",
]
