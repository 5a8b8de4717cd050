"""CKKS parameters and contexts for additively homomorphic aggregation (TenSEAL over Microsoft SEAL).

CKKS: Cheon, Kim, Kim and Song, "Homomorphic Encryption for Arithmetic of Approximate Numbers"
(ASIACRYPT 2017). A ciphertext packs ``poly_modulus_degree / 2`` real numbers (slots), each held as
a fixed-point integer ``round(x * scale)`` plus a small noise; adding ciphertexts adds the slots.

Choosing parameters
-------------------
- ``poly_modulus_degree`` N fixes the slot count (N/2) and, with the total coefficient-modulus size
  ``log q = sum(coeff_mod_bit_sizes)``, the security: the Homomorphic Encryption Security Standard
  (Albrecht et al., HomomorphicEncryption.org, 2018, Table 1, ternary secret, classical attacks)
  allows ``log q <= 218`` bits at N = 8192 for 128-bit security (152 for 192-bit, 118 for 256-bit).
  Doubling N doubles the slots, roughly doubles the allowed ``log q`` and doubles every cost.
- ``scale`` (2^40) is the fixed-point precision: encoding rounding plus encryption noise leave an
  absolute error of about 1e-8 per slot per ciphertext (measured: at most 7e-8 after summing 100
  fresh ciphertexts of values in [-1, 1]). A larger scale buys precision but needs a larger first
  prime to keep integer headroom, so more modulus bits (less security) or a larger N (more cost).
- ``coeff_mod_bit_sizes``: the last prime is SEAL's special (key-switching) prime; the others are the
  data primes a fresh ciphertext carries. Decryption is correct while every slot of the sum stays
  below ``2^(sum(data primes) - log2(scale) - 1)`` in magnitude (:attr:`CKKSParams.max_abs_value`).
  Each middle prime (40 bits = the scale) is one rescaling level, i.e. one multiplication.

The default ``[60, 40, 40, 60]`` (200 bits, 128-bit secure) is TenSEAL's customary chain with two
multiplication levels. Summation needs none: :meth:`CKKSParams.additive` (``[60, 60]``, 120 bits,
192-bit secure, integer headroom 2^19) makes ciphertexts 2.5x smaller (8x float32 instead of 20x)
and encryption, summation and decryption 2-3x faster with the same precision.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import tenseal as ts
import tenseal.sealapi  # noqa: F401  (registers seal::Modulus so parameters can be read back)

# Largest total coefficient-modulus size (bits) per poly_modulus_degree for each security level:
# HE Security Standard (2018), Table 1, uniform ternary secret, classical cost model.
MAX_COEFF_BITS: dict[int, dict[int, int]] = {
    128: {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881},
    192: {1024: 19, 2048: 37, 4096: 75, 8192: 152, 16384: 305, 32768: 611},
    256: {1024: 14, 2048: 29, 4096: 58, 8192: 118, 16384: 237, 32768: 476},
}
FINGERPRINT_BYTES = 16


@dataclass(frozen=True)
class CKKSParams:
    """Validated CKKS parameters; see the module docstring for the trade-offs.

    Parameters
    ----------
    poly_modulus_degree : N, a power of two in [1024, 32768]; a ciphertext holds N/2 slots.
    coeff_mod_bit_sizes : bit sizes of the coefficient-modulus primes, each in [20, 60]; at least two
        (data primes, then the special prime). Their sum must meet 128-bit security for N.
    scale_bits : log2 of the global scale; below the first prime's size so sums keep integer headroom.
    """

    poly_modulus_degree: int = 8192
    coeff_mod_bit_sizes: tuple[int, ...] = (60, 40, 40, 60)
    scale_bits: int = 40

    def __post_init__(self) -> None:
        n = self.poly_modulus_degree
        if n not in MAX_COEFF_BITS[128]:
            raise ValueError(f"poly_modulus_degree must be one of {sorted(MAX_COEFF_BITS[128])}; got {n}")
        bits = tuple(int(b) for b in self.coeff_mod_bit_sizes)
        object.__setattr__(self, "coeff_mod_bit_sizes", bits)
        if len(bits) < 2 or not all(20 <= b <= 60 for b in bits):
            raise ValueError(
                "coeff_mod_bit_sizes needs at least two primes (data primes, then the special prime), "
                f"each of 20 to 60 bits; got {list(bits)}"
            )
        if sum(bits) > MAX_COEFF_BITS[128][n]:
            raise ValueError(
                f"coeff_mod_bit_sizes sum to {sum(bits)} bits, above the {MAX_COEFF_BITS[128][n]} bits "
                f"that give 128-bit security at poly_modulus_degree={n}; use fewer or smaller primes "
                "or a larger poly_modulus_degree"
            )
        if not 20 <= self.scale_bits < bits[0]:
            raise ValueError(
                f"scale_bits must be at least 20 and below the first prime ({bits[0]} bits) so that sums "
                f"keep integer headroom; got {self.scale_bits}"
            )

    @classmethod
    def additive(cls) -> CKKSParams:
        """The smallest chain for sums only: one 60-bit data prime, no multiplication levels."""
        return cls(poly_modulus_degree=8192, coeff_mod_bit_sizes=(60, 60), scale_bits=40)

    @property
    def slots(self) -> int:
        """Real numbers per ciphertext."""
        return self.poly_modulus_degree // 2

    @property
    def scale(self) -> float:
        return float(2**self.scale_bits)

    @property
    def security_bits(self) -> int:
        """The highest standard level (128, 192 or 256) the total modulus size meets."""
        total = sum(self.coeff_mod_bit_sizes)
        return max(
            level for level, table in MAX_COEFF_BITS.items() if total <= table[self.poly_modulus_degree]
        )

    @property
    def max_abs_value(self) -> float:
        """Largest magnitude a slot of a fresh ciphertext or of a sum may reach and still decrypt."""
        data_bits = sum(self.coeff_mod_bit_sizes[:-1])
        return float(2 ** (data_bits - self.scale_bits - 1))

    def ciphertexts_for(self, dim: int) -> int:
        """``ceil(dim / slots)``: how many ciphertexts a vector of ``dim`` values packs into."""
        return max(1, math.ceil(dim / self.slots))


def make_secret_context(params: CKKSParams | None = None) -> ts.Context:
    """A fresh CKKS context holding a new secret key and its public key (no relinearization or Galois
    keys: summation needs neither, and leaving them out keeps the public context at ~0.46 MB)."""
    params = params or CKKSParams()
    context = ts.context(
        ts.SCHEME_TYPE.CKKS,
        poly_modulus_degree=params.poly_modulus_degree,
        coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes),
    )
    context.global_scale = params.scale
    return context


def params_of(context: ts.Context) -> CKKSParams:
    """The parameters a (possibly deserialized) CKKS context was built with."""
    parms = context.seal_context().data.key_context_data().parms()
    if parms.scheme().name != "CKKS":
        raise ValueError("the context is not a CKKS context")
    return CKKSParams(
        poly_modulus_degree=parms.poly_modulus_degree(),
        coeff_mod_bit_sizes=tuple(m.bit_count() for m in parms.coeff_modulus()),
        scale_bits=round(math.log2(context.global_scale)),
    )


def serialize_public(context: ts.Context) -> bytes:
    """Parameters and public key only: ``serialize(save_secret_key=False)``, no evaluation keys."""
    return context.serialize(
        save_public_key=True, save_secret_key=False, save_galois_keys=False, save_relin_keys=False
    )


@dataclass(frozen=True)
class PublicContext:
    """What parties and the aggregator receive: can encrypt and add, cannot decrypt.

    ``data`` is the serialized context that travels; ``fingerprint`` (first 16 bytes of its SHA-256)
    is stamped on every encrypted vector so that one made under another key is rejected by name.
    """

    data: bytes
    context: ts.Context
    params: CKKSParams
    fingerprint: bytes

    @classmethod
    def from_bytes(cls, data: bytes) -> PublicContext:
        """Load a serialized public context; refuses one that carries a secret key."""
        try:
            context = ts.context_from(data)
        except Exception as exc:  # TenSEAL raises ValueError or RuntimeError depending on the damage
            raise ValueError(f"not a serialized TenSEAL context: {exc}") from exc
        if context.has_secret_key():
            raise ValueError(
                "this context holds a secret key; give parties and the aggregator "
                "serialize_public(context) instead"
            )
        if not context.has_public_key():
            raise ValueError("this context has no public key, so parties could not encrypt with it")
        return cls(data, context, params_of(context), hashlib.sha256(data).digest()[:FINGERPRINT_BYTES])

    @classmethod
    def of(cls, secret_context: ts.Context) -> PublicContext:
        """The public part of a context created by :func:`make_secret_context`."""
        return cls.from_bytes(serialize_public(secret_context))
