import numpy as np

from deai.engine.api import run
from deai.engine.participation import party_speeds, plan_round
from tests.conftest import make_config


def _plan(**kw):
    args = dict(fraction=None, count=None, dropout_rate=0.0, deadline=None, straggler_policy="drop")
    args.update(kw)
    n = 1000
    return plan_round(0, 1, n, np.full(n, 10), party_speeds(0, n, 0.5), **args)


def test_count_and_fraction_sample_that_many_distinct_parties():
    assert len(np.unique(_plan(count=37).sampled)) == 37
    assert len(_plan(fraction=0.25).sampled) == 250


def test_dropout_rate_is_respected_statistically():
    plan = _plan(dropout_rate=0.3)
    # binomial(1000, 0.3): sd ~14.5, so +-5 sd
    assert abs(plan.dropped - 300) < 73
    assert plan.dropped + len(plan.participants) == 1000


def test_deadline_drop_removes_exactly_the_slow_parties():
    speeds = party_speeds(0, 1000, 0.5)
    plan = _plan(deadline=10.0)
    fast = np.flatnonzero(10 / speeds <= 10.0)
    np.testing.assert_array_equal(plan.participants, fast)
    assert plan.stragglers == 1000 - len(fast)


def test_deadline_partial_caps_steps_at_what_each_party_finishes():
    speeds = party_speeds(0, 1000, 0.5)
    plan = _plan(deadline=5.0, straggler_policy="partial")
    expected = np.minimum(10, np.floor(5.0 * speeds[plan.participants]))
    np.testing.assert_array_equal(plan.step_budget, expected)
    assert plan.step_budget.min() >= 1


def test_stragglers_and_dropouts_show_in_metrics_and_training_still_converges():
    r = run(
        make_config(
            run={"rounds": 15},
            data={"num_parties": 30},
            participation={
                "fraction": 0.5,
                "dropout_rate": 0.2,
                "deadline": 2.0,
                "speed_sigma": 0.7,
                "straggler_policy": "partial",
            },
            strategy={"algorithm": "fednova"},
        ),
        write=False,
    )
    assert all(m["sampled"] == 15 for m in r.history)
    assert sum(m["dropped"] for m in r.history) > 0 and sum(m["stragglers"] for m in r.history) > 0
    assert r.final_accuracy > 0.85
