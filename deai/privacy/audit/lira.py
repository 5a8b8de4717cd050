"""The likelihood-ratio membership attack (LiRA; Carlini, Chien, Nasr, Song, Terzis and Tramèr 2022,
"Membership Inference Attacks From First Principles"), at the level DP-FedAvg protects: whole clients.

The attacker trains ``K`` models, each on a random half of a pool of clients, so every client is in
about half of them. For each example it fits a Gaussian to the model's logit-scaled confidence
``phi = log(p_y / (1 - p_y))`` over the models that trained on its client and another over those that
did not; a target model's score for a client is the sum, over the client's examples, of the log
likelihood ratio ``log N(phi; mu_in, s_in^2) - log N(phi; mu_out, s_out^2)``. With few shadow models
the variances are global (the paper's fixed-variance variant, its Section VI). Each model is attacked in
turn with the others as its shadows (leave-one-out), and the scores of all (model, client) pairs are
pooled into an ROC curve: AUC and, the paper's headline, TPR at a low false-positive rate.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from deai.privacy.audit.membership import attack_auc


def logit_confidence(log_p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``log p_y - log(1 - p_y)`` from ``[rows, classes]`` log-probabilities, computed stably."""
    log_p = np.asarray(log_p, dtype=np.float64)
    rows = np.arange(len(y))
    own = log_p[rows, y]
    others = log_p.copy()
    others[rows, y] = -np.inf
    return own - logsumexp(others, axis=1)


def lira_scores(phi: np.ndarray, member: np.ndarray, client_of_example: np.ndarray) -> np.ndarray:
    """``[K, clients]`` LiRA scores: model ``k`` attacked with the other ``K - 1`` as shadows.

    ``phi`` is ``[K, examples]``; ``member[k, c]`` says whether model ``k`` trained on client ``c``;
    ``client_of_example[e]`` is the client that owns example ``e``.
    """
    phi = np.asarray(phi, dtype=np.float64)
    member = np.asarray(member, dtype=bool)
    owner = np.asarray(client_of_example, dtype=np.int64)
    k_models, clients = member.shape
    if phi.shape[0] != k_models or phi.shape[1] != len(owner):
        raise ValueError(f"phi must be [K={k_models}, examples={len(owner)}], got {phi.shape}")
    if k_models < 3:
        raise ValueError("LiRA needs at least 3 models (each attacked with the others as shadows)")
    inside = member[:, owner]  # [K, E]
    sum_in, n_in = (phi * inside).sum(0), inside.sum(0)
    sum_out, n_out = (phi * ~inside).sum(0), (~inside).sum(0)
    scores = np.zeros((k_models, clients))
    for k in range(k_models):
        own_in = inside[k]
        m_in = (sum_in - phi[k] * own_in) / np.maximum(n_in - own_in, 1)
        m_out = (sum_out - phi[k] * ~own_in) / np.maximum(n_out - ~own_in, 1)
        shadows = np.delete(np.arange(k_models), k)
        res_in = (phi[shadows] - m_in)[inside[shadows]]
        res_out = (phi[shadows] - m_out)[~inside[shadows]]
        v_in, v_out = max(res_in.var(), 1e-12), max(res_out.var(), 1e-12)
        x = phi[k]
        llr = -0.5 * ((x - m_in) ** 2 / v_in - (x - m_out) ** 2 / v_out) - 0.5 * np.log(v_in / v_out)
        scores[k] = np.bincount(owner, weights=llr, minlength=clients)
    return scores


def tpr_at_fpr(scores: np.ndarray, is_member: np.ndarray, fpr: float = 0.01) -> float:
    """The fraction of members flagged at the threshold that flags at most ``fpr`` of non-members."""
    s, m = np.asarray(scores, dtype=np.float64).ravel(), np.asarray(is_member, dtype=bool).ravel()
    negatives = np.sort(s[~m])[::-1]
    allowed = int(np.floor(fpr * len(negatives)))
    threshold = negatives[allowed] if allowed < len(negatives) else -np.inf
    return float((s[m] > threshold).mean())


def lira_metrics(phi: np.ndarray, member: np.ndarray, client_of_example: np.ndarray) -> dict[str, float]:
    """Pooled AUC and TPR at 1% and 0.1% FPR over every (model, client) pair."""
    scores = lira_scores(phi, member, client_of_example)
    return {
        "auc": attack_auc(scores.ravel(), np.asarray(member).ravel()),
        "tpr_at_1pct_fpr": tpr_at_fpr(scores, member, 0.01),
        "tpr_at_0.1pct_fpr": tpr_at_fpr(scores, member, 0.001),
        "pairs": int(np.asarray(member).size),
    }
