"""Membership inference (Yeom et al. 2018 loss threshold; Shokri et al. 2017 shadow models)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from deai.data.datasets import load_digits
from deai.models import MLP
from deai.privacy.audit.membership import (
    attack_advantage,
    attack_auc,
    loss_threshold_attack,
    membership_audit,
    shadow_model_attack,
    train_shadow_models,
)

MEMBERS = 100
OVERFIT = {"shadow_epochs": 100, "shadow_batch_size": 16, "shadow_lr": 0.2}


def _split(members: int, nonmembers: int) -> dict[str, np.ndarray]:
    ds = load_digits()
    order = np.random.default_rng(0).permutation(len(ds.y))
    m, n = order[:members], order[members : members + nonmembers]
    return {"xm": ds.x[m], "ym": ds.y[m], "xn": ds.x[n], "yn": ds.y[n]}


@pytest.fixture(scope="module")
def split() -> dict[str, np.ndarray]:
    """100 digits as members, 600 disjoint digits as non-members."""
    return _split(MEMBERS, 600)


@pytest.fixture(scope="module")
def unseen_split() -> dict[str, np.ndarray]:
    """400 "members" and 1200 non-members for a model that trained on neither (AUC noise ~0.02)."""
    return _split(400, 1200)


@pytest.fixture(scope="module")
def overfit_mlp(split: dict[str, np.ndarray]) -> tuple[MLP, np.ndarray]:
    model = MLP(64, 10, 64)
    params = train_shadow_models(
        model, split["xm"][None], split["ym"][None], epochs=100, batch_size=16, lr=0.2, seed=0
    )[0]
    return model, params


def _audit(model: MLP, params: np.ndarray, split: dict[str, np.ndarray], **kw: object) -> dict:
    return membership_audit(model, params, split["xm"], split["ym"], split["xn"], split["yn"], 0, **kw)


def test_auc_and_advantage_match_sklearn_with_ties() -> None:
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 6, 300).astype(float)  # many ties
    is_member = rng.random(300) < 0.4
    assert attack_auc(scores, is_member) == pytest.approx(roc_auc_score(is_member, scores), abs=1e-12)
    fpr, tpr, _ = roc_curve(is_member, scores)
    assert attack_advantage(scores, is_member) == pytest.approx(np.max(tpr - fpr), abs=1e-12)


def test_auc_of_perfect_and_reversed_scores() -> None:
    is_member = np.array([True, True, False, False])
    assert attack_auc(np.array([3.0, 4.0, 1.0, 2.0]), is_member) == 1.0
    assert attack_auc(np.array([1.0, 2.0, 3.0, 4.0]), is_member) == 0.0
    assert attack_advantage(np.array([1.0, 2.0, 3.0, 4.0]), is_member) == 0.0


def test_auc_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="both members"):
        attack_auc(np.array([1.0, 2.0]), np.array([True, True]))


def test_overfit_target_trains_to_full_accuracy(overfit_mlp: tuple[MLP, np.ndarray], split: dict) -> None:
    model, params = overfit_mlp
    predictions = model.logits(params[None], split["xm"][None])[0].argmax(axis=1)
    assert np.mean(predictions == split["ym"]) == 1.0


def test_loss_attack_is_chance_on_a_model_that_saw_neither(unseen_split: dict[str, np.ndarray]) -> None:
    model = MLP(64, 10, 64)
    result = _audit(model, model.init_params(3), unseen_split)
    assert abs(result["loss_auc"] - 0.5) < 0.08
    assert result["loss_advantage"] < 0.2


def test_loss_attack_beats_chance_on_an_overfit_model(
    overfit_mlp: tuple[MLP, np.ndarray], split: dict
) -> None:
    model, params = overfit_mlp
    score = loss_threshold_attack(
        model, params, split["xm"], split["ym"], split["xn"][:MEMBERS], split["yn"][:MEMBERS]
    )
    assert score.auc > 0.65
    assert score.advantage > 0.3


def test_shadow_attack_beats_chance_on_an_overfit_model(
    overfit_mlp: tuple[MLP, np.ndarray], split: dict
) -> None:
    model, params = overfit_mlp
    result = _audit(model, params, split, **OVERFIT)
    assert result["shadow_auc"] > 0.62


def test_shadow_attack_is_chance_on_a_model_that_saw_neither(unseen_split: dict[str, np.ndarray]) -> None:
    model = MLP(64, 10, 64)
    result = _audit(model, model.init_params(3), unseen_split, **OVERFIT)
    assert abs(result["shadow_auc"] - 0.5) < 0.1


def test_audit_is_balanced_capped_and_seeded(overfit_mlp: tuple[MLP, np.ndarray], split: dict) -> None:
    model, params = overfit_mlp
    first = _audit(model, params, split, max_examples=60)
    assert first["loss_pairs"] == 60 and first["shadow_pairs"] == 60
    assert _audit(model, params, split, max_examples=60) == first
    uncapped = _audit(model, params, split)
    assert uncapped["loss_pairs"] == MEMBERS  # min(members, non-members)


def test_shadow_attack_rejects_a_pool_too_small(overfit_mlp: tuple[MLP, np.ndarray], split: dict) -> None:
    model, params = overfit_mlp
    with pytest.raises(ValueError, match="too few"):
        shadow_model_attack(
            model,
            params,
            split["xm"],
            split["ym"],
            split["xn"],
            split["yn"],
            split["xn"][:5],
            split["yn"][:5],
            shadow_models=4,
        )
