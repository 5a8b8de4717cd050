"""Attacks that need no knowledge of other parties: label flipping, sign flipping, Gaussian noise, backdoor,
free riders and sybils, each checked against its definition."""

import numpy as np
import pytest

from deai.attacks import RoundContext, apply_trigger, backdoor_success_rate, make_attack

C = 10


def _ctx(p, malicious_rows, seed=0, round_=1):
    malicious = np.zeros(p, dtype=bool)
    malicious[list(malicious_rows)] = True
    return RoundContext(
        seed=seed,
        round=round_,
        party_ids=np.arange(p) * 3,
        malicious=malicious,
        global_params=np.zeros(1, np.float32),
        weights=np.ones(p),
        num_classes=C,
    )


def _updates(p, dim, seed=0):
    return np.random.default_rng(seed).standard_normal((p, dim)).astype(np.float32)


def _images(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, 64)) * 0.8).astype(np.float32), rng.integers(0, C, n).astype(np.int64)


# label flipping


def test_label_flip_maps_y_to_c_minus_1_minus_y():
    x, y = _images()
    x_out, y_out = make_attack("label_flip").poison_data(x, y, C, (1, 8, 8), seed=0)
    np.testing.assert_array_equal(y_out, [C - 1 - v for v in y])
    assert y_out.dtype == y.dtype
    np.testing.assert_array_equal(x_out, x)


def test_label_flip_targeted_changes_only_the_source_class():
    x, y = _images()
    _, y_out = make_attack("label_flip", source_label=3, target_label=8).poison_data(x, y, C, None, 0)
    np.testing.assert_array_equal(y_out, np.where(y == 3, 8, y))


def test_label_flip_needs_both_or_neither_label():
    with pytest.raises(ValueError, match="together"):
        make_attack("label_flip", source_label=3)


def test_label_flip_sends_updates_as_trained():
    u = _updates(5, 7)
    np.testing.assert_array_equal(make_attack("label_flip").craft(u, _ctx(5, [1, 2])), u)


# sign flipping and Gaussian noise


def test_sign_flip_is_minus_the_own_update():
    u, ctx = _updates(6, 9), _ctx(6, [0, 5])
    np.testing.assert_array_equal(make_attack("sign_flip").craft(u, ctx)[ctx.malicious], -u[ctx.malicious])
    scaled = make_attack("sign_flip", scale=3.0).craft(u, ctx)[ctx.malicious]
    np.testing.assert_allclose(scaled, -3.0 * u[ctx.malicious], rtol=1e-6)


def test_gaussian_rows_have_the_requested_std_and_no_mean():
    u, ctx = _updates(4, 20000), _ctx(4, [1, 3])
    rows = make_attack("gaussian", sigma=0.5).craft(u, ctx)[ctx.malicious]
    np.testing.assert_allclose(rows.std(axis=1), 0.5, rtol=0.03)
    np.testing.assert_allclose(rows.mean(axis=1), 0.0, atol=0.02)
    assert abs(np.corrcoef(rows)[0, 1]) < 0.05  # independent per party


def test_gaussian_relative_noise_has_sigma_times_the_own_norm():
    u, ctx = _updates(4, 20000), _ctx(4, [1, 3])
    u[1] *= 0.01
    rows = make_attack("gaussian", sigma=2.0, relative=True).craft(u, ctx)[ctx.malicious]
    np.testing.assert_allclose(
        np.linalg.norm(rows, axis=1), 2.0 * np.linalg.norm(u[ctx.malicious], axis=1), rtol=0.03
    )


# free riders and sybils


def test_free_rider_zero_sends_zero():
    u, ctx = _updates(5, 30), _ctx(5, [2])
    assert not make_attack("free_rider").craft(u, ctx)[2].any()


def test_free_rider_noise_has_norm_noise_std_sqrt_dim():
    u, ctx = _updates(5, 10000), _ctx(5, [0, 2])
    rows = make_attack("free_rider", mode="noise", noise_std=1e-3).craft(u, ctx)[ctx.malicious]
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1e-3 * np.sqrt(10000), rtol=0.03)


def test_sybil_rows_are_identical_copies_of_the_first_malicious_update():
    u, ctx = _updates(7, 12), _ctx(7, [2, 4, 5])
    out = make_attack("sybil").craft(u, ctx)
    for row in (2, 4, 5):
        np.testing.assert_array_equal(out[row], u[2])
    flipped = make_attack("sybil", mode="flip").craft(u, ctx)
    for row in (2, 4, 5):
        np.testing.assert_array_equal(flipped[row], -u[2])


def test_sybil_noise_separates_the_identities_slightly():
    u, ctx = _updates(7, 5000), _ctx(7, [2, 4, 5])
    out = make_attack("sybil", noise_std=1e-2).craft(u, ctx)
    gap = np.linalg.norm(out[4] - out[5])
    assert gap == pytest.approx(1e-2 * np.sqrt(2 * 5000), rel=0.05)


def test_sybil_can_flip_labels():
    x, y = _images()
    _, y_out = make_attack("sybil", flip_labels=True).poison_data(x, y, C, None, 0)
    np.testing.assert_array_equal(y_out, C - 1 - y)
    assert make_attack("sybil").poison_data(x, y, C, None, 0)[1] is y


# backdoor


def _has_patch(x, value):
    return (x.reshape(-1, 8, 8)[:, -3:, -3:] == value).all(axis=(1, 2))


def test_backdoor_poisons_the_requested_fraction_with_trigger_and_target():
    x, y = _images(n=41)
    attack = make_attack("backdoor", target_label=7, poison_fraction=0.25)
    x_out, y_out = attack.poison_data(x, y, C, (1, 8, 8), seed=3)
    changed = (x_out != x).any(axis=1)
    value = x.max()
    assert changed.sum() == round(0.25 * 41)
    assert _has_patch(x_out[changed], value).all()
    assert (y_out[changed] == 7).all()
    np.testing.assert_array_equal(y_out[~changed], y[~changed])
    np.testing.assert_array_equal(x_out[~changed], x[~changed])
    outside = np.ones((8, 8), dtype=bool)
    outside[-3:, -3:] = False
    np.testing.assert_array_equal(x_out.reshape(-1, 8, 8)[:, outside], x.reshape(-1, 8, 8)[:, outside])


def test_backdoor_rows_depend_on_the_seed_only():
    x, y = _images(n=60)
    attack = make_attack("backdoor")
    a = attack.poison_data(x, y, C, (1, 8, 8), seed=1)[1]
    assert np.array_equal(a, attack.poison_data(x, y, C, (1, 8, 8), seed=1)[1])
    assert not np.array_equal(a, attack.poison_data(x, y, C, (1, 8, 8), seed=2)[1])


def test_tabular_trigger_is_a_fixed_feature_pattern():
    x = np.zeros((3, 6), np.float32)
    np.testing.assert_array_equal(apply_trigger(x, None, trigger_value=2.5)[:, 3:], 2.5)
    assert not apply_trigger(x, None, trigger_value=2.5)[:, :3].any()


def test_success_rate_is_one_for_a_backdoored_predictor_and_zero_for_a_clean_one():
    x, y = _images(n=50)
    value = float(x.max())
    target = 2

    def backdoored(rows):
        return np.where(_has_patch(rows, value), target, (target + 1) % C)

    def clean(rows):
        return np.full(len(rows), (target + 1) % C)

    assert backdoor_success_rate(backdoored, x, y, target, (1, 8, 8), trigger_value=value) == 1.0
    assert backdoor_success_rate(clean, x, y, target, (1, 8, 8), trigger_value=value) == 0.0


def test_success_rate_counts_only_rows_of_other_classes():
    x, y = _images(n=50)
    seen = []

    def record(rows):
        seen.append(len(rows))
        return np.zeros((len(rows), C))  # scores: argmax is class 0, the target

    assert backdoor_success_rate(record, x, y, 0, (1, 8, 8)) == 1.0
    assert seen == [int((y != 0).sum())]


def test_backdoor_boost_defaults_to_parties_over_malicious():
    u, ctx = _updates(8, 10), _ctx(8, [1, 6])
    out = make_attack("backdoor").craft(u, ctx)
    np.testing.assert_allclose(out[ctx.malicious], 4.0 * u[ctx.malicious], rtol=1e-6)
    out = make_attack("backdoor", boost=2.0).craft(u, ctx)
    np.testing.assert_allclose(out[ctx.malicious], 2.0 * u[ctx.malicious], rtol=1e-6)
