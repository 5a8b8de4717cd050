"""Proof-of-learning for compute jobs (Jia et al. 2021, "Proof-of-Learning: Definitions and Practice").

**Where it applies.** Re-executing training needs the training data, so this is for a *compute job*: a
provider trains on data it was given (a dataset the task owner shares with the compute provider, or
public data), and must show it did the work it is paid for. It does not apply to a data owner's private
data, which no verifier may see; there, commit–reveal and valuation are the checks.

**The proof.** The job fixes the model, the starting weights, the rows, the learning rate, the number of
steps and the seed; the batch of each step is drawn from a keyed stream (:func:`batch_indices`), so
anyone can recompute it. Every ``k`` steps the provider records the SHA-256 of its weights (a
checkpoint); the proof is the list of checkpoint hashes, committed with the result. The provider keeps
the checkpoints themselves and must hand over the ones the verifier asks for.

**Verification.** The verifier picks ``segments`` of the ``steps / k`` segments at random (keyed by a
seed the provider does not know in advance), asks for the checkpoint at each one's start, checks its hash
against the proof, re-executes the ``k`` steps, and compares the hash of the result with the proof's next
entry. NumPy training is bitwise reproducible here (deai's keyed RNG, fixed operation order), so the
tolerance is zero: any difference is a failure. Cost: ``segments / (steps / k)`` of the training.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deai.rng import Purpose, generator


@dataclass(frozen=True)
class Job:
    """A compute job: train ``model`` from ``params`` on ``(x, y)`` for ``steps`` SGD steps."""

    model: Any
    params: np.ndarray
    x: np.ndarray
    y: np.ndarray
    steps: int
    batch_size: int = 32
    lr: float = 0.1
    seed: int = 0
    every: int = 10  # steps per checkpoint (k)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.every < 1 or self.steps % self.every:
            raise ValueError(f"steps ({self.steps}) must be a positive multiple of every ({self.every})")


def weights_hash(w: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(w, dtype="<f4").tobytes()).hexdigest()


def batch_indices(job: Job, step: int) -> np.ndarray:
    """The rows of step ``step``: a keyed draw anyone holding the job can repeat."""
    return generator(job.seed, step, Purpose.PERMUTE, 0x504F4C).choice(
        len(job.y), job.batch_size, replace=False
    )


def sgd_step(job: Job, w: np.ndarray, step: int) -> np.ndarray:
    idx = batch_indices(job, step)
    xb, yb = job.x[idx][None], job.y[idx][None]
    _, grad = job.model.loss_grad(w[None, :], xb, yb, np.ones((1, len(idx)), dtype=np.float32))
    return (w - np.float32(job.lr) * grad[0]).astype(np.float32)


def run_segment(job: Job, w: np.ndarray, segment: int) -> np.ndarray:
    """The ``job.every`` steps of segment ``segment`` from weights ``w``."""
    for step in range(segment * job.every, (segment + 1) * job.every):
        w = sgd_step(job, w, step)
    return w


@dataclass
class Proof:
    """What a provider submits: the checkpoint hashes (entry 0 is the start) and the final weights; it
    also keeps the checkpoints, to reveal those the verifier asks for."""

    hashes: list[str]
    final: np.ndarray
    checkpoints: list[np.ndarray] = field(repr=False, default_factory=list)

    def reveal(self, index: int) -> np.ndarray:
        return self.checkpoints[index]


def honest_training(job: Job) -> Proof:
    w = np.array(job.params, dtype=np.float32, copy=True)
    checkpoints = [w]
    for segment in range(job.steps // job.every):
        w = run_segment(job, w, segment)
        checkpoints.append(w)
    return Proof([weights_hash(c) for c in checkpoints], w, checkpoints)


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    checked: list[int]  # the segments re-executed
    failed: int | None  # the first segment that did not reproduce, if any
    reason: str
    steps_rerun: int


def verify_proof(job: Job, proof: Proof, segments: int, seed: int) -> Verdict:
    """Re-execute ``segments`` randomly chosen segments (keyed by ``seed``) with zero tolerance."""
    total = job.steps // job.every
    if len(proof.hashes) != total + 1:
        return Verdict(
            False, [], None, f"the proof has {len(proof.hashes)} hashes, the job needs {total + 1}", 0
        )
    if proof.hashes[0] != weights_hash(job.params):
        return Verdict(False, [], 0, "the proof does not start from the job's weights", 0)
    if proof.hashes[-1] != weights_hash(proof.final):
        return Verdict(False, [], total - 1, "the final weights are not the proof's last checkpoint", 0)
    chosen = sorted(
        generator(seed, 0, Purpose.PERMUTE, 0x564552).choice(total, min(segments, total), replace=False)
    )
    rerun = 0
    for s in chosen:
        start = proof.reveal(int(s))
        if weights_hash(start) != proof.hashes[s]:
            return Verdict(
                False,
                chosen,
                int(s),
                f"the checkpoint revealed for segment {s} is not the one committed",
                rerun,
            )
        rerun += job.every
        if weights_hash(run_segment(job, start, int(s))) != proof.hashes[s + 1]:
            return Verdict(False, chosen, int(s), f"segment {s} does not reproduce", rerun)
    return Verdict(True, chosen, None, "every checked segment reproduced bit for bit", rerun)


# -- spoofing strategies (what a lazy provider might submit instead of doing the job) --------------------

Spoofer = Callable[[Job, np.random.Generator, Proof], Proof]


def _proof_of(checkpoints: list[np.ndarray]) -> Proof:
    return Proof([weights_hash(c) for c in checkpoints], checkpoints[-1], checkpoints)


def _interpolated(start: np.ndarray, end: np.ndarray, n: int) -> list[np.ndarray]:
    return [(start + (end - start) * (i / n)).astype(np.float32) for i in range(n + 1)]


def fabricated_update(job: Job, rng: np.random.Generator, honest: Proof) -> Proof:
    """A random update of the honest update's norm, with checkpoints interpolated to it."""
    norm = float(np.linalg.norm(honest.final - job.params))
    direction = rng.normal(size=job.params.shape).astype(np.float32)
    end = job.params + norm * direction / np.linalg.norm(direction)
    return _proof_of(_interpolated(job.params, end, job.steps // job.every))


def scaled_copy(job: Job, rng: np.random.Generator, honest: Proof) -> Proof:
    """Another provider's proof of a related job (other rows), its update scaled, checkpoints interpolated."""
    other = Job(job.model, job.params, job.x[::-1].copy(), job.y[::-1].copy(), job.steps, job.batch_size,
                job.lr, job.seed + 1, job.every)  # fmt: skip
    theirs = honest_training(other)
    scale = float(rng.uniform(0.8, 1.2))
    end = job.params + scale * (theirs.final - job.params)
    return _proof_of(_interpolated(job.params, end, job.steps // job.every))


def fewer_steps(job: Job, rng: np.random.Generator, honest: Proof) -> Proof:
    """Train only every other segment for real; fake the rest by carrying the weights over unchanged."""
    w = np.array(job.params, dtype=np.float32, copy=True)
    checkpoints = [w]
    for segment in range(job.steps // job.every):
        if segment % 2 == 0:
            w = run_segment(job, w, segment)
        checkpoints.append(w)
    return _proof_of(checkpoints)


def other_data(job: Job, rng: np.random.Generator, honest: Proof) -> Proof:
    """Train the right number of steps, but on rows of its own choosing (cheaper, or poisoned)."""
    rows = rng.permutation(len(job.y))[: max(job.batch_size, len(job.y) // 4)]
    cheap = Job(job.model, job.params, job.x[rows], job.y[rows], job.steps, job.batch_size, job.lr,
                job.seed, job.every)  # fmt: skip
    return honest_training(cheap)


SPOOFERS: dict[str, Spoofer] = {
    "fabricated update of the right norm": fabricated_update,
    "another provider's update, scaled": scaled_copy,
    "half the steps claimed": fewer_steps,
    "other data": other_data,
}
