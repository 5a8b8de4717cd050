"""What federation buys: local-only, federated and pooled models of one class, on the task's held-out set.

For each seed, on the same federation and the same evaluation rows (the task's held-out set):

- **local-only** — every party trains the model alone on its own rows; its score is the mean of the
  parties' balanced accuracies weighted by party size (the model a random training example's owner
  would deploy). This is what each party gets without collaborating.
- **federated** — each algorithm through the engine, as ``deai run`` would train it.
- **pooled** — the same model trained on every party's rows as if they were one data set: the
  reference no federation can exceed in principle, and that no party could build, since it means
  handing the data over.

All three use the same model, the same local trainer, the same hyperparameters and the same number
of passes over the data (``rounds * local_epochs`` epochs), so differences come from who sees which
data. Scores across seeds are paired (same seed = same held-out set, initialisation and batch order),
and each difference gets a 95% t-interval over seeds. Reference rows from scikit-learn (a converged
pooled logistic regression, pooled gradient boosting) and the majority class put the numbers in
context; balanced accuracy is used throughout because a constant "negative" reaches 92.5% plain
accuracy on the clinics.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deai.config import ConfigError, ExperimentConfig
from deai.engine.api import as_config, build_data, build_model, run
from deai.engine.strategy import build_strategy
from deai.evaluation import evaluate
from deai.train import train_parties

OnRun = Callable[[str], None]

LOCAL, POOLED = "local-only", "pooled"
_ORDER_ENTRIES = 1 << 24  # int64 batch-order entries per local-only training call (128 MiB)


@dataclass
class Arm:
    """One way of training, scored once per seed."""

    name: str
    kind: str  # "local" | "federated" | "pooled" | "reference"
    scores: list[float] = field(default_factory=list)  # balanced accuracy, one per seed
    seconds: list[float] = field(default_factory=list)


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: Student-t confidence interval of the mean of ``values``."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    mean = float(v.mean())
    if len(v) < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return mean, mean - half, mean + half


def local_only_score(cfg: ExperimentConfig, fed: Any, model: Any) -> float:
    """Every party trains alone for ``rounds * local_epochs`` epochs; party-size-weighted balanced accuracy.

    The class weights are the federation's (as in the federated runs), so the arms differ only in data.
    """
    spec = _spec(cfg, fed)
    ids = np.flatnonzero(fed.train_sizes > 0)
    ids = ids[np.argsort(-fed.train_sizes[ids], kind="stable")]
    w0 = model.init_params(cfg.run.seed)
    scores = np.empty(len(ids))
    # The batched trainer holds one batch order per epoch and party ([epochs, parties, largest party]);
    # chunks of similar-sized parties keep that table near _ORDER_ENTRIES however long the training.
    start = 0
    while start < len(ids):
        stop = start + 1
        while (
            stop < len(ids)
            and spec.epochs * (stop + 1 - start) * fed.train_sizes[ids[start]] <= _ORDER_ENTRIES
        ):
            stop += 1
        chunk = ids[start:stop]
        res = train_parties(
            model, fed.x_train, fed.y_train, fed.train_offsets, chunk, w0, spec, cfg.run.seed, 0
        )
        for i, d in enumerate(res.deltas):
            scores[start + i] = evaluate(model, w0 + d, fed.x_eval, fed.y_eval)["balanced_accuracy"]
        start = stop
    return float(np.average(scores, weights=fed.train_sizes[ids]))


def pooled_score(cfg: ExperimentConfig, fed: Any, model: Any) -> float:
    """The same model and trainer on every party's rows as one data set (one party, one long run)."""
    spec = _spec(cfg, fed)
    w0 = model.init_params(cfg.run.seed)
    offsets = np.array([0, len(fed.y_train)])
    res = train_parties(model, fed.x_train, fed.y_train, offsets, np.array([0]), w0, spec, cfg.run.seed, 0)
    return evaluate(model, w0 + res.deltas[0], fed.x_eval, fed.y_eval)["balanced_accuracy"]


def _spec(cfg: ExperimentConfig, fed: Any) -> Any:
    counts = np.bincount(fed.y_train, minlength=fed.num_classes)
    local = build_strategy(cfg.strategy, counts).local
    from dataclasses import replace

    return replace(local, epochs=cfg.run.rounds * cfg.strategy.local_epochs)


def reference_scores(fed: Any, seed: int) -> dict[str, float]:
    """scikit-learn on the pooled rows: a converged class-balanced logistic regression, gradient boosting."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score

    out = {}
    logreg = LogisticRegression(C=1e4, class_weight="balanced", max_iter=2000)
    boosted = HistGradientBoostingClassifier(class_weight="balanced", random_state=seed)
    for name, clf in (
        ("logistic regression, converged (scikit-learn)", logreg),
        ("gradient boosting (scikit-learn)", boosted),
    ):
        clf.fit(fed.x_train, fed.y_train)
        out[name] = float(balanced_accuracy_score(fed.y_eval, clf.predict(fed.x_eval)))
    return out


def compare(
    config: ExperimentConfig | dict[str, Any] | str,
    algorithms: Sequence[str],
    seeds: Sequence[int],
    *,
    strategy_options: Mapping[str, Mapping[str, Any]] | None = None,
    references: bool = True,
    on_run: OnRun | None = None,
) -> dict[str, Any]:
    """Local-only, each federated algorithm, pooled (and references) over ``seeds``; see the module docstring.

    ``strategy_options`` maps an algorithm to strategy keys of its own (e.g. ``{"fedadam": {"server_lr":
    0.03}}``). Returns a strict-JSON-able report: per arm its scores, mean and interval, and the paired
    differences to pooled and to local-only.
    """
    base = as_config(config)
    if not seeds:
        raise ConfigError("give at least one seed")
    if base.data.holdout_fraction is None and base.data.replicate == 1:
        raise ConfigError(
            "compare scores every model on the task's own held-out rows: set data.holdout_fraction (e.g. 0.2)"
        )
    unknown = sorted(set(strategy_options or {}) - set(algorithms))
    if unknown:
        raise ConfigError(f"options given for {', '.join(unknown)}, which are not among the algorithms")
    variants = {}
    for a in algorithms:  # every variant is validated before the first run
        variants[a] = base.with_sections(
            source=f"algorithm {a}", strategy={"algorithm": a, **(strategy_options or {}).get(a, {})}
        )
    arms: dict[str, Arm] = {LOCAL: Arm(LOCAL, "local")}
    arms.update({a: Arm(f"federated: {a}", "federated") for a in algorithms})
    arms[POOLED] = Arm(POOLED, "pooled")
    for seed in seeds:
        seeded = base.with_sections(run={"seed": int(seed)})
        fed = build_data(seeded)
        model = build_model(seeded, fed)
        for name, fn in ((LOCAL, local_only_score), (POOLED, pooled_score)):
            t0 = time.perf_counter()
            arms[name].scores.append(fn(seeded, fed, model))
            arms[name].seconds.append(time.perf_counter() - t0)
            if on_run:
                on_run(f"seed {seed}: {name}")
        for a, cfg in variants.items():
            t0 = time.perf_counter()
            result = run(cfg.with_sections(run={"seed": int(seed)}), write=False)
            arms[a].scores.append(result.final_balanced_accuracy)
            arms[a].seconds.append(time.perf_counter() - t0)
            if on_run:
                on_run(f"seed {seed}: {a}")
        if references:
            t0 = time.perf_counter()
            for name, score in reference_scores(fed, int(seed)).items():
                arms.setdefault(name, Arm(name, "reference")).scores.append(score)
            if on_run:
                on_run(f"seed {seed}: references")
    return _report(base, list(arms.values()), list(seeds), fed.num_classes)


def _report(base: ExperimentConfig, arms: list[Arm], seeds: list[int], num_classes: int) -> dict[str, Any]:
    by_name = {a.name: a for a in arms}
    pooled, local = np.array(by_name[POOLED].scores), np.array(by_name[LOCAL].scores)
    rows = []
    for arm in arms:
        s = np.array(arm.scores)
        mean, lo, hi = t_interval(s)
        row: dict[str, Any] = {
            "model": arm.name,
            "kind": arm.kind,
            "balanced_accuracy": mean,
            "ci95": [lo, hi],
            "per_seed": s.tolist(),
            "seconds_per_run": float(np.mean(arm.seconds)) if arm.seconds else None,
        }
        if arm.name != POOLED:
            row["vs_pooled"] = _paired(s, pooled)
        if arm.name != LOCAL:
            row["vs_local_only"] = _paired(s, local)
        rows.append(row)
    rows.append(
        {"model": "majority class (chance)", "kind": "reference", "balanced_accuracy": 1.0 / num_classes}
    )
    return {
        "dataset": base.data.dataset,
        "parties": base.data.num_parties,
        "holdout_fraction": base.data.effective_holdout,
        "model": base.model.kind,
        "seeds": seeds,
        "rows": rows,
    }


def _paired(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Mean paired difference ``a - b`` over seeds with its 95% t-interval, and whether 0 lies inside."""
    mean, lo, hi = t_interval(a - b)
    return {"mean": mean, "ci95": [lo, hi], "distinguishable": bool(not (lo <= 0.0 <= hi))}


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table (percentages, 95% intervals over seeds)."""

    def pct(x: float | None) -> str:
        return "—" if x is None or not np.isfinite(x) else f"{100 * x:.1f}"

    def ci(v: Sequence[float] | None) -> str:
        return "" if not v else f" [{pct(v[0])}, {pct(v[1])}]"

    def diff(d: dict | None) -> str:
        if not d:
            return ""
        sign = "+" if d["mean"] >= 0 else "−"
        lo, hi = (f"{100 * x:+.1f}".replace("-", "−") for x in d["ci95"])
        return f"{sign}{abs(100 * d['mean']):.1f} [{lo}, {hi}]"

    lines = [
        f"Balanced accuracy (%) on the task's held-out set, mean [95% CI] over seeds {report['seeds']}; "
        "differences are paired by seed.",
        "",
        "| model | balanced accuracy | vs pooled | vs local-only | s per run |",
        "|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        secs = r.get("seconds_per_run")
        lines.append(
            f"| {r['model']} | {pct(r['balanced_accuracy'])}{ci(r.get('ci95'))} | {diff(r.get('vs_pooled'))} "
            f"| {diff(r.get('vs_local_only'))} | {'' if secs is None else f'{secs:.1f}'} |"
        )
    return "\n".join(lines) + "\n"
