"""The server side: selection, acceptance and release of each round; it reads no party's data."""

from deai.server.program import ServerProgram
from deai.server.registry import PartyRegistry, key_id
from deai.train.scaffold import ServerControl

__all__ = ["PartyRegistry", "ServerControl", "ServerProgram", "key_id"]
