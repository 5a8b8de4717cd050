"""``deai.run(config)`` and ``deai.resume(run_dir)``: from a config to a run directory and a Result.

Everything that can be checked is checked before the run directory is created, so a bad
config leaves nothing behind. The run directory holds the resolved ``config.toml``,
``metrics.jsonl`` (one line per round), ``checkpoints/``, ``final.npz``, ``summary.json`` and
``report.html``; a run killed at any point resumes from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from deai.config import ConfigError, ExperimentConfig, load_config, parse_config
from deai.data import FederatedData, build_federation, load_dataset
from deai.engine.simulation import Simulation
from deai.models import MLP, LogisticRegression, Model
from deai.params import load_params, params_hash, save_params

OnRound = Callable[[dict[str, Any]], None]


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
    if d.replicate > 1:
        ds = dataclasses.replace(
            ds,
            x=np.tile(ds.x, (d.replicate, 1)),
            y=np.tile(ds.y, d.replicate),
            groups=None if ds.groups is None else np.tile(ds.groups, d.replicate),
        )
    try:
        return build_federation(
            ds,
            d.num_parties,
            d.partition,
            cfg.run.seed,
            test_fraction=d.test_fraction,
            alpha=d.alpha,
            shards_per_party=d.shards_per_party,
            quantity_sigma=d.quantity_sigma,
            max_examples=d.max_examples,
        )
    except ValueError as err:
        raise ConfigError(f"data: {err}") from None


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
    if out is not None:
        path = Path(out)
        if path.exists() and any(path.iterdir()):
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


class RunDirectory:
    """Durable files of one run; every write is atomic or append-then-fsync."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ckpt_dir = path / "checkpoints"
        self.metrics = path / "metrics.jsonl"

    def create(self, cfg: ExperimentConfig) -> None:
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.path / "config.toml", cfg.to_toml())
        self.metrics.touch()

    def append_metrics(self, line: dict[str, Any]) -> None:
        with open(self.metrics, "a") as f:
            f.write(json.dumps(line) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def checkpoint(self, sim: Simulation, every: int) -> None:
        arrays = sim.state_arrays()
        save_params(self.ckpt_dir / "latest.npz", sim.state.params, sim.model.layout, **arrays)
        if sim.state.round % every == 0:
            save_params(
                self.ckpt_dir / f"round-{sim.state.round:05d}.npz",
                sim.state.params,
                sim.model.layout,
                **arrays,
            )

    def restore(self, sim: Simulation) -> None:
        latest = self.ckpt_dir / "latest.npz"
        if latest.exists():
            params, layout, arrays = load_params(latest)
            if layout != sim.model.layout:
                raise ConfigError(
                    f"checkpoint {latest} does not match the model in {self.path / 'config.toml'}"
                )
            sim.load_state(params, arrays)
        kept = [m for m in self.read_metrics() if m["round"] <= sim.state.round]
        _atomic_write(self.metrics, "".join(json.dumps(m) + "\n" for m in kept))
        sim.state.history = kept

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics.exists():
            return []
        out = []
        for line in self.metrics.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line torn by a crash: everything after it is redone
        return out


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def _execute(
    cfg: ExperimentConfig, sim: Simulation, rd: RunDirectory | None, t_start: float, on_round: OnRound | None
) -> Result:
    def after_round(m: dict[str, Any]) -> None:
        if rd is not None:
            rd.append_metrics(m)
            rd.checkpoint(sim, cfg.run.checkpoint_every)
        if on_round is not None:
            on_round(m)

    sim.run(after_round)
    st = sim.state
    last = st.history[-1] if st.history else {}
    personalization = None
    if cfg.strategy.personalization_epochs > 0:
        personalization = sim.personalize(cfg.strategy.personalization_epochs)
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
    )
    if rd is not None:
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
        write_report(
            rd.path / "report.html",
            f"deai run: {cfg.run.name}",
            [row | (personalization or {})],
            [(cfg.strategy.algorithm, result.history)],
            config_text=cfg.to_toml(),
            notes=f"{cfg.data.num_parties} parties on {cfg.data.dataset} ({cfg.data.partition} split), "
            f"{cfg.strategy.algorithm}, backend {cfg.run.backend}.",
        )
    result.wall_time_s = time.perf_counter() - t_start
    if rd is not None:
        _atomic_write(rd.path / "summary.json", json.dumps(result.summary(), indent=2))
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
        )
    example = sim.example_epsilon()
    if example is not None:
        out.update(example_epsilon=example, example_noise_multiplier=cfg.privacy.example_noise_multiplier)
    return out or None


def run(
    config: ExperimentConfig | dict[str, Any] | str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    write: bool = True,
    on_round: OnRound | None = None,
) -> Result:
    """Run an experiment; with ``write=False`` nothing touches the disk (for tests and notebooks)."""
    t0 = time.perf_counter()
    cfg = as_config(config)
    fed = build_data(cfg)
    model = build_model(cfg, fed)
    rd = None
    if write:
        rd = RunDirectory(_new_run_dir(cfg, out))
    sim = Simulation(cfg, fed, model)
    if rd is not None:
        rd.create(cfg)
    return _execute(cfg, sim, rd, t0, on_round)


def resume(run_dir: str | os.PathLike[str], *, on_round: OnRound | None = None) -> Result:
    """Continue a run from its last checkpoint; reaches the same final model as an uninterrupted run."""
    t0 = time.perf_counter()
    path = Path(run_dir)
    if not (path / "config.toml").is_file():
        raise ConfigError(f"{path} is not a deai run directory (no config.toml)")
    cfg = load_config(path / "config.toml")
    fed = build_data(cfg)
    model = build_model(cfg, fed)
    sim = Simulation(cfg, fed, model)
    rd = RunDirectory(path)
    rd.restore(sim)
    return _execute(cfg, sim, rd, t0, on_round)
