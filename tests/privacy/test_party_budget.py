"""Finding 7 of the privacy review: each data owner keeps and enforces its own epsilon budget."""

from __future__ import annotations

import numpy as np
import pytest
from dp_accounting import dp_event, rdp

from deai.config import ConfigError
from deai.engine.api import run
from deai.party.budget import PartyBudget
from tests.conftest import make_config


def reference_epsilon(z: float, rounds: int, delta: float) -> float:
    """Google's RDP accountant directly: ``rounds`` Gaussian mechanisms, no sampling."""
    acc = rdp.RdpAccountant()
    acc.compose(dp_event.SelfComposedDpEvent(dp_event.GaussianDpEvent(z), rounds))
    return acc.get_epsilon(delta)


def test_the_round_limit_is_the_last_round_within_budget_by_the_reference_accountant():
    budget = PartyBudget(4.0, 1.5, 1e-5)
    k = budget.max_rounds
    assert k >= 1
    assert reference_epsilon(1.5, k, 1e-5) <= 4.0 < reference_epsilon(1.5, k + 1, 1e-5)
    assert budget.spent(k) == pytest.approx(reference_epsilon(1.5, k, 1e-5), rel=1e-6)
    np.testing.assert_array_equal(budget.refuses(np.array([0, k - 1, k, k + 3])), [False, False, True, True])
    assert PartyBudget(0.01, 0.5, 1e-5).max_rounds == 0  # even one round is too much


def test_parties_decline_rounds_past_their_budget_whatever_the_server_asks():
    # every party is asked every round (q = 1); the task runs 8 rounds, the parties allow far fewer
    z, cap = 2.0, 4.5
    limit = PartyBudget(cap, z, 1e-5).max_rounds
    assert 2 <= limit < 8
    cfg = make_config(
        run={"rounds": 8},
        data={"num_parties": 10},
        privacy={"mode": "central", "noise_multiplier": z, "party_budget_epsilon": cap},
    )
    r = run(cfg, write=False)
    participants = [m["participants"] for m in r.history]
    assert participants[:limit] == [10] * limit and set(participants[limit:]) == {0}
    privacy = r.summary()["privacy"]
    assert privacy["party_max_rounds"] == limit
    assert privacy["party_epsilon_max"] <= cap
    assert privacy["party_epsilon_max"] == pytest.approx(reference_epsilon(z, limit, 1e-5), rel=1e-6)


def test_a_party_budget_without_dp_is_refused():
    with pytest.raises(ConfigError, match="party_budget_epsilon"):
        run(make_config(privacy={"party_budget_epsilon": 1.0}), write=False)
