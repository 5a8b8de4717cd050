"""Where local training runs: one batched call, a local process pool, or Ray.

Every backend trains the same parties with the same per-party keys and returns the same
:class:`~deai.train.LocalResult`; the parallel ones just split the parties into chunks.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from deai.models.base import Model
from deai.train import LocalResult, LocalSpec, train_parties


@dataclass
class TrainJob:
    party_ids: np.ndarray
    w_global: np.ndarray
    spec: LocalSpec
    seed: int
    round: int
    step_budget: np.ndarray | None = None
    correction: np.ndarray | None = None
    # the parties' global ids, which key their random streams, when ``party_ids`` are local row indices
    rng_ids: np.ndarray | None = None


class Backend(Protocol):
    name: str

    def train(self, job: TrainJob) -> LocalResult: ...

    def close(self) -> None: ...


class VectorizedBackend:
    """All parties of the round in one batched call (the default)."""

    name = "vectorized"

    def __init__(self, model: Model, x: np.ndarray, y: np.ndarray, offsets: np.ndarray) -> None:
        self.model, self.x, self.y, self.offsets = model, x, y, offsets

    def train(self, job: TrainJob) -> LocalResult:
        return train_parties(
            self.model,
            self.x,
            self.y,
            self.offsets,
            job.party_ids,
            job.w_global,
            job.spec,
            job.seed,
            job.round,
            job.step_budget,
            job.correction,
            job.rng_ids,
        )

    def close(self) -> None:
        pass


def _chunks(job: TrainJob, n: int) -> list[TrainJob]:
    parts = np.array_split(np.arange(len(job.party_ids)), min(n, max(1, len(job.party_ids))))
    return [
        TrainJob(
            job.party_ids[p],
            job.w_global,
            job.spec,
            job.seed,
            job.round,
            None if job.step_budget is None else job.step_budget[p],
            None if job.correction is None else job.correction[p],
            None if job.rng_ids is None else job.rng_ids[p],
        )
        for p in parts
        if len(p)
    ]


def _merge(results: list[LocalResult]) -> LocalResult:
    return LocalResult(
        deltas=np.concatenate([r.deltas for r in results]),
        steps=np.concatenate([r.steps for r in results]),
        train_loss=np.concatenate([r.train_loss for r in results]),
    )


_WORKER_STATE: tuple[Any, ...] | None = None


def _worker_init(state: tuple[Any, ...]) -> None:
    global _WORKER_STATE
    _WORKER_STATE = state


def _worker_train(job: TrainJob) -> LocalResult:
    assert _WORKER_STATE is not None, "worker used before initialisation"
    model, x, y, offsets = _WORKER_STATE
    return VectorizedBackend(model, x, y, offsets).train(job)


class ProcessPoolBackend:
    """A local pool of worker processes, each training a chunk of the round's parties.

    Workers are forked once per run and keep the data; each round ships only the global vector
    and the chunk's party ids.
    """

    name = "processes"

    def __init__(self, model: Model, x: np.ndarray, y: np.ndarray, offsets: np.ndarray, workers: int) -> None:
        self.workers = workers
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        self.pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context(method),
            initializer=_worker_init,
            initargs=((model, x, y, offsets),),
        )

    def train(self, job: TrainJob) -> LocalResult:
        return _merge(list(self.pool.map(_worker_train, _chunks(job, self.workers))))

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class RayBackend:
    """Ray tasks over chunks of parties; the data are put in the object store once per run."""

    name = "ray"

    def __init__(self, model: Model, x: np.ndarray, y: np.ndarray, offsets: np.ndarray, workers: int) -> None:
        try:
            import ray
        except ImportError as err:  # pragma: no cover - depends on the extra
            raise RuntimeError("backend 'ray' needs Ray: pip install 'deai[ray]'") from err
        self.ray, self.workers = ray, workers
        self._own_ray = not ray.is_initialized()
        if self._own_ray:
            os.environ.setdefault("RAY_DEDUP_LOGS", "0")
            ray.init(
                num_cpus=workers,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
                ignore_reinit_error=True,
            )
        self.state_ref = ray.put((model, x, y, offsets))
        self._remote = ray.remote(_ray_train)

    def train(self, job: TrainJob) -> LocalResult:
        refs = [self._remote.remote(self.state_ref, chunk) for chunk in _chunks(job, self.workers)]
        return _merge(self.ray.get(refs))

    def close(self) -> None:
        if self._own_ray:
            self.ray.shutdown()


def _ray_train(state: tuple[Any, ...], job: TrainJob) -> LocalResult:
    model, x, y, offsets = state
    return VectorizedBackend(model, x, y, offsets).train(job)


def make_backend(
    name: str,
    model: Model,
    x: np.ndarray,
    y: np.ndarray,
    offsets: np.ndarray,
    workers: int,
    example_dp: tuple[float, float] | None = None,
) -> Backend:
    """The backend ``name``; ``"opacus"`` trains each party with Opacus, ``example_dp = (z, clip)``."""
    if name == "vectorized":
        return VectorizedBackend(model, x, y, offsets)
    if name == "processes":
        return ProcessPoolBackend(model, x, y, offsets, workers)
    if name == "ray":
        return RayBackend(model, x, y, offsets, workers)
    if name == "opacus":
        from deai.party.opacus_backend import OpacusBackend

        if example_dp is None:
            raise ValueError("backend 'opacus' needs example_dp = (noise_multiplier, clip_norm)")
        return OpacusBackend(model, x, y, offsets, *example_dp)
    raise ValueError(f"unknown backend {name!r}; use vectorized, processes or ray")
