"""The round loop, the only one in deai: open a round, dispatch, accept what arrives, release, publish.

The same loop drives the simulator (an in-process transport) and, with another transport, real nodes;
everything a round does is in the server program, the party program, or a subscriber.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from deai.messages import RoundRecord
from deai.server.program import ServerProgram
from deai.transport.base import Transport

Subscriber = Callable[[RoundRecord], None]


def drive(
    server: ServerProgram, transport: Transport, rounds: int, subscribers: Iterable[Subscriber] = ()
) -> None:
    """Run rounds until ``server.state.round == rounds`` or the server stops the run (budget, divergence).

    Subscribers receive every released :class:`RoundRecord` in order; a round that does not count
    (the privacy budget or a diverged model ended the run) publishes nothing.
    """
    subscribers = list(subscribers)
    while server.state.round < rounds:
        task = server.open_round()
        if task is None:
            return
        # Overflow in a diverging party's arithmetic is expected and handled (validation rejects the update,
        # the run stops as diverged); NumPy's warnings would only bury that message.
        with np.errstate(over="ignore", invalid="ignore"):
            transport.dispatch(task)
            for item in transport.collect():
                server.accept(item)
                if server.ready():
                    break
            record = server.release()
        if record is None:
            return
        for notify in subscribers:
            notify(record)
