"""Everything deai writes as JSON is strict JSON: non-finite numbers become null."""

import json

import numpy as np
import pytest

from deai import jsonio


def test_non_finite_numbers_become_null_at_any_depth():
    value = {"a": float("nan"), "b": [1.0, float("inf"), {"c": np.float32("-inf")}], "d": np.float64(2.5)}
    text = jsonio.dumps(value)
    assert json.loads(text) == {"a": None, "b": [1.0, None, {"c": None}], "d": 2.5}
    assert "NaN" not in text and "Infinity" not in text


def test_numpy_scalars_and_arrays_become_plain_json():
    text = jsonio.dumps({"i": np.int64(3), "b": np.bool_(True), "v": np.array([1.0, np.nan]), "t": (1, 2)})
    assert json.loads(text) == {"i": 3, "b": True, "v": [1.0, None], "t": [1, 2]}


def test_objects_json_cannot_encode_still_raise():
    with pytest.raises(TypeError):
        jsonio.dumps({"x": object()})
