"""Every robust rule honours the aggregator contract: shapes, dtypes, validation, names, checkpoints."""

import numpy as np
import pytest

import deai.aggregate.robust._common as common
from deai.aggregate.base import RoundContext
from deai.aggregate.robust import RULES, make_robust

PARTIES, DIM = 11, 16

# Constructor arguments that make every rule valid for an 11-party round.
KWARGS = {
    "median": {},
    "trimmed_mean": {"trim_fraction": 0.2},
    "krum": {"num_byzantine": 2},
    "multi_krum": {"num_byzantine": 2},
    "bulyan": {"num_byzantine": 2},
    "geometric_median": {},
    "centered_clipping": {"clip_radius": 1.0},
    "norm_bound": {"max_norm": 2.0},
    "fltrust": {"server_update": lambda ctx: np.ones(DIM, np.float32)},
    "foolsgold": {"num_parties": 20},
    "reputation": {"num_parties": 20},
    "dnc": {"num_byzantine": 2},
    "flame": {},
    "signguard": {},
    "recommended": {},
    "root_guided": {"server_update": lambda ctx: np.ones(DIM, np.float32)},
}
STATEFUL = ["centered_clipping", "foolsgold", "reputation"]


def _round(seed=0, parties=PARTIES, rnd=1):
    rng = np.random.default_rng(seed)
    updates = (rng.standard_normal((parties, DIM)) + 0.5).astype(np.float32)
    weights = rng.integers(1, 100, parties).astype(np.float64)
    ctx = RoundContext(round=rnd, party_ids=np.arange(parties) + 3, steps=np.ones(parties, np.int64))
    return updates, weights, ctx


def test_rules_are_registered_under_their_names():
    assert sorted(RULES) == sorted(KWARGS)
    for name, cls in RULES.items():
        assert cls.name == name


@pytest.mark.parametrize("name", sorted(KWARGS))
def test_rule_returns_a_float32_vector_of_dim(name):
    updates, weights, ctx = _round()
    got = make_robust(name, **KWARGS[name])(updates, weights, ctx)
    assert got.dtype == np.float32 and got.shape == (DIM,) and np.isfinite(got).all()


@pytest.mark.parametrize("name", sorted(KWARGS))
def test_float64_input_gives_the_float32_answer(name):
    updates, weights, ctx = _round()
    want = make_robust(name, **KWARGS[name])(updates, weights, ctx)
    got = make_robust(name, **KWARGS[name])(updates.astype(np.float64), weights, _round()[2])
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", sorted(KWARGS))
def test_no_updates_is_a_clear_error(name):
    ctx = RoundContext(round=1, party_ids=np.zeros(0, np.int64), steps=np.zeros(0, np.int64))
    with pytest.raises(ValueError, match="updates has 0 rows"):
        make_robust(name, **KWARGS[name])(np.zeros((0, DIM), np.float32), np.zeros(0), ctx)


@pytest.mark.parametrize("name", sorted(KWARGS))
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_update_is_rejected_naming_row_and_party(name, bad):
    updates, weights, ctx = _round()
    updates[4, 7] = bad
    with pytest.raises(ValueError, match=r"updates must be finite: rows \[4\] \(party ids \[7\]\)"):
        make_robust(name, **KWARGS[name])(updates, weights, ctx)


@pytest.mark.parametrize("name", sorted(KWARGS))
def test_weights_of_the_wrong_shape_are_rejected(name):
    updates, weights, ctx = _round()
    with pytest.raises(ValueError, match="weights must have one entry per party"):
        make_robust(name, **KWARGS[name])(updates, weights[:-1], ctx)


@pytest.mark.parametrize(
    ("name", "kwargs", "parameter"),
    [
        ("trimmed_mean", {"trim_fraction": 0.5}, "trim_fraction"),
        ("krum", {"num_byzantine": -1}, "num_byzantine"),
        ("multi_krum", {"num_byzantine": 1, "num_selected": 0}, "num_selected"),
        ("bulyan", {"num_byzantine": 1.5}, "num_byzantine"),
        ("geometric_median", {"smoothing": 0.0}, "smoothing"),
        ("geometric_median", {"max_iter": 0}, "max_iter"),
        ("centered_clipping", {"clip_radius": float("inf")}, "clip_radius"),
        ("norm_bound", {"max_norm": -1.0}, "max_norm"),
        ("fltrust", {"server_update": np.ones(3)}, "server_update"),
        ("root_guided", {"server_update": np.ones(3)}, "server_update"),
        ("foolsgold", {"num_parties": 0}, "num_parties"),
        ("reputation", {"num_parties": 5, "decay": 1.0}, "decay"),
        ("reputation", {"num_parties": 5, "initial_reputation": 2.0}, "initial_reputation"),
    ],
)
def test_invalid_parameter_is_named_in_the_error(name, kwargs, parameter):
    with pytest.raises(ValueError, match=parameter):
        make_robust(name, **kwargs)


def test_unknown_rule_lists_the_allowed_names():
    with pytest.raises(ValueError, match="unknown robust aggregator 'krumm'.*krum, multi_krum"):
        make_robust("krumm")


@pytest.mark.parametrize("name", ["foolsgold", "reputation"])
def test_party_ids_outside_the_federation_are_rejected(name):
    updates, weights, ctx = _round()
    ctx.party_ids = ctx.party_ids + 10  # ids up to 23 with num_parties=20
    with pytest.raises(ValueError, match=r"party_ids must lie in \[0, num_parties=20\)"):
        make_robust(name, **KWARGS[name])(updates, weights, ctx)


@pytest.mark.parametrize("name", STATEFUL)
def test_state_round_trip_resumes_identically(name):
    original = make_robust(name, **KWARGS[name])
    for rnd in (1, 2):
        original(*_round(seed=rnd, rnd=rnd))
    resumed = make_robust(name, **KWARGS[name])
    resumed.load(original.state())
    for key, value in original.state().items():
        np.testing.assert_array_equal(resumed.state()[key], value)
    np.testing.assert_array_equal(resumed(*_round(seed=3, rnd=3)), original(*_round(seed=3, rnd=3)))


@pytest.mark.parametrize("name", ["foolsgold", "reputation"])
def test_rejected_round_leaves_the_state_untouched(name):
    rule = make_robust(name, **KWARGS[name])
    rule(*_round(seed=1))
    before = rule.state()
    updates, weights, ctx = _round(seed=2, rnd=2)
    updates[0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        rule(updates, weights, ctx)
    for key, value in before.items():
        np.testing.assert_array_equal(rule.state()[key], value)


@pytest.mark.parametrize("name", sorted(KWARGS))
def test_results_do_not_depend_on_the_number_of_threads(name, monkeypatch):
    rng = np.random.default_rng(5)
    updates = (rng.standard_normal((PARTIES, 40_000)) + 0.1).astype(np.float32)  # several column blocks
    weights = rng.integers(1, 100, PARTIES).astype(np.float64)
    kwargs = dict(KWARGS[name])
    if name in ("fltrust", "root_guided"):
        kwargs["server_update"] = lambda ctx: np.full(40_000, 0.1, np.float32)
    results = []
    for threads in (1, 3):
        monkeypatch.setattr(common, "_workers", lambda tasks, threads=threads: min(threads, tasks))
        ctx = RoundContext(round=1, party_ids=np.arange(PARTIES), steps=np.ones(PARTIES, np.int64))
        results.append(make_robust(name, **kwargs)(updates, weights, ctx))
    np.testing.assert_array_equal(results[0], results[1])
