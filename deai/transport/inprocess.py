"""The simulator's transport: one batched party-program call for all selected parties, on simulated clocks.

Who answers and when comes from a :class:`SimulatedClock` (per-party speeds, dropouts, the task's
deadline), so stragglers and partial work behave as over a network, while every party that reports is
trained in a single vectorized call: that is what keeps deai's simulator fast.

Synchronous rounds deliver everything of the open round, arrival times relative to its start. In
asynchronous mode (FedBuff) work stays in flight across releases: each dispatched party trains at once
on the model it was sent, its update waits in a queue until its simulated arrival time, and ``collect``
yields updates one by one in arrival order (``arrival`` is then the absolute simulated clock).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping

import numpy as np

from deai.engine.participation import simulate_arrivals
from deai.evaluation import EvalCounts
from deai.messages import Failure, TrainTask, UpdateBatch
from deai.party.budget import REFUSED
from deai.party.private import WithheldUpdates
from deai.party.program import PartyProgram
from deai.privacy.dp.mechanisms import RingNoise


class SimulatedClock:
    """Per-party speed (steps per unit of simulated time) and dropout rate, fixed for the run."""

    def __init__(self, seed: int, speeds: np.ndarray, planned_steps: np.ndarray, dropout_rate: float) -> None:
        self.seed, self.speeds, self.planned, self.dropout_rate = seed, speeds, planned_steps, dropout_rate


#: Parties trained per batched call in a synchronous round. Bounds the round's working memory (a chunk's
#: weights, gradients and deltas) at a million parties. Each party's update does not depend on it (each
#: trains on its own keyed streams, whoever shares its call); a streamed mean of several chunks differs
#: from one matrix product by float rounding only.
CHUNK_PARTIES = 65536


class InProcessTransport:
    def __init__(
        self,
        party: PartyProgram,
        clock: SimulatedClock,
        *,
        asynchronous: bool = False,
        chunk_parties: int = CHUNK_PARTIES,
        ring_noise: RingNoise | None = None,
    ) -> None:
        if chunk_parties < 1:
            raise ValueError(f"chunk_parties must be at least 1; got {chunk_parties}")
        self.party, self.clock, self.asynchronous = party, clock, asynchronous
        self.chunk_parties = chunk_parties
        self._pending: list[UpdateBatch | Failure] = []
        self._work: list[tuple[TrainTask, np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]] = []
        self.now = 0.0  # asynchronous mode: the simulated clock, at the last delivered arrival
        self._queue: list[tuple[float, int, UpdateBatch]] = []  # (arrival, sequence, one-row batch)
        self._sequence = 0
        self.withheld = WithheldUpdates(ring_noise)  # parties' own updates under a private sum

    def dispatch(self, task: TrainTask) -> None:
        c = self.clock
        a = simulate_arrivals(
            c.seed,
            task.round,
            task.party_ids,
            c.planned,
            c.speeds,
            dropout_rate=c.dropout_rate,
            deadline=task.deadline,
            straggler_policy=task.straggler_policy,
        )
        out: list[UpdateBatch | Failure] = []
        self.withheld.clear()
        if len(a.dropped):
            out.append(Failure(a.dropped, "dropout"))
        if len(a.late):
            out.append(Failure(a.late, "deadline"))
        declined = self.party.declines(a.parties)
        if len(declined):  # each party enforces its own privacy budget, whatever the server asked
            out.append(Failure(declined, REFUSED))
            keep = ~np.isin(a.parties, declined)
            a.parties, a.times, a.cut_short = a.parties[keep], a.times[keep], a.cut_short[keep]
            a.step_budget = None if a.step_budget is None else a.step_budget[keep]
        self._work = []
        if len(a.parties) and self.asynchronous:
            # each party trains now on the model it was sent; its update waits for its arrival time
            batch = self.party.train(task, a.parties, a.step_budget)
            for i, t in enumerate(self.now + a.times):
                row = batch.take(np.array([i]))
                row.arrival = np.array([t])
                heapq.heappush(self._queue, (float(t), self._sequence, row))
                self._sequence += 1
        elif len(a.parties):
            # trained lazily, chunk by chunk, as the server collects (streaming rules fold each and drop it)
            for s in range(0, len(a.parties), self.chunk_parties):
                part = slice(s, s + self.chunk_parties)
                budget = None if a.step_budget is None else a.step_budget[part]
                self._work.append((task, a.parties[part], budget, a.times[part], a.cut_short[part]))
        self._pending = out

    def collect(self) -> Iterator[UpdateBatch | Failure]:
        pending, self._pending = self._pending, []
        yield from pending
        work, self._work = self._work, []
        for task, parties, budget, times, cut_short in work:
            batch = self.party.train(task, parties, budget)
            if task.deadline is not None:
                batch.metrics["cut_short"] = cut_short
            batch.arrival = times
            if task.withhold:
                batch, unusable = self.withheld.hold(batch)
                for reason, ids in unusable.items():
                    yield Failure(ids, reason)
            yield batch
        while self.asynchronous and self._queue:
            t, _, row = heapq.heappop(self._queue)
            self.now = t
            yield row

    def exchange(self, kind: str, messages: Mapping[int, bytes]) -> dict[int, bytes]:
        return self.withheld.answer(kind, messages)

    def evaluate(self, params: np.ndarray) -> EvalCounts:
        return self.party.evaluate(params)

    def close(self) -> None:
        self.party.close()
