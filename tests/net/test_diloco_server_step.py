"""DiLoCo's outer step is a configuration of the server optimizer: SGD with Nesterov momentum."""

import numpy as np

import deai
from deai.config import parse_config
from deai.optim import ServerSGD


def test_nesterov_matches_torch_sgds_formula_step_by_step():
    import torch

    rng = np.random.default_rng(0)
    x = rng.normal(size=7).astype(np.float32)
    opt = ServerSGD(lr=0.7, momentum=0.9, nesterov=True)
    state = opt.init(7)
    w = torch.tensor(x.copy(), requires_grad=True)
    ref = torch.optim.SGD([w], lr=0.7, momentum=0.9, nesterov=True)
    for _ in range(4):
        delta = rng.normal(size=7).astype(np.float32)
        x, state = opt.step(x, delta, state)
        w.grad = torch.tensor(-delta)  # the outer "gradient" is minus the averaged delta
        ref.step()
        np.testing.assert_allclose(x, w.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_a_diloco_configured_run_trains():
    outer = {"server_lr": 0.7, "server_momentum": 0.9, "server_nesterov": True}
    cfg = parse_config(
        {
            "run": {"rounds": 8, "seed": 1},
            "data": {"dataset": "digits", "num_parties": 8},
            "strategy": {"lr": 0.1, "local_epochs": 5, **outer},
        }
    )
    assert deai.run(cfg, write=False).final_accuracy > 0.85
