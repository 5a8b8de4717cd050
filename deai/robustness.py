"""``deai robustness``: every (attack, defence, true attacker fraction) on one base config, as tables and
a heatmap.

Each cell is a full seeded run of the engine with a share of parties malicious; the same seed picks
the same malicious parties everywhere (a larger fraction adds parties to a smaller one's), so cells
differ only by attack, defence and fraction. Reported per cell: final accuracy, backdoor success rate
(backdoor only), and the share of aggregation weight that reached malicious parties (rules that weight
parties; order-statistic rules report none).

No oracle knowledge: every defence gets the task's declared bound ``f_max`` (a share of the parties, the
same whatever the true fraction of the cell) and nothing else; rules that need a norm or a radius estimate
it from the round itself. FLTrust's root set is declared as what it is: the task owner's own rows. Each
defence's assumptions are stated with the table. ``oracle=True`` reproduces the old, flattering evaluation
(true attacker count and fraction, the clean run's median norm) for one fraction, only to show the
difference side by side.

A matrix runs in two steps. :func:`plan_matrix` checks everything that can be checked before the first
cell (names, options, every cell's config, the output directory) and asks each rule whether it can
aggregate the round sizes the config produces, so a defence that cannot (Bulyan with ``n < 4f + 3``) is
marked not applicable instead of aborting the matrix. :func:`run_matrix` runs the cells, in worker
processes with ``jobs > 1``, and appends each finished cell to ``cells.jsonl`` (first line: the matrix's
arguments) the moment it finishes, so a killed matrix continues with ``resume=True`` and only the missing
cells run. A cell whose run raises is recorded as failed with its error; the others go on.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from deai import jsonio
from deai.aggregate import AGGREGATORS, RoundContext, make_aggregator
from deai.attacks import choose_malicious, make_attack
from deai.config import ATTACK_NAMES, ConfigError, ExperimentConfig
from deai.engine.api import as_config, build_data, build_model, run
from deai.report.artifacts import atomic_write, write_artifacts

# every aggregation rule that sees individual updates, FedNova's normalization aside
DEFENCES: tuple[str, ...] = tuple(name for name in AGGREGATORS if name != "fednova")
JOURNAL = "cells.jsonl"
OUTPUTS: tuple[str, ...] = ("robustness.md", "robustness.json", "heatmap.png")
BASELINE: tuple[str, str, float] = ("none", "mean", 0.0)  # clean FedAvg: the reference accuracy and norm
# rules whose oracle parameter is the clean run's typical update norm, known once the baseline ran
_NORM_SCALED = ("centered_clipping", "norm_bound")
_SPEC_VERSION = 2

Cell = tuple[str, str, float]  # (attack, defence, true fraction); attack "none" (fraction 0) is a clean run

# What each rule may assume in a cell, beyond the round's own updates (no oracle knowledge).
ASSUMPTIONS: dict[str, str] = {
    "mean": "nothing (no defence)",
    "median": "an honest majority",
    "trimmed_mean": "trims f_max of each coordinate's values per side",
    "krum": "f = floor(f_max n); n >= 2f+3",
    "multi_krum": "f = floor(f_max n); n >= 2f+3",
    "bulyan": "f = floor(f_max n); n >= 4f+3",
    "geometric_median": "an honest majority of the weight",
    "centered_clipping": "an honest majority (radius: the round's median distance to the center)",
    "norm_bound": "an honest majority (bound: the round's median norm)",
    "fltrust": "a clean root set: {root} rows of the task owner's own data",
    "foolsgold": "Sybils send similar updates; a lone attacker is not its target",
    "reputation": "misbehaviour persists across rounds",
    "dnc": "f = floor(f_max n)",
    "flame": "an honest majority (median norm, majority cosine cluster)",
    "signguard": "an honest majority (median norm, largest sign cluster)",
    "recommended": "an honest majority (median norm, majority cosine cluster)",
    "root_guided": "an honest median norm; a clean root set: {root} rows of the task owner's own data",
}


_ORACLE_FACTS = {
    "num_byzantine": "the true number of attackers",
    "trim_fraction": "the true attacker fraction",
    "clip_radius": "the clean run's median update norm",
    "max_norm": "the clean run's median update norm",
}


def assumption(defence: str, base: ExperimentConfig, oracle: bool) -> str:
    """What ``defence`` is told in a cell: its declared assumption, or the oracle facts it was handed."""
    handed = oracle_options(defence, 1, 0.1, 1.0) if oracle else {}
    if handed:
        (option,) = handed
        return f"ORACLE: {_ORACLE_FACTS[option]}"
    return ASSUMPTIONS.get(defence, "see the rule's docstring").format(root=base.strategy.fltrust_root_size)


def oracle_options(
    defence: str, num_byzantine: int, byzantine_fraction: float, typical_norm: float | None
) -> dict:
    """The old evaluation's parameters: the true attacker count and fraction and the clean run's typical
    norm, none of which a real aggregator knows. Only for ``oracle=True`` matrices, to show the difference.

    ``typical_norm=None`` (not measured yet) puts a placeholder 1.0 where a norm goes: enough to check
    that the rule can be built and can aggregate a round of the config's size.
    """
    f = max(num_byzantine, 1)
    norm = 1.0 if typical_norm is None else typical_norm
    return {
        "krum": {"num_byzantine": f},
        "multi_krum": {"num_byzantine": f},
        "bulyan": {"num_byzantine": f},
        "dnc": {"num_byzantine": f},
        "trimmed_mean": {"trim_fraction": min(max(byzantine_fraction, 0.05), 0.45)},
        "centered_clipping": {"clip_radius": norm},
        "norm_bound": {"max_norm": norm},
    }.get(defence, {})


# -- the journal ----------------------------------------------------------------------------------
class CellJournal:
    """``cells.jsonl``: line 1 ``{"spec": ...}``, then one ``{"cell": ...}`` line per finished cell.

    Every line is strict JSON written with one ``write`` and fsync'd, so a kill can only tear the last line,
    which reading ignores and :meth:`open` cuts off before anything is appended.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def _complete_lines(self) -> tuple[list[bytes], int]:
        raw = self.path.read_bytes()
        end = raw.rfind(b"\n") + 1  # bytes after the last newline are a torn write
        return raw[:end].splitlines(), end

    def read(self) -> tuple[dict | None, dict[Cell, dict]]:
        """The recorded spec (None if there is none) and the finished cells; a later line for a cell wins."""
        if not self.path.is_file():
            return None, {}
        spec, cells = None, {}
        lines, _ = self._complete_lines()
        for number, line in enumerate(lines, 1):
            try:
                entry = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise ConfigError(
                    f"{self.path} line {number} is not JSON: the journal is damaged; start over with --force"
                ) from None
            if number == 1 and "spec" in entry:
                spec = entry["spec"]
            elif "cell" in entry:
                cell = entry["cell"]
                cells[(cell["attack"], cell["defence"], float(cell["fraction"]))] = cell
        return spec, cells

    def start(self, spec: dict) -> None:
        atomic_write(self.path, jsonio.dumps({"spec": spec}) + "\n")

    def open(self) -> None:
        """Cut a torn last line so the next append starts on a line of its own."""
        _, end = self._complete_lines()
        if end != self.path.stat().st_size:
            os.truncate(self.path, end)

    def append(self, cell: dict) -> None:
        line = jsonio.dumps({"cell": cell}) + "\n"
        with open(self.path, "a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())


# -- planning: everything checked before the first cell -------------------------------------------
@dataclass
class MatrixPlan:
    """A checked matrix: its cells in run order (baseline first), which defences cannot run and why, and
    the cells already finished (from the journal when resuming). :func:`run_matrix` adds to ``done``."""

    base: ExperimentConfig
    attacks: list[str]
    defences: list[str]
    byzantine_fractions: list[float]
    f_max: float
    oracle: bool
    attack_options: dict[str, dict[str, Any]]
    num_parties: int
    num_byzantine: dict[float, int]  # the true attacker count at each fraction
    spec: dict[str, Any]
    cells: list[Cell]
    not_applicable: dict[str, str]
    out: Path | None = None
    done: dict[Cell, dict] = field(default_factory=dict)

    @property
    def remaining(self) -> list[Cell]:
        """Cells still to run; a cell that failed is tried again."""
        return [c for c in self.cells if self.done.get(c, {}).get("status") in (None, "failed")]

    @property
    def journal(self) -> CellJournal | None:
        return None if self.out is None else CellJournal(self.out / JOURNAL)


def matrix_spec(
    base: ExperimentConfig,
    attacks: Sequence[str],
    defences: Sequence[str],
    byzantine_fractions: Sequence[float],
    attack_options: dict[str, dict[str, Any]],
    f_max: float,
    oracle: bool,
) -> dict[str, Any]:
    """What makes two matrices the same: a resumed matrix must match the recorded one on every field."""
    config = json.dumps(base.model_dump(mode="json"), sort_keys=True)
    spec = {
        "version": _SPEC_VERSION,
        "config_sha256": hashlib.sha256(config.encode()).hexdigest(),
        "seed": base.run.seed,
        "attacks": list(attacks),
        "defences": list(defences),
        "byzantine_fractions": list(byzantine_fractions),
        "f_max": f_max,
        "oracle": oracle,
        "attack_options": attack_options,
    }
    return json.loads(jsonio.dumps(spec))  # as it reads back from the journal


def _variant(
    base: ExperimentConfig,
    attack: str,
    fraction: float,
    defence: str,
    options: dict,
    attack_options: dict,
    f_max: float,
) -> ExperimentConfig:
    return base.with_sections(
        source=f"{attack} vs {defence}",
        attack={"kind": attack, "fraction": fraction if attack != "none" else 0.0, "options": attack_options},
        strategy={"aggregator": defence, "aggregator_options": options, "f_max": f_max},
    )


def _check_names(attacks: list[str], defences: list[str], fractions: list[float], f_max: float) -> None:
    if not attacks:
        raise ConfigError(f"--attacks: name at least one of {', '.join(ATTACK_NAMES)}")
    if not defences:
        raise ConfigError(f"--defences: name at least one of {', '.join(DEFENCES)}")
    unknown = [a for a in attacks if a not in ATTACK_NAMES]
    if unknown:
        raise ConfigError(f"--attacks: unknown {', '.join(unknown)}; allowed: {', '.join(ATTACK_NAMES)}")
    unknown = [d for d in defences if d not in DEFENCES]
    if unknown:
        raise ConfigError(f"--defences: unknown {', '.join(unknown)}; allowed: {', '.join(DEFENCES)}")
    for flag, names in (("--attacks", attacks), ("--defences", defences)):
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"{flag}: {', '.join(twice)} listed twice; name each once")
    if not fractions:
        raise ConfigError("--byzantine-fraction: give at least one fraction, e.g. 0.1,0.2,0.3")
    for fraction in fractions:
        if not 0 < fraction < 0.5:
            raise ConfigError(f"--byzantine-fraction values must be in (0, 0.5), got {fraction}")
    if len(set(fractions)) != len(fractions):
        raise ConfigError(f"--byzantine-fraction: {fractions} lists a fraction twice; name each once")
    if not 0 < f_max < 0.5:
        raise ConfigError(f"--f-max must be in (0, 0.5), got {f_max}")


def _check_attack_options(attacks: list[str], attack_options: dict[str, dict[str, Any]]) -> None:
    """Every option belongs to a listed attack and that attack's constructor accepts it."""
    for name, options in attack_options.items():
        given = ", ".join(f"{name}.{k}" for k in options) or name
        if name not in attacks:
            if name in ATTACK_NAMES:
                raise ConfigError(
                    f"--attack-option {given}: attack {name!r} is not in --attacks ({', '.join(attacks)}); "
                    f"add {name} to --attacks or drop the option"
                )
            raise ConfigError(
                f"--attack-option {given}: unknown attack {name!r}; allowed: {', '.join(ATTACK_NAMES)}"
            )
    for name in attacks:
        options = attack_options.get(name, {})
        try:
            make_attack(name, **options)
        except (TypeError, ValueError) as err:
            given = ", ".join(f"{name}.{k}" for k in options)
            raise ConfigError(
                f"--attack-option {given}: {err}" if given else f"--attacks {name}: {err}"
            ) from None


_SIZE_ERROR = re.compile(r"needs n >= (?P<rule>.+?) updates; got n=(?P<n>\d+) with num_byzantine=(?P<f>\d+)")


def _short_reason(message: str) -> str:
    """``needs n >= 4f+3 (n=50, f=15)`` from a rule's size error; any other message unchanged."""
    m = _SIZE_ERROR.search(message)
    if m is None:
        return message
    rule = m["rule"].replace(" * num_byzantine", "f").replace(" ", "")
    return f"needs n >= {rule} (n={m['n']}, f={m['f']})"


def updates_per_round(cfg: ExperimentConfig, fed: Any) -> dict[int, int]:
    """Each number of updates a round of ``cfg`` delivers (sampling, dropouts, deadline), with the first
    round that delivers it. Validation can reject more at run time; that is a cell's failure, not a plan's."""
    from deai.engine.simulation import Simulation

    sim = Simulation(_variant(cfg, "none", 0.0, "mean", {}, {}, 0.0), fed, build_model(cfg, fed))
    first: dict[int, int] = {}
    for r in range(1, cfg.run.rounds + 1):
        plan = sim.plan(r)
        first.setdefault(len(plan.participants), r)
    return first


def infeasibility(
    defence: str, options: dict, num_parties: int, round_sizes: dict[int, int], f_max: float = 0.0
) -> str | None:
    """Why ``defence`` cannot aggregate some round of the matrix, or None if it can.

    The rule itself answers: it aggregates a small synthetic round of every size the config produces, so
    the requirement (Krum's ``n >= 2f + 3``, Bulyan's ``n >= 4f + 3``, ...) is never restated here.
    """
    for n in sorted(round_sizes):
        rule = make_aggregator(defence, options, num_parties=num_parties, f_max=f_max)
        if n < max(1, getattr(rule, "min_parties", 1)):
            continue  # the engine aggregates nothing in such a round
        rng = np.random.default_rng(n)
        dim = 8
        ctx = RoundContext(
            round=1,
            party_ids=np.arange(n, dtype=np.int64),
            steps=np.ones(n, dtype=np.int64),
            signals={"server_update": rng.standard_normal(dim).astype(np.float32)},
        )
        try:
            rule(rng.standard_normal((n, dim)).astype(np.float32), np.ones(n), ctx)
        except ValueError as err:
            reason = _short_reason(str(err))
            if n != num_parties:
                reason += f"; round {round_sizes[n]} has {n} of {num_parties} parties"
            return reason
    return None


def _check_out(out: Path, resume: bool, force: bool, spec: dict) -> dict[Cell, dict]:
    """Refuse an --out that holds a matrix unless resuming (same spec) or forcing; return finished cells."""
    if resume and force:
        raise ConfigError("--resume continues the matrix in --out and --force discards it: give one of them")
    journal = CellJournal(out / JOURNAL)
    existing = [name for name in (JOURNAL, *OUTPUTS) if (out / name).exists()] if out.is_dir() else []
    if existing and not (resume or force):
        raise ConfigError(
            f"--out {out} already holds a robustness matrix ({', '.join(existing)}); add --resume to "
            "continue it, --force to overwrite it, or choose another --out"
        )
    if not resume:
        return {}
    recorded, done = journal.read()
    if recorded is None:
        raise ConfigError(
            f"--resume: {out} has no matrix journal ({JOURNAL}) to continue; run without --resume"
            + (" and with --force" if existing else "")
        )
    differ = [k for k in sorted({*spec, *recorded}) if spec.get(k) != recorded.get(k)]
    if differ:
        details = "; ".join(
            f"{k}: recorded {json.dumps(recorded.get(k))}, given {json.dumps(spec.get(k))}" for k in differ
        )
        raise ConfigError(
            f"--resume: the matrix in {out} was started with other arguments ({details}); resume with the "
            "recorded ones, or start over with --force"
        )
    return done


def _check_writable(out: Path) -> None:
    probe = out / f".write-probe-{os.getpid()}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"deai")
        probe.unlink()
    except OSError as err:
        raise ConfigError(
            f"--out {out} is not a writable directory ({err.strerror or err}); choose another --out"
        ) from None


def _fractions(byzantine_fractions: float | Sequence[float]) -> list[float]:
    if isinstance(byzantine_fractions, int | float):
        return [float(byzantine_fractions)]
    return [float(f) for f in byzantine_fractions]


def plan_matrix(
    base: ExperimentConfig | str | Path,
    attacks: Sequence[str],
    defences: Sequence[str],
    byzantine_fractions: float | Sequence[float],
    attack_options: dict[str, dict[str, Any]] | None = None,
    *,
    f_max: float | None = None,
    oracle: bool = False,
    out: str | Path | None = None,
    resume: bool = False,
    force: bool = False,
) -> MatrixPlan:
    """Check the matrix before any cell runs; raises :class:`ConfigError` saying what to fix.

    ``byzantine_fractions`` are the true attacker shares the cells run at; ``f_max`` is the bound every
    defence is told (default: the config's ``strategy.f_max`` if set, else the largest fraction), so a
    cell below ``f_max`` tests a defence that over-estimates its attackers, as a real one would.
    ``oracle=True`` (one fraction only) hands the rules the true count and the clean run's norm instead.
    With ``out``, the directory is created and probed for writing; one that already holds a matrix is
    refused unless ``resume`` (continue it: the arguments must equal the recorded ones) or ``force``
    (discard it). ``attack_options`` maps an attack name to its keyword options, e.g.
    ``{"ipm": {"epsilon": 100}}``.
    """
    base = as_config(base)
    attacks, defences = list(attacks), list(defences)
    fractions = _fractions(byzantine_fractions)
    if f_max is None:
        f_max = base.strategy.f_max if base.strategy.f_max > 0 else max(fractions, default=0.0)
    attack_options = {name: dict(opts) for name, opts in (attack_options or {}).items()}
    _check_names(attacks, defences, fractions, f_max)
    if oracle and len(fractions) != 1:
        raise ConfigError("--oracle runs one --byzantine-fraction (its true count is what the rules get)")
    _check_attack_options(attacks, attack_options)
    n = base.data.num_parties
    counts = {}
    for fraction in fractions:
        counts[fraction] = int(choose_malicious(n, fraction, base.run.seed).sum())  # who the runs attack with
        if counts[fraction] == 0:
            raise ConfigError(f"--byzantine-fraction {fraction} of {n} parties selects no attacker")

    def options(defence: str) -> dict:
        if not oracle:
            return {}
        return oracle_options(defence, counts[fractions[0]], fractions[0], None)

    told = fractions[0] if oracle else f_max  # the bound written into each cell's config
    cells: list[Cell] = [BASELINE, *(("none", d, 0.0) for d in defences if d != "mean")]
    cells += [(a, d, fr) for fr in fractions for d in defences for a in attacks]
    for defence in defences:
        try:
            make_aggregator(defence, options(defence), num_parties=n, f_max=told)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"--defences {defence}: {err}") from None
    for attack, defence, fraction in cells:
        _variant(base, attack, fraction, defence, options(defence), attack_options.get(attack, {}), told)

    spec = matrix_spec(base, attacks, defences, fractions, attack_options, f_max, oracle)
    done: dict[Cell, dict] = {}
    if out is not None:
        out = Path(out)
        done = _check_out(out, resume, force, spec)

    round_sizes = updates_per_round(base, build_data(base))
    not_applicable = {}
    for defence in dict.fromkeys(["mean", *defences]):
        reason = infeasibility(defence, options(defence), n, round_sizes, told)
        if reason is not None:
            not_applicable[defence] = reason

    if out is not None:
        _check_writable(out)
        journal = CellJournal(out / JOURNAL)
        if resume:
            journal.open()
        else:
            for name in (JOURNAL, *OUTPUTS):
                (out / name).unlink(missing_ok=True)  # --force: the old matrix goes, nothing else in --out
            journal.start(spec)
    return MatrixPlan(
        base=base,
        attacks=attacks,
        defences=defences,
        byzantine_fractions=fractions,
        f_max=f_max,
        oracle=oracle,
        attack_options=attack_options,
        num_parties=n,
        num_byzantine=counts,
        spec=spec,
        cells=cells,
        not_applicable=not_applicable,
        out=out,
        done=done,
    )


# -- one cell (runs in a worker process when jobs > 1) --------------------------------------------
@dataclass
class _CellTask:
    attack: str
    defence: str
    fraction: float
    cfg: ExperimentConfig
    baseline: bool  # also report the honest updates' typical norm


_EVALUATION: dict[str, tuple[Any, Any]] = {}  # per process: the clean eval set backdoor success uses


def _evaluation(cfg: ExperimentConfig) -> tuple[Any, Any]:
    # Poisoning rewrites only training rows, so every cell's backdoor is measured on the same clean eval set.
    k = json.dumps([cfg.data.model_dump(mode="json"), cfg.model.model_dump(mode="json"), cfg.run.seed])
    if k not in _EVALUATION:
        fed = build_data(cfg)
        _EVALUATION[k] = (fed, build_model(cfg, fed))
    return _EVALUATION[k]


def _measure(task: _CellTask) -> dict[str, Any]:
    cfg = task.cfg
    result = run(cfg, write=False)
    shares = [m["malicious_weight_share"] for m in result.history if "malicious_weight_share" in m]
    cell: dict[str, Any] = {
        "accuracy": result.final_accuracy,
        "malicious_weight_share": float(np.mean(shares)) if shares else None,
        "backdoor_success": None,
        "rejected": int(sum(m.get("rejected", 0) for m in result.history)),
        # a diverged run keeps its last finite model; its accuracy is that model's, flagged in the table
        "diverged": result.stopped if result.diverged else None,
    }
    if task.baseline:
        norms = [m["update_norm_mean"] for m in result.history if "update_norm_mean" in m]
        cell["typical_update_norm"] = float(np.median(norms)) if norms else None
    if cfg.attack.kind == "backdoor":
        from deai.attacks import backdoor_success_rate

        fed, model = _evaluation(cfg)
        attack = make_attack("backdoor", **cfg.attack.options)

        def predict(x: np.ndarray) -> np.ndarray:
            return model.logits(result.params[None, :], x[None])[0].argmax(axis=-1)

        cell["backdoor_success"] = float(
            backdoor_success_rate(predict, fed.x_eval, fed.y_eval, attack.target_label, fed.image_shape)
        )
    return cell


def _run_cell(task: _CellTask) -> dict[str, Any]:
    """One cell's record; whatever the run raises is the cell's failure, never the matrix's."""
    t0 = time.perf_counter()
    try:
        cell = {"status": "ok", **_measure(task)}
    except Exception as err:  # any error of one run is that cell's result
        cell = {"status": "failed", "error": f"{type(err).__name__}: {err}"}
    return {
        "attack": task.attack,
        "defence": task.defence,
        "fraction": task.fraction,
        **cell,
        "seconds": time.perf_counter() - t0,
    }


_THREAD_LIMITS: Any = None  # kept alive: the limits hold while the object exists


def _init_worker(threads: int, lifeline: Connection) -> None:
    # The parent stops the workers on Ctrl-C; a worker interrupted on its own would only print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(lifeline,), daemon=True).start()
    from threadpoolctl import threadpool_limits

    global _THREAD_LIMITS
    _THREAD_LIMITS = threadpool_limits(limits=threads)


def _exit_with_parent(lifeline: Connection) -> None:
    """Exit once the parent is gone (even SIGKILLed): its end of ``lifeline`` closes and ``recv`` hits EOF.

    A worker blocked on the task queue would otherwise wait forever, holding the terminal's stderr open.
    """
    try:
        lifeline.recv()
    except (EOFError, OSError):
        pass
    os._exit(1)


# BLAS threads per cell, whatever --jobs is: a multithreaded matrix product sums in another order, so a
# cell's numbers would depend on --jobs (seen: 77.23% against 77.39% clean accuracy on Fashion-MNIST).
# Cells run single-threaded and --jobs N runs N of them at once.
CELL_THREADS = 1


class _InlineExecutor:
    """``jobs=1``: each cell runs in this process at submit time (Ctrl-C interrupts it directly)."""

    def submit(self, fn: Callable[[_CellTask], dict], task: _CellTask) -> Future:
        from threadpoolctl import threadpool_limits

        future: Future = Future()
        with threadpool_limits(limits=CELL_THREADS):
            future.set_result(fn(task))
        return future

    def stop(self) -> None:
        pass


class _PoolExecutor:
    """``jobs>1``: worker processes, each holding BLAS/OpenMP to ``CELL_THREADS``."""

    def __init__(self, jobs: int) -> None:
        self.jobs, self.threads = jobs, CELL_THREADS
        # Never written: its only purpose is to close when this process ends (see _exit_with_parent).
        self.lifeline, self.lifeline_w = multiprocessing.Pipe(duplex=False)
        self.pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        # Not fork: the parent holds threads (BLAS, the progress bar) that fork would copy mid-lock. A fork
        # server forks workers from one clean process that imported deai and the data loaders once (about
        # 5 s on two cores, mostly scikit-learn), rather than every spawned worker importing them again.
        if "forkserver" in multiprocessing.get_all_start_methods():
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["deai.robustness", "deai.engine.simulation", "sklearn.datasets"])
        else:
            context = multiprocessing.get_context("spawn")
        return ProcessPoolExecutor(
            self.jobs,
            mp_context=context,
            initializer=_init_worker,
            initargs=(self.threads, self.lifeline),
        )

    def submit(self, fn: Callable[[_CellTask], dict], task: _CellTask) -> Future:
        try:
            return self.pool.submit(fn, task)
        except BrokenProcessPool:  # a worker died with an earlier cell: later cells get a fresh pool
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = self._new_pool()
            return self.pool.submit(fn, task)

    def stop(self, terminate: bool = False) -> None:
        if terminate:
            # A running cell would otherwise hold up the exit until it finished; its result is not kept.
            processes = getattr(self.pool, "_processes", None) or {}
            for process in list(processes.values()):
                process.terminate()
        self.pool.shutdown(wait=not terminate, cancel_futures=True)
        self.lifeline_w.close()  # and any worker still alive exits
        self.lifeline.close()


# -- running ---------------------------------------------------------------------------------------
def run_matrix(
    plan: MatrixPlan, on_cell: Callable[[dict[str, Any]], None] | None = None, jobs: int = 1
) -> dict[str, Any]:
    """Run the plan's remaining cells in ``jobs`` processes and return the report (see :func:`build_report`).

    Every finished cell goes to ``plan.done`` and the journal, then to ``on_cell``; with ``plan.out`` the
    table, JSON and heatmap are written at the end. Results do not depend on ``jobs``: every cell is a
    seeded run. On Ctrl-C (KeyboardInterrupt) the workers are stopped, finished cells stay in the journal,
    and the interrupt propagates. Workers are started by a fork server (or spawned), so a script calling
    this with ``jobs > 1`` needs the usual ``if __name__ == "__main__":`` guard.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"--jobs must be an integer >= 1; got {jobs!r}")
    journal = plan.journal

    def record(cell: dict[str, Any]) -> None:
        cell = jsonio.strict(cell)
        plan.done[(cell["attack"], cell["defence"], float(cell["fraction"]))] = cell
        if journal is not None:
            journal.append(cell)
        if on_cell is not None:
            on_cell(cell)

    queue: list[Cell] = []
    for attack, defence, fraction in plan.remaining:
        if defence in plan.not_applicable:
            reason = plan.not_applicable[defence]
            record(
                {
                    "attack": attack,
                    "defence": defence,
                    "fraction": fraction,
                    "status": "not_applicable",
                    "reason": reason,
                }
            )
        else:
            queue.append((attack, defence, fraction))
    if not queue:
        return _finish(plan)

    def baseline() -> dict | None:
        return plan.done.get(BASELINE)

    def needs_baseline(defence: str) -> bool:
        return plan.oracle and defence in _NORM_SCALED

    def task(cell: Cell) -> _CellTask:
        attack, defence, fraction = cell
        options, told = {}, plan.f_max
        if plan.oracle:
            norm = baseline()["typical_update_norm"] if needs_baseline(defence) else None
            told = plan.byzantine_fractions[0]
            options = oracle_options(defence, plan.num_byzantine[told], told, norm)
        cfg = _variant(
            plan.base, attack, fraction, defence, options, plan.attack_options.get(attack, {}), told
        )
        return _CellTask(attack, defence, fraction, cfg, baseline=cell == BASELINE)

    def next_cell() -> Cell | None:
        """The first queued cell that can start; cells whose baseline failed are recorded as failed."""
        base = baseline()
        for i, cell in enumerate(queue):
            if not needs_baseline(cell[1]):
                return queue.pop(i)
            if base is None or base.get("status") == "failed":
                continue  # the baseline is still running (or will be retried)
            if base.get("typical_update_norm") is None:
                queue.pop(i)
                record(
                    {
                        "attack": cell[0],
                        "defence": cell[1],
                        "fraction": cell[2],
                        "status": "failed",
                        "error": "the clean FedAvg baseline measured no update norm to scale this rule to",
                    }
                )
                return next_cell()
            return queue.pop(i)
        return None

    executor: Any = _InlineExecutor() if jobs == 1 else _PoolExecutor(min(jobs, len(queue)))
    running: dict[Future, Cell] = {}
    try:
        while queue or running:
            while len(running) < jobs and (cell := next_cell()) is not None:
                try:
                    running[executor.submit(_run_cell, task(cell))] = cell
                except ConfigError as err:  # a cell whose options (the measured norm) make no valid config
                    record(_failed(cell, str(err)))
            if not running:
                base = baseline()
                error = "the clean FedAvg baseline failed" + (f": {base['error']}" if base else "")
                for cell in queue:
                    record(_failed(cell, error))
                queue.clear()
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                cell = running.pop(future)
                try:
                    result = future.result()
                except Exception as err:  # the worker, not the run, failed: still only this cell's loss
                    if isinstance(err, BrokenProcessPool):
                        error = f"a worker process died during this cell (killed, or out of memory): {err}"
                    else:
                        error = f"{type(err).__name__}: {err}"
                    result = _failed(cell, error)
                record(result)
    except BaseException:
        if isinstance(executor, _PoolExecutor):
            executor.stop(terminate=True)
        raise
    executor.stop()
    return _finish(plan)


def _failed(cell: Cell, error: str) -> dict[str, Any]:
    return {"attack": cell[0], "defence": cell[1], "fraction": cell[2], "status": "failed", "error": error}


def _finish(plan: MatrixPlan) -> dict[str, Any]:
    report = build_report(plan)
    if plan.out is not None:
        write_outputs(report, plan.out)
    return report


def evaluate_matrix(
    base: ExperimentConfig | str | Path,
    attacks: Sequence[str],
    defences: Sequence[str],
    byzantine_fractions: float | Sequence[float],
    on_cell: Callable[[dict[str, Any]], None] | None = None,
    attack_options: dict[str, dict[str, Any]] | None = None,
    *,
    f_max: float | None = None,
    oracle: bool = False,
    out: str | Path | None = None,
    jobs: int = 1,
    resume: bool = False,
    force: bool = False,
) -> dict[str, Any]:
    """Run the clean baseline, each defence without attack, and every (attack, defence) cell.

    :func:`plan_matrix` then :func:`run_matrix`; without ``out`` nothing is written.
    """
    plan = plan_matrix(
        base,
        attacks,
        defences,
        byzantine_fractions,
        attack_options,
        f_max=f_max,
        oracle=oracle,
        out=out,
        resume=resume,
        force=force,
    )
    return run_matrix(plan, on_cell=on_cell, jobs=jobs)


# -- report ----------------------------------------------------------------------------------------
_MEASURES = ("accuracy", "backdoor_success", "malicious_weight_share", "rejected")


def _outcome(cell: dict | None) -> dict[str, Any]:
    if cell is None:
        return {"status": "missing", **dict.fromkeys(_MEASURES)}
    out = {"status": cell["status"], **{k: cell.get(k) for k in _MEASURES}}
    for k in ("reason", "error"):
        if k in cell:
            out[k] = cell[k]
    return out


def build_report(plan: MatrixPlan) -> dict[str, Any]:
    """The matrix as one strict-JSON-ready dict: ``results`` has one row per (attack, defence, fraction) with
    ``status`` ok / not_applicable (and ``reason``) / failed (and ``error``); ``clean_runs`` one row per
    defence without attack; ``assumptions`` what each defence was told; ``worst`` each defence's lowest
    accuracy under attack over all attacks and fractions, and its gap to clean FedAvg."""
    done = plan.done
    base = done.get(BASELINE) or {}
    clean_accuracy = base.get("accuracy") if base.get("status") == "ok" else None
    clean_runs, rows, worst = [], [], []
    for defence in plan.defences:
        clean = _outcome(done.get(("none", defence, 0.0) if defence != "mean" else BASELINE))
        clean_runs.append({"defence": defence, **clean})
        own_clean = clean["accuracy"] if clean["status"] == "ok" else None
        for fraction in plan.byzantine_fractions:
            for attack in plan.attacks:
                row = _outcome(done.get((attack, defence, fraction)))
                rows.append(
                    {
                        "attack": attack,
                        "defence": defence,
                        "fraction": fraction,
                        "num_byzantine": plan.num_byzantine[fraction],
                        "clean_accuracy": own_clean,
                        **row,
                    }
                )
        mine = [r for r in rows if r["defence"] == defence]
        scored = [r for r in mine if r["status"] == "ok" and r["accuracy"] is not None]
        entry: dict[str, Any] = {"defence": defence, "complete": len(scored) == len(mine) and bool(mine)}
        if scored:
            low = min(scored, key=lambda r: r["accuracy"])
            entry.update(attack=low["attack"], fraction=low["fraction"], accuracy=low["accuracy"])
            entry["gap"] = None if clean_accuracy is None else clean_accuracy - low["accuracy"]
        worst.append(entry)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return jsonio.strict(
        {
            "clean_accuracy": clean_accuracy,
            "baseline": _outcome(done.get(BASELINE)),
            "byzantine_fractions": plan.byzantine_fractions,
            "f_max": plan.f_max,
            "oracle": plan.oracle,
            "num_parties": plan.num_parties,
            "num_byzantine": {str(k): v for k, v in plan.num_byzantine.items()},
            "typical_update_norm": base.get("typical_update_norm"),
            "attacks": plan.attacks,
            "defences": plan.defences,
            "attack_options": plan.attack_options,
            "assumptions": {d: assumption(d, plan.base, plan.oracle) for d in plan.defences},
            "cells": counts,
            "clean_runs": clean_runs,
            "results": rows,
            "worst": worst,
        }
    )


def _pct(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f}%"


def _shown(row: dict[str, Any], key: str, digits: int) -> str:
    if row["status"] == "not_applicable":
        return "n/a"
    if row["status"] != "ok":
        return row["status"]
    shown = _pct(row[key], digits)
    return f"{shown} (diverged)" if key == "accuracy" and row.get("diverged") else shown


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: assumptions, one accuracy table per true fraction, worst cells, notes."""
    attacks, defences, fractions = report["attacks"], report["defences"], report["byzantine_fractions"]
    clean_shown = _shown(report["baseline"], "accuracy", 2)
    told = (
        "ORACLE settings: each rule was handed the true attacker count and the clean run's norm"
        if report["oracle"]
        else f"every defence was told only f_max = {report['f_max']:g}"
    )
    lines = [f"Clean FedAvg accuracy: {clean_shown} ({report['num_parties']} parties; {told})", ""]
    lines += ["| defence | assumes |", "|---|---|"]
    lines += [f"| {d} | {report['assumptions'][d]} |" for d in defences]
    clean_rows = {c["defence"]: c for c in report["clean_runs"]}
    cells = {(r["attack"], r["defence"], r["fraction"]): r for r in report["results"]}
    has_backdoor = "backdoor" in attacks
    for fraction in fractions:
        count = report["num_byzantine"][str(fraction)]
        lines += [
            "",
            f"Accuracy at {100 * fraction:g}% Byzantine ({count} of {report['num_parties']} parties):",
            "",
        ]
        lines += ["| defence | clean | " + " | ".join(attacks) + " |", "|---" * (len(attacks) + 2) + "|"]
        for d in defences:
            shown = [_shown(cells[(a, d, fraction)], "accuracy", 2) for a in attacks]
            lines.append(f"| {d} | {_shown(clean_rows[d], 'accuracy', 2)} | " + " | ".join(shown) + " |")
        if has_backdoor:
            lines += ["", "| defence | backdoor success | malicious weight share |", "|---|---|---|"]
            for d in defences:
                r = cells[("backdoor", d, fraction)]
                lines.append(
                    f"| {d} | {_shown(r, 'backdoor_success', 1)} | {_shown(r, 'malicious_weight_share', 1)} |"
                )
    lines += ["", "Worst cell of each defence (lowest accuracy under any attack at any fraction):", ""]
    lines += [
        "| defence | worst accuracy | attack | fraction | gap to clean FedAvg |",
        "|---|---|---|---|---|",
    ]
    for w in report["worst"]:
        if "accuracy" not in w:
            lines.append(f"| {w['defence']} | — | — | — | — |")
            continue
        gap = "—" if w["gap"] is None else f"{100 * w['gap']:.2f} points"
        partial = "" if w["complete"] else " (not every cell ran)"
        lines.append(
            f"| {w['defence']} | {_pct(w['accuracy'], 2)}{partial} | {w['attack']} | "
            f"{100 * w['fraction']:g}% | {gap} |"
        )
    notes = [f"- n/a, {d}: {c['reason']}" for d, c in clean_rows.items() if c["status"] == "not_applicable"]
    for c in report["clean_runs"]:
        if c["status"] == "failed":
            notes.append(f"- failed, {c['defence']} without attack: {' '.join(c['error'].split())}")
    for r in report["results"]:
        where = f"{r['attack']} vs {r['defence']} at {100 * r['fraction']:g}%"
        if r["status"] == "failed":
            notes.append(f"- failed, {where}: {' '.join(r['error'].split())}")
        elif r.get("diverged"):
            notes.append(f"- diverged, {where}: {r['diverged']}")
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def write_outputs(report: dict[str, Any], out: Path) -> None:
    """``robustness.json``, ``robustness.md`` and ``heatmap.png`` in ``out``, each replaced atomically."""
    attacks, defences, fractions = report["attacks"], report["defences"], report["byzantine_fractions"]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cmap = matplotlib.colormaps["RdYlGn"].with_extremes(bad="#d9d9d9")
    width, height = 1.0 + 0.9 * len(defences), 1.2 + 0.5 * len(attacks)
    fig, axes = plt.subplots(len(fractions), 1, figsize=(width, height * len(fractions)), squeeze=False)
    for ax, fraction in zip(axes[:, 0], fractions, strict=True):
        grid = np.full((len(attacks), len(defences)), np.nan)
        labels = [["" for _ in defences] for _ in attacks]
        for r in report["results"]:
            if r["fraction"] != fraction:
                continue
            i, j = attacks.index(r["attack"]), defences.index(r["defence"])
            if r["status"] == "ok" and r["accuracy"] is not None:
                grid[i, j] = 100 * r["accuracy"]
                labels[i][j] = f"{grid[i, j]:.0f}"
            else:
                labels[i][j] = "n/a" if r["status"] == "not_applicable" else r["status"]
        im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=100)
        ax.set_xticks(range(len(defences)), defences, rotation=45, ha="right")
        ax.set_yticks(range(len(attacks)), attacks)
        for i in range(len(attacks)):
            for j in range(len(defences)):
                ax.text(j, i, labels[i][j], ha="center", va="center", fontsize=8)
        ax.set_title(f"{100 * fraction:g}% Byzantine: final accuracy (%)", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.03)
    fig.suptitle(f"clean FedAvg {_shown(report['baseline'], 'accuracy', 2)}", fontsize=9)
    fig.tight_layout()
    write_artifacts(out, "robustness", report, markdown(report), fig, figure_name="heatmap")


def finished_cells(plan: MatrixPlan) -> int:
    """How many of the plan's cells are finished (ok or not applicable), e.g. for an interrupt message."""
    return len(plan.cells) - len(plan.remaining)


__all__ = [
    "ASSUMPTIONS",
    "BASELINE",
    "DEFENCES",
    "JOURNAL",
    "OUTPUTS",
    "CellJournal",
    "MatrixPlan",
    "build_report",
    "assumption",
    "markdown",
    "oracle_options",
    "evaluate_matrix",
    "finished_cells",
    "infeasibility",
    "matrix_spec",
    "plan_matrix",
    "run_matrix",
    "updates_per_round",
    "write_outputs",
]
