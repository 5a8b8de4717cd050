"""Audit a finished run: how much its final model and its parties' updates leak, in one ``audit.json``.

The data and model are rebuilt from the run's own ``config.toml`` exactly as the engine built
them, so the members (parties' training rows) and non-members (the evaluation rows) are the
ones the run really used. See :mod:`deai.privacy.audit.membership` and
:mod:`deai.privacy.audit.gradient_inversion` for what each number means.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from deai import jsonio
from deai.config import ExperimentConfig, load_config
from deai.data import FederatedData
from deai.models import Model
from deai.params import load_params
from deai.privacy.audit.membership import membership_audit

# Shadow models mimic the target's recipe, but never train longer than this many epochs.
_MAX_SHADOW_EPOCHS = 100
_AUDIT_PURPOSE = 0x61756469  # "audi"


def audit_run(run_dir: str | os.PathLike[str], *, seed: int = 0, max_examples: int = 2000) -> dict[str, Any]:
    """Run the privacy audits on ``run_dir``'s final model; write and return ``audit.json``.

    Parameters
    ----------
    run_dir : a run directory with ``config.toml`` and ``final.npz`` (from ``deai.run``).
    seed : seeds every sample the audit draws and its shadow models.
    max_examples : at most this many members are scored, against as many non-members.

    Returns
    -------
    ``{"epsilon", "delta", "mia_loss_auc", "mia_shadow_auc", "mia_advantage", "mia_pairs",
    "inversion"}``:

    - ``epsilon``/``delta``: the DP budget the run reports on the last line of
      ``metrics.jsonl``, or ``None`` when it reports none (no formal guarantee);
    - ``mia_loss_auc``: AUC of the loss-threshold attack (Yeom et al. 2018), 0.5 = chance;
    - ``mia_shadow_auc``: AUC of the shadow-model attack (Shokri et al. 2017);
    - ``mia_advantage``: the loss-threshold attack's best TPR - FPR;
    - ``mia_pairs``: members scored by the loss-threshold attack (and as many non-members):
      with a few hundred, AUCs within about ±0.05 of 0.5 are noise;
    - ``inversion``: for image data, ``{"mse", "psnr", "baseline_mse", "baseline_psnr",
      "labels_correct"}`` of gradient inversion on one party's single-example update at the
      final model (clipped as the run clips), else ``None``.
    """
    path = Path(run_dir)
    if not (path / "config.toml").is_file() or not (path / "final.npz").is_file():
        raise FileNotFoundError(
            f"{path} is not a finished deai run directory (needs config.toml and final.npz)"
        )
    if max_examples < 1:
        raise ValueError(f"max_examples must be >= 1, got {max_examples}")
    # The engine sits above privacy in deai's layering; importing it here, not at module level,
    # keeps `import deai.privacy...` free of the engine and of import cycles through it.
    from deai.engine.api import build_data, build_model

    cfg = load_config(path / "config.toml")
    if cfg.data.replicate > 1:
        raise ValueError(
            f"{path}: data.replicate = {cfg.data.replicate} copies rows into both the training and "
            "evaluation sets, so non-members would not be non-members; audit a run with replicate = 1"
        )
    fed = build_data(cfg)
    model = build_model(cfg, fed)
    params, layout, _ = load_params(path / "final.npz")
    if layout != model.layout:
        raise ValueError(f"{path / 'final.npz'} does not match the model described in {path / 'config.toml'}")

    s = cfg.strategy
    mia = membership_audit(
        model,
        params,
        fed.x_train,
        fed.y_train,
        fed.x_eval,
        fed.y_eval,
        seed,
        max_examples=max_examples,
        shadow_epochs=_shadow_epochs(cfg),
        shadow_batch_size=s.batch_size,
        shadow_lr=s.lr,
    )
    epsilon, delta = _privacy_budget(path / "metrics.jsonl")
    inversion = _inversion(cfg, fed, model, params, seed)
    result = {
        "epsilon": epsilon,
        "delta": delta,
        "mia_loss_auc": mia["loss_auc"],
        "mia_shadow_auc": mia["shadow_auc"],
        "mia_advantage": mia["loss_advantage"],
        "mia_pairs": mia["loss_pairs"],
        "inversion": inversion,
    }
    tmp = path / "audit.json.tmp"
    tmp.write_text(jsonio.dumps(result, indent=2) + "\n")
    tmp.replace(path / "audit.json")
    return result


def _shadow_epochs(cfg: ExperimentConfig) -> int:
    """Expected passes the target made over each member: rounds x local epochs x share sampled."""
    part, parties = cfg.participation, cfg.data.num_parties
    share = 1.0
    if part.count is not None:
        share = min(1.0, part.count / parties)
    elif part.fraction is not None:
        share = part.fraction
    passes = cfg.run.rounds * cfg.strategy.local_epochs * share
    return int(min(_MAX_SHADOW_EPOCHS, max(1, round(passes))))


def _privacy_budget(metrics: Path) -> tuple[float | None, float | None]:
    """``(epsilon, delta)`` from the last metrics line, ``None`` for each that is absent or not finite."""
    if not metrics.is_file():
        return None, None
    lines = [line for line in metrics.read_text().splitlines() if line.strip()]
    if not lines:
        return None, None
    try:
        last = json.loads(lines[-1])
    except json.JSONDecodeError:
        return None, None

    def number(key: str) -> float | None:
        value = last.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        return None

    return number("epsilon"), number("delta")


def _inversion(
    cfg: ExperimentConfig, fed: FederatedData, model: Model, params: np.ndarray, seed: int
) -> dict[str, float | bool | None] | None:
    """Gradient inversion on one seeded party's single-example update, or ``None`` for non-image data."""
    if fed.image_shape is None:
        return None
    try:
        from deai.privacy.audit.gradient_inversion import gradient_inversion_attack
    except ImportError:  # PyTorch is optional; the NumPy-only audits still run
        return None
    module = None
    if cfg.model.kind == "cnn":
        from deai.models.cnn import small_cnn

        module = small_cnn(fed.image_shape, fed.num_classes)  # what build_model wraps

    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _AUDIT_PURPOSE]))
    with_rows = np.flatnonzero(fed.train_sizes > 0)
    party = int(rng.choice(with_rows))
    x_party, y_party = fed.party_train(party)
    row = int(rng.integers(len(y_party)))
    s = cfg.strategy
    # Attack what the party would send: clipped when the run clips. Cosine matching ignores the
    # scale, so clipping alone is no defence; only noise is.
    result = gradient_inversion_attack(
        model,
        params,
        x_party[row : row + 1],
        y_party[row : row + 1],
        fed.x_eval.mean(axis=0),
        lr=s.lr,
        module=module,
        image_shape=fed.image_shape,
        clip_norm=s.clip_norm,
        seed=seed,
    )
    return result.summary()
