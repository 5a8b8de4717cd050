"""Ed25519 identities for parties, the aggregator, validators and the task owner.

A key pair comes from the operating system's entropy (``cryptography``'s generator), never from the run's
seed: anyone holding a config could otherwise re-derive the keys and forge a ledger. An identity's id is
the first 16 bytes of SHA-256 of its raw public key, in hex, so it names the key and nothing else. Key
files are PKCS#8 PEM, encrypted with a passphrase when one is given, written atomically with mode 0600.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from deai.report.artifacts import atomic_write_bytes

ROLES = ("owner", "aggregator", "validator", "party")


class KeyFileError(ValueError):
    """A key file that is missing, damaged, not Ed25519, or locked with another passphrase."""


def key_id(public_key: bytes) -> str:
    """The id of a raw 32-byte Ed25519 public key: hex of the first 16 bytes of its SHA-256."""
    return hashlib.sha256(public_key).digest()[:16].hex()


def verify_signature(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """True when ``signature`` is ``public_key``'s Ed25519 signature of ``message``; never raises on junk."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


@dataclass(frozen=True)
class Identity:
    """A role and its Ed25519 private key; ``public_key`` is the raw 32 bytes, ``id`` its :func:`key_id`."""

    role: str
    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls, role: str) -> Identity:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}; got {role!r}")
        return cls(role, Ed25519PrivateKey.generate())

    @property
    def public_key(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def id(self) -> str:
        return key_id(self.public_key)

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)

    def save(self, path: Path, passphrase: str | None = None) -> None:
        """Write the private key as PKCS#8 PEM (encrypted if ``passphrase``), mode 0600, atomically."""
        encryption = (
            serialization.BestAvailableEncryption(passphrase.encode())
            if passphrase
            else serialization.NoEncryption()
        )
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
        header = f"# deai {self.role} key {self.id}\n".encode()
        atomic_write_bytes(Path(path), header + pem, mode=0o600)

    @classmethod
    def load(cls, path: Path, passphrase: str | None = None) -> Identity:
        """Read a key file written by :meth:`save`; a :class:`KeyFileError` says what is wrong with it."""
        path = Path(path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise KeyFileError(f"key file {path} does not exist; make one with `deai keygen`") from None
        except OSError as err:
            raise KeyFileError(f"key file {path} cannot be read: {err.strerror}") from None
        first, _, pem = raw.partition(b"\n")
        parts = first.decode(errors="replace").split()
        if len(parts) != 5 or parts[:2] != ["#", "deai"] or parts[2] not in ROLES or parts[3] != "key":
            raise KeyFileError(f"{path} is not a deai key file (its first line names no role and id)")
        try:
            key = serialization.load_pem_private_key(pem, passphrase.encode() if passphrase else None)
        except TypeError:
            if passphrase:
                raise KeyFileError(f"{path} is not encrypted: load it without a passphrase") from None
            raise KeyFileError(f"{path} is encrypted: give its passphrase") from None
        except ValueError:
            raise KeyFileError(f"{path}: wrong passphrase, or the key is damaged") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
        identity = cls(parts[2], key)
        if identity.id != parts[4]:
            raise KeyFileError(f"{path}: the key does not match the id {parts[4]} in its header")
        return identity
