"""What every way of running a task shares: its server program driven by the one round loop.

:class:`~deai.engine.simulation.Simulation` (in-process parties) and
:class:`~deai.net.aggregator_node.NetworkFederation` (party nodes over a network) differ only in their
transport and in who holds the parties; the run itself, its record stream and its stop reasons are here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deai.config import ExperimentConfig
from deai.engine.driver import Subscriber, drive
from deai.messages import RoundRecord
from deai.server import ServerProgram


@dataclass
class SimulationState:
    """A view of the server's state and the run's metrics history (what ``deai.run`` reports)."""

    server: ServerProgram
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def round(self) -> int:
        return self.server.state.round

    @property
    def params(self) -> np.ndarray:
        return self.server.state.params

    @property
    def wall_time_s(self) -> float:
        return self.server.state.wall_time_s


class Federation:
    """A task's server program and transport; subclasses build them."""

    cfg: ExperimentConfig
    server: ServerProgram
    transport: Any
    state: SimulationState

    def observers(self) -> list[Subscriber]:
        """Subscribers of the record stream that come with this way of running (before the caller's)."""
        return []

    @property
    def stopped(self) -> str | None:
        return self.server.stopped

    @property
    def diverged(self) -> bool:
        return self.server.diverged

    def close(self) -> None:
        self.transport.close()

    def run(
        self,
        on_round: Callable[[dict[str, Any]], None] | None = None,
        on_record: Callable[[RoundRecord], None] | None = None,
    ) -> None:
        """Drive the rounds; ``on_record`` subscribes to the record stream (in-process, each record carries
        the round's accepted batch), ``on_round`` receives each metrics line."""

        def record_metrics(record: RoundRecord) -> None:
            self.state.history.append(record.metrics)
            if on_round is not None:
                on_round(record.metrics)

        subscribers = [*self.observers(), *([on_record] if on_record is not None else []), record_metrics]
        try:
            drive(self.server, self.transport, self.cfg.run.rounds, subscribers)
            if self.server.stopped is not None:
                self._evaluate_last()
        finally:
            self.close()

    def _evaluate_last(self) -> None:
        """A run that stops early still reports the accuracy of the last released model."""
        if self.state.history and "accuracy" not in self.state.history[-1]:
            self.state.history[-1].update(self.server.evaluator(self.state.params))
