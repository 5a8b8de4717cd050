"""The server side: selection, acceptance and release of each round; it reads no party's data."""

from deai.server.program import ServerControl, ServerProgram

__all__ = ["ServerControl", "ServerProgram"]
