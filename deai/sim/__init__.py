"""Simulation-only parts: the omniscient adversary among the parties and the ground-truth observer.

Nothing on the server side imports this package (an import-linter contract checks it): the server
learns who attacked only as a real aggregator would, from the updates themselves.
"""

from deai.sim.adversary import AdversarialParties, Adversary
from deai.sim.observer import GroundTruthObserver

__all__ = ["AdversarialParties", "Adversary", "GroundTruthObserver"]
