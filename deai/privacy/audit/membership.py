"""Membership inference: does a trained model reveal whether a given example was in its training set?

Two black-box attacks, each scored by ROC AUC over an equal number of members and non-members:

- the loss-threshold attack of Yeom et al. 2018 ("Privacy Risk in Machine Learning: Analyzing the
  Connection to Overfitting"): an example is called a member when the model's loss on its true
  label is low. It needs no data beyond the example itself.
- the shadow-model attack of Shokri et al. 2017 ("Membership Inference Attacks Against Machine
  Learning Models"): the attacker trains models of the same kind on data it owns, where it knows
  who is in and who is out, learns a classifier from those models' outputs, and applies it to
  the target model.

How to read the numbers: AUC 0.5 means the attacker does no better than a coin flip; 1.0 means
it tells every member from every non-member. The advantage (max over thresholds of TPR - FPR,
Yeom et al.'s "membership advantage") is the largest gap between how often members and
non-members are flagged; for an (ε, δ)-DP training run it is at most e^ε - 1 + δ (Yeom et al.,
Theorem 1), usually far less. An AUC near 0.5 on these attacks is evidence of little leakage
*to these attacks*, not a proof of privacy: only a DP guarantee bounds every attack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import log_softmax
from scipy.stats import rankdata
from sklearn.linear_model import LogisticRegression as SkLogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from deai.models.base import Model
from deai.train.local import LocalSpec, train_parties

# Keep these random streams apart from every other use of the audit seed.
_SAMPLE_PURPOSE = 0x6D696173  # "mias"
_SHADOW_PURPOSE = 0x73686477  # "shdw"

# Rows per forward call: bounds activation memory for the larger models.
_EVAL_CHUNK = 4096

# Floor on probabilities before taking logs, so a saturated softmax stays finite.
_MIN_PROB = 1e-12


@dataclass(frozen=True)
class AttackScore:
    """How well an attack separates members from non-members.

    ``auc``: probability that a random member scores higher than a random non-member (0.5 =
    chance). ``advantage``: max over thresholds of TPR - FPR, in [0, 1]. ``pairs``: members
    scored (and as many non-members).
    """

    auc: float
    advantage: float
    pairs: int


def attack_auc(scores: np.ndarray, is_member: np.ndarray) -> float:
    """ROC AUC of ``scores`` (higher = more likely a member) via the Mann–Whitney U statistic.

    Ties count one half, exactly as :func:`sklearn.metrics.roc_auc_score`.
    """
    scores, is_member = _check_scores(scores, is_member)
    ranks = rankdata(scores)  # average ranks for ties
    n_pos = int(is_member.sum())
    n_neg = len(is_member) - n_pos
    u = ranks[is_member].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def attack_advantage(scores: np.ndarray, is_member: np.ndarray) -> float:
    """Membership advantage (Yeom et al. 2018): ``max`` over thresholds of ``TPR - FPR``, in [0, 1].

    Thresholds sweep every distinct score, plus "flag nobody" (TPR = FPR = 0), so the result is
    never negative.
    """
    scores, is_member = _check_scores(scores, is_member)
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_member = scores[order], is_member[order]
    tp = np.cumsum(sorted_member)
    fp = np.cumsum(~sorted_member)
    # Only the last position of each run of equal scores is a reachable threshold.
    last_of_run = np.r_[sorted_scores[1:] != sorted_scores[:-1], True]
    tpr = tp[last_of_run] / tp[-1]
    fpr = fp[last_of_run] / fp[-1]
    return float(max(0.0, np.max(tpr - fpr)))


def _check_scores(scores: np.ndarray, is_member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    is_member = np.asarray(is_member).ravel().astype(bool)
    if scores.shape != is_member.shape:
        raise ValueError(
            f"scores ({scores.shape}) and is_member ({is_member.shape}) must have one entry each"
        )
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite")
    if is_member.all() or not is_member.any():
        raise ValueError("is_member must contain both members (True) and non-members (False)")
    return scores, is_member


def log_probs(model: Model, params: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``[N, C]`` float64 log-softmax of the model with parameter vector ``params`` on rows ``x``."""
    params = np.asarray(params, dtype=np.float32)
    if params.ndim != 1 or params.shape[0] != model.layout.dim:
        raise ValueError(f"params must be a [{model.layout.dim}] vector, got shape {params.shape}")
    x = np.asarray(x, dtype=np.float32)
    out = np.empty((len(x), model.num_classes), dtype=np.float64)
    for start in range(0, len(x), _EVAL_CHUNK):
        chunk = x[start : start + _EVAL_CHUNK]
        logits = model.logits(params[None, :], chunk[None, :, :])[0]
        out[start : start + len(chunk)] = log_softmax(logits.astype(np.float64), axis=-1)
    return out


def example_losses(model: Model, params: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``[N]`` cross-entropy of each example's true label: the signal every attack here feeds on."""
    y = np.asarray(y, dtype=np.int64)
    return -np.take_along_axis(log_probs(model, params, x), y[:, None], axis=1)[:, 0]


def loss_threshold_attack(
    model: Model,
    params: np.ndarray,
    x_members: np.ndarray,
    y_members: np.ndarray,
    x_nonmembers: np.ndarray,
    y_nonmembers: np.ndarray,
) -> AttackScore:
    """Yeom et al. 2018: score each example by minus its loss; AUC and advantage over all thresholds.

    Pass balanced sets (as many members as non-members) for the advantage to mean what it says;
    :func:`membership_audit` does the balancing.
    """
    member_scores = -example_losses(model, params, x_members, y_members)
    nonmember_scores = -example_losses(model, params, x_nonmembers, y_nonmembers)
    scores = np.concatenate([member_scores, nonmember_scores])
    is_member = np.r_[np.ones(len(member_scores), bool), np.zeros(len(nonmember_scores), bool)]
    return AttackScore(
        attack_auc(scores, is_member), attack_advantage(scores, is_member), int(len(member_scores))
    )


def attack_features(log_p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Shadow-attack features of each example: sorted log-softmax vector, true-label log-prob, one-hot label.

    Shokri et al. feed the prediction vector and the label to one attack model per class;
    sorting (Salem et al. 2019, "ML-Leaks") lets one classifier serve every class, and the
    true-label log-probability keeps what the per-class models could read off the unsorted
    vector: whether the confident answer is the right one.
    """
    y = np.asarray(y, dtype=np.int64)
    log_p = np.maximum(log_p, np.log(_MIN_PROB))
    sorted_desc = -np.sort(-log_p, axis=1)
    true = np.take_along_axis(log_p, y[:, None], axis=1)
    onehot = np.eye(log_p.shape[1])[y]
    return np.concatenate([sorted_desc, true, onehot], axis=1)


def train_shadow_models(
    model: Model,
    x_in: np.ndarray,
    y_in: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
) -> np.ndarray:
    """Train ``k`` shadow models at once, centrally with plain mini-batch SGD; ``[k, dim]`` parameters.

    ``x_in`` is ``[k, n, F]`` and ``y_in`` ``[k, n]``: shadow ``i`` trains on ``x_in[i]`` only.
    All ``k`` train in one batched call (:func:`deai.train.local.train_parties`, one "party"
    per shadow), starting from ``model.init_params(seed)``.
    """
    k, n = y_in.shape
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise ValueError(f"need epochs >= 1, batch_size >= 1 and lr > 0, got {epochs}, {batch_size}, {lr}")
    w0 = model.init_params(seed)
    result = train_parties(
        model,
        np.asarray(x_in, np.float32).reshape(k * n, -1),
        np.asarray(y_in, np.int64).reshape(k * n),
        np.arange(k + 1, dtype=np.int64) * n,
        np.arange(k, dtype=np.int64),
        w0,
        LocalSpec(epochs=int(epochs), batch_size=int(batch_size), lr=float(lr)),
        seed,
        0,
    )
    return w0[None, :] + result.deltas


def shadow_model_attack(
    model: Model,
    params: np.ndarray,
    x_members: np.ndarray,
    y_members: np.ndarray,
    x_nonmembers: np.ndarray,
    y_nonmembers: np.ndarray,
    x_shadow: np.ndarray,
    y_shadow: np.ndarray,
    *,
    shadow_models: int = 4,
    epochs: int = 30,
    batch_size: int = 32,
    lr: float = 0.1,
    seed: int = 0,
) -> AttackScore:
    """Shokri et al. 2017 against ``params``, scored on the given members and non-members.

    The attacker's own data ``(x_shadow, y_shadow)`` must be disjoint from the pairs being
    scored. It is shuffled and cut into ``shadow_models`` disjoint equal pieces; each piece is
    halved into the shadow's training set ("in") and its held-out set ("out"). A logistic
    regression learns in-vs-out from :func:`attack_features` of every shadow and then scores
    the target model's outputs on the members and non-members.
    """
    k = int(shadow_models)
    if k < 1:
        raise ValueError(f"shadow_models must be >= 1, got {shadow_models}")
    per_shadow = len(y_shadow) // k
    half = per_shadow // 2
    if half < 1:
        raise ValueError(
            f"the shadow pool has {len(y_shadow)} examples, too few for {k} shadow models "
            f"(each needs at least 2); pass fewer shadow_models or more non-members"
        )
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _SHADOW_PURPOSE]))
    order = rng.permutation(len(y_shadow))[: k * 2 * half].reshape(k, 2, half)
    x_shadow, y_shadow = np.asarray(x_shadow, np.float32), np.asarray(y_shadow, np.int64)
    x_in, y_in = x_shadow[order[:, 0]], y_shadow[order[:, 0]]
    x_out, y_out = x_shadow[order[:, 1]], y_shadow[order[:, 1]]
    shadows = train_shadow_models(model, x_in, y_in, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)

    features, labels = [], []
    for i in range(k):
        for xs, ys, member in ((x_in[i], y_in[i], True), (x_out[i], y_out[i], False)):
            features.append(attack_features(log_probs(model, shadows[i], xs), ys))
            labels.append(np.full(len(ys), member))
    attack = make_pipeline(StandardScaler(), SkLogisticRegression(max_iter=2000))
    attack.fit(np.concatenate(features), np.concatenate(labels))

    target_features = np.concatenate(
        [
            attack_features(log_probs(model, params, x_members), y_members),
            attack_features(log_probs(model, params, x_nonmembers), y_nonmembers),
        ]
    )
    scores = attack.predict_proba(target_features)[:, 1]
    is_member = np.r_[np.ones(len(y_members), bool), np.zeros(len(y_nonmembers), bool)]
    return AttackScore(attack_auc(scores, is_member), attack_advantage(scores, is_member), len(y_members))


def membership_audit(
    model: Model,
    params: np.ndarray,
    x_members: np.ndarray,
    y_members: np.ndarray,
    x_nonmembers: np.ndarray,
    y_nonmembers: np.ndarray,
    seed: int,
    shadow_models: int = 4,
    *,
    max_examples: int | None = None,
    shadow_epochs: int = 30,
    shadow_batch_size: int = 32,
    shadow_lr: float = 0.1,
) -> dict[str, Any]:
    """Run both attacks on a trained model with balanced, seeded samples of members and non-members.

    Parameters
    ----------
    model, params : the target model and its ``[dim]`` parameter vector.
    x_members, y_members : examples the model was trained on.
    x_nonmembers, y_nonmembers : examples from the same distribution it never saw.
    seed : every sample and shadow model derives from it.
    shadow_models : number of shadow models for the Shokri et al. attack.
    max_examples : cap on members scored (and as many non-members), and on the shadow attack's
        own data; ``None`` uses all that can be balanced.
    shadow_epochs, shadow_batch_size, shadow_lr : the SGD recipe of the shadow models; the
        attack is strongest when it mimics how the target was trained.

    Returns
    -------
    dict with ``loss_auc``, ``loss_advantage``, ``loss_pairs`` (loss-threshold attack, scored on
    ``min(#members, #non-members, max_examples)`` of each) and ``shadow_auc``,
    ``shadow_advantage``, ``shadow_pairs`` (shadow attack). The shadow attack takes half of the
    non-members (seeded) as the attacker's own data and is scored on the other half against as
    many members, so its shadow data never overlap the pairs it is scored on.
    """
    n_members, n_nonmembers = len(y_members), len(y_nonmembers)
    if len(x_members) != n_members or len(x_nonmembers) != n_nonmembers:
        raise ValueError("x and y must have the same number of rows, for members and for non-members")
    if n_members < 1 or n_nonmembers < 2:
        raise ValueError(f"need at least 1 member and 2 non-members, got {n_members} and {n_nonmembers}")
    if max_examples is not None and max_examples < 1:
        raise ValueError(f"max_examples must be None or >= 1, got {max_examples}")
    cap = n_members if max_examples is None else min(n_members, int(max_examples))
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _SAMPLE_PURPOSE]))
    member_order = rng.permutation(n_members)
    nonmember_order = rng.permutation(n_nonmembers)

    n_loss = min(cap, n_nonmembers)
    m, n = member_order[:n_loss], nonmember_order[:n_loss]
    loss = loss_threshold_attack(model, params, x_members[m], y_members[m], x_nonmembers[n], y_nonmembers[n])

    pool, held_out = nonmember_order[: n_nonmembers // 2], nonmember_order[n_nonmembers // 2 :]
    if max_examples is not None:
        pool = pool[: int(max_examples)]
    n_shadow = min(cap, len(held_out))
    m, n = member_order[:n_shadow], held_out[:n_shadow]
    shadow = shadow_model_attack(
        model,
        params,
        x_members[m],
        y_members[m],
        x_nonmembers[n],
        y_nonmembers[n],
        x_nonmembers[pool],
        y_nonmembers[pool],
        shadow_models=shadow_models,
        epochs=shadow_epochs,
        batch_size=shadow_batch_size,
        lr=shadow_lr,
        seed=seed,
    )
    return {
        "loss_auc": loss.auc,
        "loss_advantage": loss.advantage,
        "loss_pairs": loss.pairs,
        "shadow_auc": shadow.auc,
        "shadow_advantage": shadow.advantage,
        "shadow_pairs": shadow.pairs,
    }
