"""Example-level DP-SGD through Opacus: each party trains its PyTorch model with Opacus' DP-SGD.

Opacus trains one ``nn.Module`` at a time, so this backend loops over the round's parties (the
vectorized trainer's own per-example clipping, :class:`deai.privacy.dp.dpsgd.ExampleLevelDPSGD`,
is the fast path for every model kind; this one is for users who want Opacus' implementation,
Poisson-sampled batches included). Selected with ``privacy.example_dp_engine = "opacus"``.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from deai.models.torch_adapter import TorchModel
from deai.party.backends import TrainJob
from deai.privacy.dp.opacus_trainer import opacus_local_train
from deai.rng import Purpose, key
from deai.train import LocalResult


class OpacusBackend:
    name = "opacus"

    def __init__(
        self,
        model: TorchModel,
        x: np.ndarray,
        y: np.ndarray,
        offsets: np.ndarray,
        noise_multiplier: float,
        clip: float,
    ) -> None:
        if not isinstance(model, TorchModel):
            raise TypeError("privacy.example_dp_engine 'opacus' needs a PyTorch model (model.kind = 'cnn')")
        self.model, self.x, self.y, self.offsets = model, x, y, offsets
        self.noise_multiplier, self.clip = noise_multiplier, clip

    def _module_at(self, vector: np.ndarray) -> torch.nn.Module:
        module = copy.deepcopy(self.model._module)
        with torch.no_grad():
            for e in self.model.layout.entries:
                param = dict(module.named_parameters())[e.name]
                param.copy_(torch.from_numpy(vector[e.offset : e.offset + e.size].reshape(e.shape)))
        return module

    def train(self, job: TrainJob) -> LocalResult:
        shape = self.model.input_shape
        deltas, steps = [], []
        rng_ids = job.party_ids if job.rng_ids is None else job.rng_ids
        for p, rid in zip(job.party_ids, rng_ids, strict=True):
            lo, hi = self.offsets[p], self.offsets[p + 1]
            x = self.x[lo:hi] if shape is None else self.x[lo:hi].reshape(-1, *shape)
            seed = int(key(job.seed, job.round, Purpose.NOISE, int(rid)) % np.uint64(2**31))
            params, n_steps = opacus_local_train(
                self._module_at(job.w_global),
                x,
                self.y[lo:hi],
                job.spec.epochs,
                job.spec.batch_size,
                job.spec.lr,
                self.noise_multiplier,
                self.clip,
                seed,
            )
            deltas.append(params - job.w_global)
            steps.append(n_steps)
        return LocalResult(
            deltas=np.stack(deltas).astype(np.float32),
            steps=np.asarray(steps, dtype=np.int64),
            train_loss=np.full(len(deltas), np.nan, dtype=np.float32),
        )

    def close(self) -> None:
        pass
