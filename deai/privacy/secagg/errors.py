"""Exceptions raised by the secure-aggregation protocol."""

from __future__ import annotations


class SecAggError(RuntimeError):
    """The protocol cannot continue safely (too few shares, a protocol violation, ...)."""


class MalformedMessageError(SecAggError):
    """A message does not parse or does not match what the protocol expects at this step."""


class AuthenticationError(SecAggError):
    """A ciphertext or signature failed authentication; ``sender`` names the party it claims to be from."""

    def __init__(self, message: str, *, sender: int, recipient: int | None = None) -> None:
        super().__init__(message)
        self.sender = sender
        self.recipient = recipient


class PartyAbort(SecAggError):
    """A party leaves the session because the server's message would weaken its guarantees.

    The party sends nothing more; the server sees it as dropped out (and the round fails if too few remain).
    """
