"""``deai robustness``: every (attack, defence) pair on one base config, as a table and a heatmap.

Each cell is a full seeded run of the engine with a share of parties malicious; the same seed picks
the same malicious parties everywhere, so cells differ only by attack and defence. Reported per
cell: final accuracy, backdoor success rate (backdoor only), and the share of aggregation weight
that reached malicious parties (rules that weight parties; order-statistic rules report none).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deai.aggregate import AGGREGATORS
from deai.attacks import choose_malicious
from deai.config import ATTACK_NAMES, ConfigError, ExperimentConfig
from deai.engine.api import as_config, build_data, build_model, run

# every aggregation rule that sees individual updates, FedNova's normalization aside
DEFENCES: tuple[str, ...] = tuple(name for name in AGGREGATORS if name != "fednova")


def defence_options(defence: str, num_byzantine: int, byzantine_fraction: float, typical_norm: float) -> dict:
    """Each rule's parameters for a known attacker budget (f) and the honest updates' typical norm."""
    f = max(num_byzantine, 1)
    return {
        "krum": {"num_byzantine": f},
        "multi_krum": {"num_byzantine": f},
        "bulyan": {"num_byzantine": f},
        "trimmed_mean": {"trim_fraction": min(max(byzantine_fraction, 0.05), 0.45)},
        "centered_clipping": {"clip_radius": typical_norm},
        "norm_bound": {"max_norm": typical_norm},
    }.get(defence, {})


def _variant(
    base: ExperimentConfig, attack: str, fraction: float, defence: str, options: dict, attack_options: dict
) -> ExperimentConfig:
    return base.with_sections(
        source=f"{attack} vs {defence}",
        attack={"kind": attack, "fraction": fraction if attack != "none" else 0.0, "options": attack_options},
        strategy={"aggregator": defence, "aggregator_options": options},
    )


def _cell(cfg: ExperimentConfig, evaluation: tuple[Any, Any] | None) -> dict[str, Any]:
    """One attacked run; ``evaluation`` is the (federation, model) that backdoor success is measured on."""
    result = run(cfg, write=False)
    shares = [m["malicious_weight_share"] for m in result.history if "malicious_weight_share" in m]
    cell: dict[str, Any] = {
        "accuracy": result.final_accuracy,
        "malicious_weight_share": float(np.mean(shares)) if shares else None,
        "backdoor_success": None,
        "rejected": int(sum(m.get("rejected", 0) for m in result.history)),
    }
    if cfg.attack.kind == "backdoor":
        from deai.attacks import backdoor_success_rate, make_attack

        fed, model = evaluation
        attack = make_attack("backdoor", **cfg.attack.options)

        def predict(x: np.ndarray) -> np.ndarray:
            return model.logits(result.params[None, :], x[None])[0].argmax(axis=-1)

        cell["backdoor_success"] = float(
            backdoor_success_rate(predict, fed.x_eval, fed.y_eval, attack.target_label, fed.image_shape)
        )
    return cell


def evaluate_matrix(
    base: ExperimentConfig | str | Path,
    attacks: Sequence[str],
    defences: Sequence[str],
    byzantine_fraction: float,
    on_cell: Callable[[str, str], None] | None = None,
    attack_options: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run the clean baseline, each defence without attack, and every (attack, defence) cell.

    ``attack_options`` maps an attack name to its keyword options (e.g. ``{"ipm": {"epsilon": 100}}``).
    """
    base = as_config(base)
    unknown = [a for a in [*attacks, *(attack_options or {})] if a not in ATTACK_NAMES]
    if unknown:
        raise ConfigError(f"--attacks: unknown {', '.join(unknown)}; allowed: {', '.join(ATTACK_NAMES)}")
    unknown = [d for d in defences if d not in DEFENCES]
    if unknown:
        raise ConfigError(f"--defences: unknown {', '.join(unknown)}; allowed: {', '.join(DEFENCES)}")
    if not 0 < byzantine_fraction < 0.5:
        raise ConfigError(f"--byzantine-fraction must be in (0, 0.5), got {byzantine_fraction}")
    n = base.data.num_parties
    f = int(choose_malicious(n, byzantine_fraction, base.run.seed).sum())  # exactly who the runs attack with
    if f == 0:
        raise ConfigError(f"--byzantine-fraction {byzantine_fraction} of {n} parties selects no attacker")

    clean = run(_variant(base, "none", 0.0, "mean", {}, {}), write=False)
    norms = [m["update_norm_mean"] for m in clean.history if "update_norm_mean" in m]
    typical = float(np.median(norms))
    # Poisoning rewrites only training rows, so every cell's backdoor is measured on the same clean eval set.
    evaluation = None
    if "backdoor" in attacks:
        fed = build_data(base)
        evaluation = (fed, build_model(base, fed))

    rows = []
    for defence in defences:
        options = defence_options(defence, f, byzantine_fraction, typical)
        if defence == "mean":
            clean_accuracy = clean.final_accuracy  # the baseline run is this cell
        else:
            try:
                clean_accuracy = run(
                    _variant(base, "none", 0.0, defence, options, {}), write=False
                ).final_accuracy
            except ValueError as err:
                raise ConfigError(f"defence {defence!r} cannot run on this config: {err}") from None
        for attack in attacks:
            if on_cell:
                on_cell(attack, defence)
            opts = (attack_options or {}).get(attack, {})
            try:
                cell = _cell(_variant(base, attack, byzantine_fraction, defence, options, opts), evaluation)
            except ConfigError as err:
                raise ConfigError(f"attack {attack!r}: {err}") from None
            rows.append({"attack": attack, "defence": defence, "clean_accuracy": clean_accuracy, **cell})
    return {
        "clean_accuracy": clean.final_accuracy,
        "byzantine_fraction": byzantine_fraction,
        "num_parties": n,
        "num_byzantine": f,
        "typical_update_norm": typical,
        "attack_options": attack_options or {},
        "results": rows,
    }


def write_outputs(report: dict[str, Any], out: Path, attacks: Sequence[str], defences: Sequence[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "robustness.json").write_text(json.dumps(report, indent=2))
    lines = [
        f"Clean FedAvg accuracy: {100 * report['clean_accuracy']:.2f}%  "
        f"({report['num_byzantine']} of {report['num_parties']} parties malicious)",
        "",
        "| attack | defence | clean acc. | acc. under attack | backdoor success | malicious weight share |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        bd = "—" if r["backdoor_success"] is None else f"{100 * r['backdoor_success']:.1f}%"
        share = "—" if r["malicious_weight_share"] is None else f"{100 * r['malicious_weight_share']:.1f}%"
        lines.append(
            f"| {r['attack']} | {r['defence']} | {100 * r['clean_accuracy']:.2f}% "
            f"| {100 * r['accuracy']:.2f}% "
            f"| {bd} | {share} |"
        )
    (out / "robustness.md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.full((len(attacks), len(defences)), np.nan)
    for r in report["results"]:
        grid[attacks.index(r["attack"]), defences.index(r["defence"])] = 100 * r["accuracy"]
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(defences), 1.2 + 0.5 * len(attacks)))
    im = ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=100)
    ax.set_xticks(range(len(defences)), defences, rotation=45, ha="right")
    ax.set_yticks(range(len(attacks)), attacks)
    for i in range(len(attacks)):
        for j in range(len(defences)):
            ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=8)
    ax.set_title(f"Final accuracy (%) under attack; clean FedAvg {100 * report['clean_accuracy']:.1f}%")
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.savefig(out / "heatmap.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
