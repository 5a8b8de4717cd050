"""The transport contract between the server program and wherever the parties are."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

import numpy as np

from deai.evaluation import EvalCounts
from deai.messages import Failure, TrainTask, UpdateBatch


class Transport(Protocol):
    def dispatch(self, task: TrainTask) -> None:
        """Send ``task`` to ``task.party_ids``; returns at once."""
        ...

    def collect(self) -> Iterator[UpdateBatch | Failure]:
        """What has come back for the open round, batch by batch, in arrival order; ends when nothing more
        will come (every asked party answered, failed, or missed the task's deadline)."""
        ...

    def exchange(self, kind: str, messages: Mapping[int, bytes]) -> dict[int, bytes]:
        """One phase of a private sum (SecAgg+ stage, HE encryption request): deliver each party its
        message, return the replies that came back (a party that dropped sends none)."""
        ...

    def evaluate(self, params: np.ndarray) -> EvalCounts:
        """Federated evaluation: the parties' summed counts of ``params`` on their own held-out rows."""
        ...

    def close(self) -> None: ...
