"""The round loop, its backends, and the run/resume entry points."""

from deai.engine.api import Result, resume, run
from deai.engine.simulation import Simulation

__all__ = ["Result", "Simulation", "resume", "run"]
