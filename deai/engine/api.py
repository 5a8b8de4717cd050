"""``deai.run(config)`` and ``deai.resume(run_dir)``: from a config to a run directory and a Result.

Everything that can be checked is checked before the run directory is created, so a bad
config leaves nothing behind. The run directory holds the resolved ``config.toml``,
``metrics.jsonl`` (one line per round), ``checkpoints/``, ``final.npz``, ``summary.json`` and
``report.html``; a run killed at any point resumes from its last checkpoint.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from deai import jsonio
from deai.aggregate.base import traits
from deai.config import (
    ConfigError,
    ConfigWarning,
    DeaiWarning,
    ExperimentConfig,
    LedgerSection,
    ineffective_settings,
    load_config,
    parse_config,
)
from deai.data import FederatedData, build_federation, load_dataset
from deai.engine.rundir import RunDirectory
from deai.engine.simulation import Simulation
from deai.incentives.rewards import balances
from deai.incentives.valuation import Valuation, check_valuable
from deai.messages import RoundRecord
from deai.models import MLP, LogisticRegression, Model
from deai.params import params_hash, save_params
from deai.verify.commit_reveal import RevealCheck
from deai.verify.identity import Identity
from deai.verify.run_ledger import RunLedger, check_resumable
from deai.verify.update_signing import PartyKeys, SigningParties, UpdateVerifier
from deai.verify.validator import Validator, validator_limits

OnRound = Callable[[dict[str, Any]], None]
OnRecord = Callable[[RoundRecord], None]


@dataclass
class Result:
    final_accuracy: float
    final_balanced_accuracy: float
    final_loss: float
    rounds: int
    wall_time_s: float  # this invocation, end to end (data loading included)
    train_time_s: float  # summed round time over the whole run, across resumes
    run_dir: str | None
    model_hash: str
    history: list[dict[str, Any]]
    params: np.ndarray
    personalization: dict[str, float] | None = None
    privacy: dict[str, Any] | None = None
    stopped: str | None = None
    diverged: bool = False
    ledger: dict[str, Any] | None = None  # the ledger's path and its signed head (task, entries, hash)
    balances: dict[str, Any] | None = None  # each party's stake, paid and balance ([incentives])

    def summary(self) -> dict[str, Any]:
        """The machine-readable summary printed by ``deai run --json``."""
        out = {
            "final_accuracy": self.final_accuracy,
            "final_balanced_accuracy": self.final_balanced_accuracy,
            "final_loss": self.final_loss,
            "rounds": self.rounds,
            "wall_time_s": round(self.wall_time_s, 3),
            "train_time_s": round(self.train_time_s, 3),
            "run_dir": self.run_dir,
            "model_hash": self.model_hash,
        }
        if self.personalization is not None:
            out["personalization"] = self.personalization
        if self.privacy is not None:
            out["privacy"] = self.privacy
        if self.stopped is not None:
            out["stopped"] = self.stopped
        if self.diverged:
            out["diverged"] = True
        if self.ledger is not None:
            out["ledger"] = self.ledger
        if self.balances is not None:
            out["balances"] = self.balances
        return out


def as_config(config: ExperimentConfig | dict[str, Any] | str | os.PathLike[str]) -> ExperimentConfig:
    if isinstance(config, ExperimentConfig):
        return config
    if isinstance(config, dict):
        return parse_config(config)
    return load_config(config)


def build_data(cfg: ExperimentConfig) -> FederatedData:
    """Load and partition the data set; bad combinations raise :class:`ConfigError` naming the field."""
    d = cfg.data
    try:
        ds = load_dataset(d.dataset)
    except FileNotFoundError as err:
        raise ConfigError(str(err)) from None
    try:
        fed = build_federation(
            ds,
            d.num_parties,
            d.partition,
            cfg.run.seed,
            test_fraction=d.test_fraction,
            alpha=d.alpha,
            shards_per_party=d.shards_per_party,
            quantity_sigma=d.quantity_sigma,
            max_examples=d.max_examples,
            holdout_fraction=d.effective_holdout,
            replicate=d.replicate,
        )
    except ValueError as err:
        raise ConfigError(f"data: {err}") from None
    if len(fed.y_eval) == 0:
        raise ConfigError(
            f"data: the evaluation set is empty: {d.num_parties} parties with test_fraction "
            f"{d.test_fraction:g} leave no party a test row; set data.holdout_fraction (e.g. 0.2) so the "
            "task holds out its own evaluation rows, or raise data.test_fraction"
        )
    return fed


def build_model(cfg: ExperimentConfig, fed: FederatedData) -> Model:
    kind = cfg.model.kind
    if kind == "logreg":
        return LogisticRegression(fed.num_features, fed.num_classes)
    if kind == "mlp":
        return MLP(fed.num_features, fed.num_classes, cfg.model.hidden)
    try:
        from deai.models.cnn import cnn_model
    except ImportError:
        raise ConfigError("model.kind 'cnn' needs PyTorch: pip install 'deai[torch]'") from None
    return cnn_model(fed.image_shape, fed.num_classes)


def _new_run_dir(cfg: ExperimentConfig, out: str | os.PathLike[str] | None) -> Path:
    """The directory a new run writes to: ``--out`` if given (absent or empty), else ``runs/NAME-TIME``."""
    if out is not None:
        path = Path(out)
        if path.exists() and not path.is_dir():
            raise ConfigError(f"--out {path} exists and is not a directory; give a directory for the run")
        if path.is_dir() and any(path.iterdir()):
            raise ConfigError(
                f"--out {path} is not empty; resume it with `deai run --resume {path}` "
                "or choose another directory"
            )
        return path
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path("runs") / f"{cfg.run.name}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = Path("runs") / f"{cfg.run.name}-{stamp}-{n}"
    return path


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a run that writes a directory: ``run_dir`` says what to resume."""

    def __init__(self, run_dir: Path, original: KeyboardInterrupt | None = None) -> None:
        super().__init__(str(run_dir))
        self.run_dir = run_dir
        self.original = original  # what stopped it (a KeyboardInterrupt or a subclass, e.g. SIGTERM's)


def execute(
    cfg: ExperimentConfig,
    sim: Simulation,
    rd: RunDirectory | None,
    t_start: float,
    on_round: OnRound | None,
    on_record: OnRecord | None = None,
) -> Result:
    def after_round(m: dict[str, Any]) -> None:
        if rd is not None:
            rd.append_metrics(m)
            rd.checkpoint(
                sim.state.round,
                sim.state.params,
                sim.model.layout,
                sim.state_arrays(),
                cfg,
                cfg.run.checkpoint_every,
            )
        if on_round is not None:
            on_round(m)

    ledger = _run_ledger(cfg, sim, rd) if rd is not None and cfg.ledger.enabled else None
    valuation = None
    if cfg.valuation.method != "none":
        valuation = Valuation.of(sim, cfg.valuation.method, cfg.valuation.utility)
    subscriber = on_record
    if ledger is not None or valuation is not None:

        def subscriber(record: RoundRecord) -> None:
            if valuation is not None:
                valuation(record)  # first: its values go into the metrics line and the ledger
            if ledger is not None:
                ledger(record)  # before the round's checkpoint: the ledger is never behind it
            if on_record is not None:
                on_record(record)

    try:
        sim.run(after_round, subscriber)
    except KeyboardInterrupt as err:
        if rd is None:
            raise
        raise RunInterrupted(rd.path, err) from None
    finally:
        if ledger is not None:
            ledger.close()
    st = sim.state
    last = st.history[-1] if st.history else {}
    if "accuracy" not in last:  # e.g. a run that diverged in its first round: score the model it kept
        last = sim.server.evaluator(st.params)
    personalization = None
    if cfg.strategy.personalization_epochs > 0:
        personalization = sim.personalize(cfg.strategy.personalization_epochs)
    empty = sum(1 for m in st.history if m.get("released") is False)
    if empty:
        warnings.warn(
            f"{empty} of {len(st.history)} rounds released no update (no party reported, every update "
            "was rejected, or the aggregator refused the round); see metrics.jsonl",
            DeaiWarning,
            stacklevel=3,
        )
    result = Result(
        final_accuracy=float(last.get("accuracy", float("nan"))),
        final_balanced_accuracy=float(last.get("balanced_accuracy", float("nan"))),
        final_loss=float(last.get("loss", float("nan"))),
        rounds=st.round,
        wall_time_s=0.0,
        train_time_s=st.wall_time_s,
        run_dir=None if rd is None else str(rd.path),
        model_hash=params_hash(st.params, sim.model.layout),
        history=list(st.history),
        params=st.params,
        personalization=personalization,
        privacy=_privacy_summary(cfg, sim),
        stopped=sim.stopped,
        diverged=sim.diverged,
        ledger=None if ledger is None else {"path": str(ledger.path), **ledger.head().as_dict()},
        balances=None if ledger is None or ledger.book is None else balances(ledger.path),
    )
    if rd is not None:
        with rd.writing(rd.path / "final.npz"):
            save_params(rd.path / "final.npz", st.params, sim.model.layout)
        from deai.report import write_report

        row = {
            "final accuracy": result.final_accuracy,
            "balanced accuracy": result.final_balanced_accuracy,
            "final loss": result.final_loss,
            "rounds": result.rounds,
            "train time (s)": round(result.train_time_s, 3),
            "model hash": result.model_hash[:16],
        }
        if result.privacy:
            row |= {k: v for k, v in result.privacy.items() if k in ("epsilon", "delta", "example_epsilon")}
        with rd.writing(rd.path / "report.html"):
            write_report(
                rd.path / "report.html",
                f"deai run: {cfg.run.name}",
                [row | (personalization or {})],
                [(cfg.strategy.algorithm, result.history)],
                config_text=cfg.to_toml(),
                notes=f"{cfg.data.num_parties} parties on {cfg.data.dataset} ({cfg.data.partition} split), "
                f"{cfg.strategy.algorithm}, backend {cfg.run.backend}."
                + (
                    " Under this privacy mode the metrics hold only what the mechanism releases: no "
                    "per-party norms or cosines, no training loss, no pre-clip update norm."
                    if sim.server.private_metrics
                    else ""
                ),
            )
    result.wall_time_s = time.perf_counter() - t_start
    if rd is not None:
        rd.write_text("summary.json", jsonio.dumps(result.summary(), indent=2))
    return result


def _privacy_summary(cfg: ExperimentConfig, sim: Simulation) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    if sim.dp is not None:
        eps = [m["epsilon"] for m in sim.state.history if "epsilon" in m]
        out.update(
            mode=cfg.privacy.mode,
            epsilon=eps[-1] if eps else 0.0,
            delta=cfg.privacy.delta,
            noise_multiplier=sim.dp.noise_multiplier,
            sampling_rate=sim.dp.q,
            accountant=cfg.privacy.accountant,
            # keyed noise: epsilon holds against no one who has the config (privacy.simulation)
            simulation=cfg.privacy.simulation,
        )
        if sim.party.budget is not None:  # each party's own count: no sampling amplification
            spent = sim.party.spent_epsilon()
            out.update(
                party_budget_epsilon=cfg.privacy.party_budget_epsilon,
                party_epsilon_max=float(spent.max(initial=0.0)),
                party_max_rounds=sim.party.budget.max_rounds,
            )
    example = sim.example_epsilon()
    if example is not None:
        out.update(example_epsilon=example, example_noise_multiplier=cfg.privacy.example_noise_multiplier)
    return out or None


def check_ledger_settings(cfg: ExperimentConfig, sim: Simulation) -> None:
    """Refuse, before anything is written, ledger (and valuation) settings this task cannot honour."""
    if cfg.valuation.method != "none":
        check_valuable(cfg, cfg.valuation.method)
    if cfg.incentives.reward_per_round > 0:
        missing = [
            fix
            for ok, fix in (
                (cfg.valuation.method != "none", "valuation.method (e.g. 'gtg'): rewards follow value"),
                (
                    cfg.ledger.enabled and cfg.ledger.sign_updates,
                    "ledger.sign_updates = true: rewards go to keys",
                ),
            )
            if not ok
        ]
        if missing:
            raise ConfigError(f"incentives.reward_per_round > 0 needs {' and '.join(missing)}")
    led = cfg.ledger
    if not led.enabled:
        return
    if led.validators:
        limits = validator_limits(
            sim.strategy.aggregator,
            dp=sim.dp is not None,
            max_parties_per_batch=sim.transport.chunk_parties,
            num_parties=sim.fed.num_parties,
        )
        if limits:
            raise ConfigError(
                f"ledger.validators = {led.validators}: validators recompute every round, and this task "
                f"cannot be recomputed: {'; '.join(limits)}. Set ledger.validators = 0, or choose another "
                "strategy.aggregator"
            )
    limits = ledger_rule_limits(led, sim.strategy.aggregator)
    if limits:
        raise ConfigError(limits[0])


def ledger_rule_limits(led: LedgerSection, aggregator: Any) -> list[str]:
    """What ``ledger.sign_updates`` / ``commit_reveal`` cannot do under this aggregation rule, one fix per
    line (the simulator refuses the first; a networked task lists them all)."""
    rule = traits(aggregator)
    out = []
    # under SecAgg+ the session itself commits to the masked inputs (switched on where the rule is built)
    if led.commit_reveal and rule.private and rule.name != "secagg":
        out.append(
            f"ledger.commit_reveal: under {rule.name!r} the parties send ciphertexts in one step, so there "
            "is no input to commit to before revealing it; use secagg, or set ledger.commit_reveal = false"
        )
    if led.commit_reveal and not rule.private and not led.sign_updates:
        out.append(
            "ledger.commit_reveal: commitments are signed by each party's key; set ledger.sign_updates = true"
        )
    if led.sign_updates and rule.private:
        out.append(
            f"ledger.sign_updates: under {rule.name!r} updates never leave the parties, so there is nothing "
            "to sign; set ledger.sign_updates = false"
        )
    return out


def _run_ledger(cfg: ExperimentConfig, sim: Simulation, rd: RunDirectory) -> RunLedger:
    """The run's ledger and its validators; with signed updates the party side signs, the server checks."""
    layout, server = sim.model.layout, sim.server

    def make_validator(identity: Identity) -> Validator:
        st = server.state
        return Validator(
            identity,
            sim.strategy.aggregator,
            sim.strategy.server_opt,
            cfg.run.seed,
            layout,
            st.params,
            st.opt_state,
        )

    remote = getattr(sim, "remote_validators", None)  # validator nodes, on a network
    parties: int | list[bytes] | None = None
    if cfg.ledger.sign_updates:  # party nodes sign with their own keys (the roster's); else the run's
        parties = getattr(sim, "party_public_keys", None) or sim.fed.num_parties
    ledger = RunLedger(
        rd.path,
        cfg.to_toml(),
        cfg.run.name,
        layout,
        validators=0 if remote is not None else cfg.ledger.validators,
        remote=remote,
        make_validator=make_validator,
        parties=parties,
        incentives=cfg.incentives.model_dump() if cfg.incentives.reward_per_round > 0 else None,
        commit_reveal=cfg.ledger.commit_reveal,
    )
    ledger.check_start(server.state.round, server.state.params)
    bind = getattr(sim, "bind_ledger", None)  # a network: the transport tells party nodes the ledger
    if bind is not None:
        bind(ledger.task)
    keys = ledger.party_keys
    if keys is not None:
        commit = cfg.ledger.commit_reveal
        if isinstance(keys, PartyKeys):  # the simulator holds the parties' keys: its party side signs
            sim.transport.party = SigningParties(sim.transport.party, keys, ledger.task, commit_reveal=commit)
        server.update_verifier = UpdateVerifier(keys.public_keys, ledger.task)
        if commit:
            server.reveal_check = RevealCheck(keys.public_keys, ledger.task)
    return ledger


def _warn_ineffective(cfg: ExperimentConfig) -> None:
    for note in ineffective_settings(cfg):
        warnings.warn(note, ConfigWarning, stacklevel=3)
    pv = cfg.privacy
    if pv.simulation and (pv.mode != "none" or pv.example_noise_multiplier is not None):
        warnings.warn(
            "privacy.simulation = true: DP noise and sampling are keyed by the run's seed, so the reported "
            "epsilon holds against no one who has this config; remove it for a private run",
            ConfigWarning,
            stacklevel=3,
        )


def run(
    config: ExperimentConfig | dict[str, Any] | str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    write: bool = True,
    on_round: OnRound | None = None,
    on_record: OnRecord | None = None,
) -> Result:
    """Run an experiment; with ``write=False`` nothing touches the disk (for tests and notebooks).

    ``on_round`` receives each round's metrics line; ``on_record`` each :class:`~deai.messages.RoundRecord`
    (released model, accepted and rejected parties with reasons, weights, and the accepted batch).
    """
    t0 = time.perf_counter()
    cfg = as_config(config)
    _warn_ineffective(cfg)
    fed = build_data(cfg)
    model = build_model(cfg, fed)
    rd = RunDirectory(_new_run_dir(cfg, out)) if write else None
    sim = Simulation(cfg, fed, model)
    check_ledger_settings(cfg, sim)
    if rd is not None:
        rd.create(cfg)
    return execute(cfg, sim, rd, t0, on_round, on_record)


def resume(
    run_dir: str | os.PathLike[str], *, rounds: int | None = None, on_round: OnRound | None = None
) -> Result:
    """Continue a run from its last usable checkpoint; reaches the same final model as an uninterrupted run.

    ``rounds`` (if given) changes ``run.rounds`` first, the one setting a resumed run may change.
    """
    t0 = time.perf_counter()
    path = Path(run_dir)
    rd = RunDirectory(path)
    if not rd.config_path.is_file():
        raise ConfigError(f"{path} is not a deai run directory (no config.toml)")
    cfg = load_config(rd.config_path)
    if rounds is not None:
        cfg = cfg.with_sections(source="--rounds", run={"rounds": rounds})
    fed = build_data(cfg)
    model = build_model(cfg, fed)
    sim = Simulation(cfg, fed, model)
    if cfg.ledger.enabled:
        check_ledger_settings(cfg, sim)
        led = cfg.ledger
        check_resumable(path, led.validators, fed.num_parties if led.sign_updates else None)
    restored = rd.restore(cfg, sim.required_state(), model.layout, sim.load_state)
    for note in restored[1] if restored else []:
        warnings.warn(f"resuming {path}: {note}", ConfigWarning, stacklevel=2)
    if rounds is not None and rounds < sim.state.round:
        raise ConfigError(
            f"--rounds {rounds} is below the {sim.state.round} rounds {path} has already done; "
            f"a run cannot be shortened: pass --rounds {sim.state.round} or more"
        )
    if rounds is not None:
        rd.write_text("config.toml", cfg.to_toml())
    sim.state.history = rd.restore_metrics(sim.state.round)
    return execute(cfg, sim, rd, t0, on_round)
