"""A run directory's durable files, and how a resumed run finds its way back into them.

Every write is atomic (tmp file, fsync, rename) or an fsync'd append, so a ``kill -9`` at any moment
leaves the previous state whole. On resume:

- the newest *valid* checkpoint wins: ``latest.npz`` or a numbered ``round-NNNNN.npz``, whichever has
  the later round and loads with the arrays this run needs (a truncated, empty or foreign file is
  reported and skipped, never trusted);
- the config must be the one the run started with (each checkpoint stores it), so an edited
  ``config.toml`` cannot silently change the result; only ``run.rounds`` may change;
- ``metrics.jsonl`` keeps every valid line up to the restored round: a line torn by a crash (the last
  one) is dropped quietly, a damaged line elsewhere is dropped with a warning and the original file
  is kept beside it as ``metrics.jsonl.damaged``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tomllib
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from deai import jsonio
from deai.config import ConfigError, DeaiWarning, ExperimentConfig, parse_config
from deai.params import load_params, save_params
from deai.report.artifacts import atomic_write
from deai.state import upgrade_legacy

#: Config fields a resumed run may change: they decide how long to train, not what a round does.
RESUMABLE_CHANGES = frozenset({"run.rounds"})

_NUMBERED = re.compile(r"^round-(\d{5,})\.npz$")
# State whose shape the config does not fix (a rule's state starts empty, the DP ledger grows); every
# other array must have the shape this run expects.
_FLEXIBLE_SHAPE = ("server/rule/", "server/dp/")


class ResumeWarning(DeaiWarning):
    """Something on disk was damaged and worked around while resuming (what and how is in the text)."""


class RunWriteError(ConfigError):
    """A file of the run directory could not be written (disk full, read-only, gone)."""


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, dict) and k in ExperimentConfig.model_fields and not prefix:
            out.update(_flat(v, f"{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_changes(before: ExperimentConfig, after: ExperimentConfig) -> dict[str, tuple[Any, Any]]:
    """``{dotted field: (old, new)}`` for every field that differs between two configs."""
    a, b = _flat(before.model_dump()), _flat(after.model_dump())
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


class RunDirectory:
    """Durable files of one run: ``config.toml``, ``metrics.jsonl``, ``checkpoints/``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ckpt_dir = path / "checkpoints"
        self.metrics = path / "metrics.jsonl"
        self.config_path = path / "config.toml"

    # -- writing ----------------------------------------------------------------------------
    def writing(self, what: Path) -> _WriteGuard:
        """A context in which an ``OSError`` becomes a one-line :class:`RunWriteError` naming ``what``."""
        return _WriteGuard(self, what)

    def create(self, cfg: ExperimentConfig) -> None:
        with self.writing(self.path):
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self.config_path, cfg.to_toml())
            self.metrics.touch()

    def append_metrics(self, line: dict[str, Any]) -> None:
        with self.writing(self.metrics), open(self.metrics, "a") as f:
            f.write(jsonio.dumps(line) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def checkpoint(
        self,
        round_: int,
        params: np.ndarray,
        layout: Any,
        arrays: dict[str, np.ndarray],
        cfg: ExperimentConfig,
        every: int,
    ) -> None:
        """Write ``round-NNNNN.npz`` (every ``every`` rounds) and then ``latest.npz``.

        The numbered file comes first: a kill between the two leaves ``latest.npz`` one round behind,
        so the resumed run redoes that round and writes the numbered file again.
        """
        arrays = {**arrays, "round": np.array(round_), "config_toml": np.array(cfg.to_toml())}
        targets = ([self.ckpt_dir / f"round-{round_:05d}.npz"] if round_ % every == 0 else []) + [
            self.ckpt_dir / "latest.npz"
        ]
        for path in targets:
            with self.writing(path):
                save_params(path, params, layout, **arrays)

    def write_text(self, name: str, text: str) -> Path:
        path = self.path / name
        with self.writing(path):
            atomic_write(path, text)
        return path

    # -- resuming ---------------------------------------------------------------------------
    def check_config(self, cfg: ExperimentConfig, started_with: ExperimentConfig) -> list[str]:
        """Refuse a config edited since the run started; return notes on the changes that are allowed."""
        changes = config_changes(started_with, cfg)
        refused = {k: v for k, v in changes.items() if k not in RESUMABLE_CHANGES}
        if refused:
            shown = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in list(refused.items())[:6])
            more = f" and {len(refused) - 6} more" if len(refused) > 6 else ""
            raise ConfigError(
                f"{self.config_path} was edited after the run started ({shown}{more}); a resumed run "
                "must use the config it started with, or its result would be neither run's. Undo the "
                f"edit, or start a new run from the edited file: deai run {self.config_path} "
                "(to train longer, use deai run --resume DIR --rounds N)"
            )
        return [f"{k} changed from {old!r} to {new!r}" for k, (old, new) in changes.items()]

    def restore(
        self,
        cfg: ExperimentConfig,
        expected: dict[str, np.ndarray],
        layout: Any,
        load: Callable[[np.ndarray, dict[str, np.ndarray]], None],
    ) -> tuple[dict[str, np.ndarray], list[str]] | None:
        """Load the newest usable checkpoint with ``load(params, arrays)``.

        A checkpoint is usable when it loads, matches ``layout``, holds every array named in
        ``expected`` (with the same shape where that shape is fixed by the config) and ``load`` accepts
        it; first, the config it was written under must match ``cfg`` (:meth:`check_config`). Returns
        ``(arrays, notes on allowed config changes)``, or None when the run has no checkpoint yet
        (killed before its first round ended). Raises :class:`ConfigError` on an edited config, or when
        checkpoints exist but none is usable; warns (:class:`ResumeWarning`) when it skipped any.
        """
        if not self.ckpt_dir.is_dir():
            return None
        for stale in self.ckpt_dir.glob("*.tmp"):  # a write killed midway; its target is intact
            stale.unlink(missing_ok=True)
        candidates: list[tuple[int, Path]] = []
        damaged: list[str] = []
        loaded: dict[Path, tuple] = {}
        latest = self.ckpt_dir / "latest.npz"
        if latest.exists():
            try:
                loaded[latest] = load_params(latest)
                candidates.append((int(loaded[latest][2]["round"]), latest))
            except Exception as err:  # noqa: BLE001 - any damage means "not usable", reported below
                damaged.append(f"{latest.name} ({_describe(err)})")
        for path in self.ckpt_dir.iterdir():
            m = _NUMBERED.match(path.name)
            if m:
                candidates.append((int(m.group(1)), path))
        # newest round first; at equal rounds latest.npz first (it is already loaded)
        candidates.sort(key=lambda c: (c[0], c[1].name == "latest.npz"), reverse=True)
        for _, path in candidates:
            try:
                params, got_layout, arrays = loaded[path] if path in loaded else load_params(path)
                arrays = upgrade_legacy(arrays)  # checkpoints from before named state
                started = _started_config(arrays, path)
            except Exception as err:  # noqa: BLE001
                damaged.append(f"{path.name} ({_describe(err)})")
                continue
            notes = [] if started is None else self.check_config(cfg, started)  # raises on an edited config
            try:
                problem = _mismatch(params, got_layout, arrays, expected, layout)
                if not problem:
                    load(params, arrays)
            except Exception as err:  # noqa: BLE001
                problem = _describe(err)
            if problem:
                damaged.append(f"{path.name} ({problem})")
                continue
            if damaged:
                warnings.warn(
                    f"{self.ckpt_dir}: skipped damaged checkpoint(s) {', '.join(damaged)}; resuming from "
                    f"{path.name} (round {int(arrays['round'])})",
                    ResumeWarning,
                    stacklevel=2,
                )
            if path != latest:
                self._repair_latest(latest, path)
            return arrays, notes
        if damaged:
            raise ConfigError(
                f"no usable checkpoint in {self.ckpt_dir}: {', '.join(damaged)}. Nothing was changed; "
                f"start the run again with: deai run {self.config_path} --out NEW_DIR"
            )
        return None

    def _repair_latest(self, latest: Path, good: Path) -> None:
        """Make ``latest.npz`` the checkpoint resumed from again; a damaged one is kept as ``.damaged``."""
        with self.writing(latest):
            if latest.exists():
                latest.replace(latest.with_name(latest.name + ".damaged"))
            tmp = latest.with_name(latest.name + ".tmp")
            shutil.copyfile(good, tmp)
            tmp.replace(latest)

    def restore_metrics(self, up_to_round: int) -> list[dict[str, Any]]:
        """Valid metrics lines of rounds ``<= up_to_round``; rewrites the file to exactly those."""
        kept, damaged = self.read_metrics()
        kept = [m for m in kept if m["round"] <= up_to_round]
        if damaged:
            backup = self.metrics.with_name(self.metrics.name + ".damaged")
            with self.writing(backup):
                shutil.copyfile(self.metrics, backup)
            warnings.warn(
                f"{self.metrics}: line(s) {', '.join(map(str, damaged))} are not valid metrics and were "
                f"dropped (the rounds they held have no metrics line); the original is kept as {backup.name}",
                ResumeWarning,
                stacklevel=2,
            )
        with self.writing(self.metrics):
            atomic_write(self.metrics, "".join(jsonio.dumps(m) + "\n" for m in kept))
        return kept

    def read_metrics(self) -> tuple[list[dict[str, Any]], list[int]]:
        """``(valid lines, damaged line numbers)``; a torn last line (a crash mid-append) is not damage."""
        if not self.metrics.exists():
            return [], []
        text = self.metrics.read_text(errors="replace")
        lines = text.split("\n")
        out: list[dict[str, Any]] = []
        damaged: list[int] = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                if not (isinstance(entry, dict) and isinstance(entry.get("round"), int)):
                    raise ValueError("not a metrics object")
            except ValueError:
                if number == len(lines) and not text.endswith("\n"):
                    continue  # torn by a crash mid-append: the round is redone
                damaged.append(number)
                continue
            out.append(entry)
        return out, damaged


def _started_config(arrays: dict[str, np.ndarray], path: Path) -> ExperimentConfig | None:
    """The config a checkpoint was written under (None for checkpoints older than this field)."""
    if "config_toml" not in arrays:
        return None
    return parse_config(tomllib.loads(str(arrays["config_toml"])), source=str(path))


class _WriteGuard:
    """Turns an ``OSError`` while writing ``what`` into a one-line :class:`RunWriteError`."""

    def __init__(self, rd: RunDirectory, what: Path) -> None:
        self.rd, self.what = rd, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, err: BaseException | None, tb: object) -> bool:
        if isinstance(err, OSError):
            reason = err.strerror or str(err)
            resume = ""
            if (self.rd.ckpt_dir / "latest.npz").exists():
                resume = (
                    "; the run keeps its last checkpoint: fix that and resume with "
                    f"deai run --resume {self.rd.path}"
                )
            raise RunWriteError(f"cannot write {self.what}: {reason}{resume}") from None
        return False


def _describe(err: BaseException) -> str:
    """A short reason: the exception type and the start of its message (np.load's can run long)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    if len(text) > 60:
        text = text[:57] + "..."
    return f"unreadable: {type(err).__name__}" + (f": {text}" if text else "")


def _mismatch(
    params: np.ndarray,
    layout: Any,
    arrays: dict[str, np.ndarray],
    expected: dict[str, np.ndarray],
    want_layout: Any,
) -> str | None:
    """Why a loaded checkpoint cannot continue this run, or None when it can."""
    if layout != want_layout:
        return "its model layout differs from this run's model"
    if params.shape != (want_layout.dim,) or not np.isfinite(params).all():
        return "its parameter vector is malformed or non-finite"
    for name, value in expected.items():
        if name not in arrays:
            return f"missing state {name!r}"
        if not name.startswith(_FLEXIBLE_SHAPE) and np.shape(arrays[name]) != np.shape(value):
            return f"state {name!r} has shape {np.shape(arrays[name])}, expected {np.shape(value)}"
    return None
