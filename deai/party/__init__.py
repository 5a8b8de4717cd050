"""The party side: what runs where the data is, reading only the data of the parties it holds."""

from deai.party.data import PartyShards
from deai.party.program import PartyProgram

__all__ = ["PartyProgram", "PartyShards"]
