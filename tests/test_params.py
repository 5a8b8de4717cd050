import numpy as np
import pytest

from deai.params import Layout, flatten, load_params, params_hash, save_params, unflatten


def _tensors():
    rng = np.random.default_rng(0)
    return {
        "W": rng.normal(size=(4, 3)).astype(np.float32),
        "b": rng.normal(size=3).astype(np.float32),
        "scalar": np.float32(2.5),
    }


def test_flatten_unflatten_round_trip_is_lossless():
    tensors = _tensors()
    vec, layout = flatten(tensors)
    assert vec.dtype == np.float32 and vec.shape == (4 * 3 + 3 + 1,)
    back = unflatten(vec, layout)
    assert list(back) == ["W", "b", "scalar"]
    for k, v in tensors.items():
        np.testing.assert_array_equal(back[k], v)


def test_layout_view_is_a_view_and_batches():
    vec, layout = flatten(_tensors())
    layout.view(vec, "b")[0] = 99.0
    assert vec[12] == 99.0
    batch = np.stack([vec, vec * 2])
    assert layout.view(batch, "W").shape == (2, 4, 3)


def test_hash_is_stable_and_sensitive():
    vec, layout = flatten(_tensors())
    h = params_hash(vec, layout)
    assert h == params_hash(vec.copy(), Layout.from_json(layout.to_json()))
    changed = vec.copy()
    changed[0] = np.nextafter(changed[0], np.float32(np.inf))
    assert params_hash(changed, layout) != h
    renamed = Layout.from_shapes({"W2": (4, 3), "b": (3,), "scalar": ()})
    assert params_hash(vec, renamed) != h


def test_save_load_round_trip(tmp_path):
    vec, layout = flatten(_tensors())
    save_params(tmp_path / "p.npz", vec, layout, extra=np.arange(3))
    v2, l2, extra = load_params(tmp_path / "p.npz")
    np.testing.assert_array_equal(v2, vec)
    assert l2 == layout
    np.testing.assert_array_equal(extra["extra"], np.arange(3))
    assert not list(tmp_path.glob("*.tmp"))


def test_unflatten_rejects_wrong_length():
    vec, layout = flatten(_tensors())
    with pytest.raises(ValueError, match="layout expects"):
        unflatten(vec[:-1], layout)
