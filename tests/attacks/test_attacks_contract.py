"""Every attack honours the contract: honest rows untouched, float32 out, input not mutated, reproducible in
(seed, round), per-party randomness, and the edge cases of no and only malicious rows."""

import numpy as np
import pytest

from deai.attacks import ATTACKS, RoundContext, choose_malicious, make_attack

P, DIM = 8, 40
OPTIONS = {"free_rider": {"mode": "noise"}, "sybil": {"noise_std": 0.01}}
RANDOMIZED = ["gaussian", "free_rider", "sybil"]


def _round(seed=0, round_=3, malicious=None, party_ids=None):
    rng = np.random.default_rng(123)
    updates = (rng.standard_normal(DIM) + 0.3 * rng.standard_normal((P, DIM))).astype(np.float32)
    if malicious is None:
        malicious = np.zeros(P, dtype=bool)
        malicious[[1, 4, 6]] = True
    ctx = RoundContext(
        seed=seed,
        round=round_,
        party_ids=np.arange(100, 100 + P) if party_ids is None else party_ids,
        malicious=malicious,
        global_params=np.zeros(DIM, np.float32),
        weights=np.full(P, 20.0),
        num_classes=10,
    )
    # the defence the adaptive attack is tailored to: a coordinate-wise median, probed without state
    ctx.extra["defence"] = lambda u, w: np.median(u, axis=0)
    return updates, ctx


def _attack(name):
    return make_attack(name, **OPTIONS.get(name, {}))


@pytest.mark.parametrize("name", ATTACKS)
def test_honest_rows_unchanged_and_input_not_mutated(name):
    updates, ctx = _round()
    before = updates.copy()
    out = _attack(name).craft(updates, ctx)
    assert out.dtype == np.float32 and out.shape == updates.shape
    assert out is not updates
    np.testing.assert_array_equal(updates, before)
    np.testing.assert_array_equal(out[~ctx.malicious], updates[~ctx.malicious])
    assert np.isfinite(out).all()


# label_flip poisons data, not rows; a copier has nothing to copy in its first round (see test_copier.py)
@pytest.mark.parametrize("name", [n for n in ATTACKS if n not in ("label_flip", "copier")])
def test_malicious_rows_are_replaced(name):
    updates, ctx = _round()
    out = _attack(name).craft(updates, ctx)
    assert not np.array_equal(out[ctx.malicious], updates[ctx.malicious])


@pytest.mark.parametrize("name", ATTACKS)
def test_round_without_malicious_rows_is_returned_unchanged(name):
    updates, ctx = _round(malicious=np.zeros(P, dtype=bool))
    out = _attack(name).craft(updates, ctx)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, updates)


@pytest.mark.parametrize("name", ATTACKS)
def test_all_malicious_round_gives_finite_float32_rows(name):
    updates, ctx = _round(malicious=np.ones(P, dtype=bool))
    out = _attack(name).craft(updates, ctx)
    assert out.dtype == np.float32 and out.shape == updates.shape and np.isfinite(out).all()


@pytest.mark.parametrize("name", ATTACKS)
def test_float64_input_gives_float32_output(name):
    updates, ctx = _round()
    out = _attack(name).craft(updates.astype(np.float64), ctx)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, _attack(name).craft(updates, ctx))


@pytest.mark.parametrize("name", ATTACKS)
def test_deterministic_in_seed_and_round(name):
    updates, ctx = _round(seed=5, round_=2)
    again, ctx_again = _round(seed=5, round_=2)
    np.testing.assert_array_equal(_attack(name).craft(updates, ctx), _attack(name).craft(again, ctx_again))


@pytest.mark.parametrize("name", RANDOMIZED)
def test_randomness_changes_with_round_and_seed(name):
    updates, ctx = _round(seed=5, round_=2)
    base = _attack(name).craft(updates, ctx)
    for other in (_round(seed=5, round_=3)[1], _round(seed=6, round_=2)[1]):
        out = _attack(name).craft(updates, other)
        assert not np.array_equal(out[ctx.malicious], base[ctx.malicious])


@pytest.mark.parametrize("name", RANDOMIZED)
def test_a_partys_randomness_does_not_depend_on_who_else_was_sampled(name):
    # Party 104 is malicious in both rounds but sits at a different row among different parties; its
    # random part (what it sends minus the noiseless attack) must be the same.
    updates, ctx = _round(seed=9, round_=1)
    other_ids = np.array([7, 104, 55, 56, 57, 100, 58, 59])
    other_mal = np.zeros(P, dtype=bool)
    other_mal[[1, 5]] = True  # parties 104 and 100
    other_updates = updates.copy()
    other_updates[1], other_updates[5] = updates[4], updates[1]
    _, other_ctx = _round(seed=9, round_=1, malicious=other_mal, party_ids=other_ids)

    noisy = _attack(name).craft(updates, ctx)
    noisy_other = _attack(name).craft(other_updates, other_ctx)
    if name == "sybil":
        clean = make_attack("sybil").craft(updates, ctx)
        clean_other = make_attack("sybil").craft(other_updates, other_ctx)
        # the shared rows differ here, so float32 rounding of shared + noise differs by an ulp
        np.testing.assert_allclose(noisy[4] - clean[4], noisy_other[1] - clean_other[1], atol=1e-6)
    else:
        np.testing.assert_array_equal(noisy[4], noisy_other[1])


def test_bad_malicious_mask_is_rejected_with_its_name():
    updates, ctx = _round()
    ctx.malicious = np.array([1, 4])
    with pytest.raises(ValueError, match="ctx.malicious"):
        make_attack("ipm").craft(updates, ctx)


def test_registry_names_match_class_names():
    assert list(ATTACKS) == [
        "label_flip", "sign_flip", "gaussian", "alie", "ipm",
        "min_max", "min_sum", "adaptive", "backdoor", "free_rider", "sybil", "canary", "copier",
    ]  # fmt: skip
    assert all(cls.name == name for name, cls in ATTACKS.items())


def test_make_attack_unknown_name_lists_allowed_names():
    with pytest.raises(ValueError, match="unknown attack 'nope'") as err:
        make_attack("nope")
    for name in ATTACKS:
        assert name in str(err.value)


def test_make_attack_unknown_option_lists_allowed_options():
    with pytest.raises(ValueError, match="'sigma'.*its options are: epsilon"):
        make_attack("ipm", sigma=1.0)


def test_make_attack_passes_options_and_validates_values():
    assert make_attack("ipm", epsilon=0.1).epsilon == 0.1
    with pytest.raises(ValueError, match="epsilon"):
        make_attack("ipm", epsilon=-1.0)
    with pytest.raises(ValueError, match="perturbation"):
        make_attack("min_max", perturbation="bogus")


@pytest.mark.parametrize("num_parties, fraction", [(10, 0.3), (7, 0.5), (100, 0.0), (5, 1.0), (0, 0.2)])
def test_choose_malicious_picks_exactly_round_fraction_n(num_parties, fraction):
    mask = choose_malicious(num_parties, fraction, seed=1)
    assert mask.dtype == np.bool_ and mask.shape == (num_parties,)
    assert mask.sum() == round(fraction * num_parties)


def test_choose_malicious_is_seeded():
    np.testing.assert_array_equal(choose_malicious(50, 0.2, 3), choose_malicious(50, 0.2, 3))
    assert not np.array_equal(choose_malicious(50, 0.2, 3), choose_malicious(50, 0.2, 4))


def test_choose_malicious_larger_fraction_adds_parties():
    small, large = choose_malicious(40, 0.1, 7), choose_malicious(40, 0.3, 7)
    assert (large[small]).all()


def test_choose_malicious_rejects_bad_fraction():
    with pytest.raises(ValueError, match="fraction"):
        choose_malicious(10, 1.5, 0)
