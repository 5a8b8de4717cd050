"""Same seed, same result on every backend."""

import numpy as np
import pytest

from deai.engine.api import run
from tests.conftest import make_config

CFG = dict(
    run={"rounds": 3},
    data={"num_parties": 12, "partition": "dirichlet", "alpha": 0.5},
    participation={"fraction": 0.75, "dropout_rate": 0.1},
    strategy={"algorithm": "scaffold", "lr": 0.3},
)


def _run(backend):
    cfg = make_config(**CFG)
    cfg["run"] = {**cfg["run"], "backend": backend, "workers": 2}
    return run(cfg, write=False)


@pytest.mark.slow
def test_processes_backend_agrees_with_vectorized():
    a, b = _run("vectorized"), _run("processes")
    np.testing.assert_allclose(a.params, b.params, rtol=1e-6, atol=1e-7)
    assert [m["participants"] for m in a.history] == [m["participants"] for m in b.history]


@pytest.mark.slow
def test_ray_backend_agrees_with_vectorized():
    pytest.importorskip("ray", reason="the ray extra is not installed")
    a, b = _run("vectorized"), _run("ray")
    np.testing.assert_allclose(a.params, b.params, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_secure_aggregation_gives_the_same_model_on_the_process_backend():
    cfg = make_config(**CFG)
    cfg["strategy"] = {
        **cfg["strategy"],
        "algorithm": "fedavg",
        "aggregator": "secagg",
        "aggregator_options": {"clip": 2.0},
    }
    vec = run(cfg, write=False)
    cfg["run"] = {**cfg["run"], "backend": "processes", "workers": 2}
    proc = run(cfg, write=False)
    np.testing.assert_allclose(vec.params, proc.params, atol=1e-6)
    plain = make_config(**CFG)
    plain["strategy"] = {**plain["strategy"], "algorithm": "fedavg"}
    np.testing.assert_allclose(vec.params, run(plain, write=False).params, atol=1e-4)
