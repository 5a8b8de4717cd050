import numpy as np
from scipy import stats

from deai.rng import Purpose, key, party_normal, party_permutations, party_uniform


def test_party_stream_does_not_depend_on_who_else_is_drawn():
    k = key(0, 3, Purpose.PERMUTE)
    alone = party_uniform(k, np.array([7]), 50)
    together = party_uniform(k, np.array([1, 7, 9000]), 50)
    np.testing.assert_array_equal(alone[0], together[1])


def test_permutations_are_permutations_of_each_party_size():
    sizes = np.array([1, 5, 17, 3])
    perms = party_permutations(key(1, 1, Purpose.PERMUTE), np.arange(4), sizes)
    for p, n in enumerate(sizes):
        assert sorted(perms[p, :n]) == list(range(n))


def test_uniforms_pass_kolmogorov_smirnov_and_normals_have_unit_moments():
    u = party_uniform(key(2, 0, Purpose.NOISE), np.arange(100), 1000).ravel()
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    z = party_normal(key(2, 0, Purpose.NOISE), np.arange(100), 1000).ravel()
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02
    assert stats.kstest(z, "norm").pvalue > 1e-3


def test_different_rounds_give_different_streams():
    a = party_uniform(key(0, 1, Purpose.DROPOUT), np.arange(10))
    b = party_uniform(key(0, 2, Purpose.DROPOUT), np.arange(10))
    assert not np.array_equal(a, b)
