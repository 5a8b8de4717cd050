"""Transports carry :class:`~deai.messages.TrainTask` out and update batches back.

In-process (the simulator: one batched party-program call for every selected party) lives here; gRPC and
hivemind transports come with real nodes.
"""

from deai.transport.base import Transport
from deai.transport.inprocess import InProcessTransport, SimulatedClock

__all__ = ["InProcessTransport", "SimulatedClock", "Transport"]
