"""Refereed disputes over redundant compute (the refereed delegation of Gensyn's Verde).

The same seeded job goes to ``r`` providers (:func:`settle`); each commits the hash of its weights after
every segment (:mod:`deai.incentives.proof_of_learning`), then reveals its result. When two results
differ, the job is not re-run. Both committed to the same start (the job's weights) and to different
ends, so there is a first segment where their hashes part. The referee finds it by bisection over the
two hash lists (``ceil(log2 n)`` comparisons, no computation), takes the weights both agree on just
before it (checked against both commitments), re-executes that one segment, and compares the result with
each provider's next hash. The one that does not match is the cheater (both, if neither matches) and is
slashed (on chain: :meth:`deai.verify.escrow.TaskEscrow.slash`, with the ruling's hash as evidence).

Bisection is sound because a deterministic job's trajectory, once it leaves the honest one, never comes
back to it by chance (that would be a SHA-256 collision of the weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deai.incentives.proof_of_learning import Job, Proof, run_segment, weights_hash


@dataclass(frozen=True)
class Ruling:
    """The referee's verdict: who was wrong, at which segment, and what it cost to find out."""

    diverged_at: int | None  # the first segment whose end the two providers disagree on
    liars: tuple[str, ...]  # the providers whose hash at that point the referee's re-execution contradicts
    comparisons: int  # hash comparisons made by the bisection
    segments_rerun: int  # segments the referee re-executed (0 or 1)
    reason: str


def referee(job: Job, a: tuple[str, Proof], b: tuple[str, Proof]) -> Ruling:
    """Settle a disagreement between providers ``a`` and ``b`` (``(name, proof)`` each)."""
    (name_a, pa), (name_b, pb) = a, b
    ha, hb = pa.hashes, pb.hashes
    n = job.steps // job.every
    if len(ha) != n + 1 or len(hb) != n + 1:
        short = tuple(name for name, h in ((name_a, ha), (name_b, hb)) if len(h) != n + 1)
        return Ruling(None, short, 0, 0, f"a proof of the wrong length ({n + 1} hashes needed)")
    start = weights_hash(job.params)
    wrong_start = tuple(name for name, h in ((name_a, ha), (name_b, hb)) if h[0] != start)
    if wrong_start:
        return Ruling(0, wrong_start, 0, 0, "a proof that does not start from the job's weights")
    comparisons = 1
    if ha[n] == hb[n]:
        return Ruling(None, (), comparisons, 0, "the providers agree: nothing to settle")
    lo, hi = 0, n  # invariant: they agree at lo and disagree at hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        comparisons += 1
        if ha[mid] == hb[mid]:
            lo = mid
        else:
            hi = mid
    agreed = pa.reveal(lo)
    if weights_hash(agreed) != ha[lo]:  # a provider must reveal what it committed; try the other one
        agreed = pb.reveal(lo)
        if weights_hash(agreed) != hb[lo]:
            return Ruling(
                hi - 1, (name_a, name_b), comparisons, 0, "neither revealed its committed checkpoint"
            )
    truth = weights_hash(run_segment(job, agreed, lo))
    liars = tuple(name for name, h in ((name_a, ha), (name_b, hb)) if h[hi] != truth)
    return Ruling(
        lo, liars, comparisons, 1, f"segment {lo} re-executed: {', '.join(liars) or 'no one'} wrong"
    )


def settle(job: Job, proofs: dict[str, Proof]) -> tuple[str | None, dict[str, Ruling]]:
    """Redundant execution over ``r`` providers: the result most of them committed to (by final hash) is
    the reference; every provider that disagrees with it is taken to the referee against one that agrees.
    Returns the referee-confirmed result's hash (None if the referee upheld no one) and each dispute's
    ruling; the providers a ruling names are the ones to slash."""
    counts: dict[str, list[str]] = {}
    for name, proof in proofs.items():
        counts.setdefault(proof.hashes[-1] if proof.hashes else "", []).append(name)
    majority = max(counts.values(), key=len)
    champion = majority[0]
    rulings = {
        name: referee(job, (champion, proofs[champion]), (name, proofs[name]))
        for name in proofs
        if name not in majority
    }
    if any(champion in r.liars for r in rulings.values()):
        return None, rulings  # the majority itself was wrong: no result is paid for
    return proofs[champion].hashes[-1], rulings


def with_wrong_step(job: Job, honest: Proof, segment: int, rng: np.random.Generator) -> Proof:
    """A provider that gets segment ``segment`` wrong (a skipped step, a flipped bit, a shortcut) and
    then carries on honestly from its wrong weights: every later hash differs from the honest ones."""
    checkpoints = honest.checkpoints[: segment + 1]
    w = run_segment(job, checkpoints[-1], segment)
    w = (w + rng.normal(scale=1e-4, size=w.shape)).astype(np.float32)  # the planted mistake
    checkpoints.append(w)
    for s in range(segment + 1, job.steps // job.every):
        w = run_segment(job, w, s)
        checkpoints.append(w)
    return Proof([weights_hash(c) for c in checkpoints], w, checkpoints)
