"""The reviewer's lying-server attack on SecAgg+, run against the real parties.

The server tells t of a victim's neighbours that the victim survived (they reveal shares of its self-mask
seed b) and the others that it dropped (they reveal shares of its mask key s). With t shares of both it
strips every mask from the victim's masked input and reads the input. The attack must fail at every
threshold the config accepts (t > k/2), and with signed keys the consistency check must stop it even at a
threshold the config would refuse; at such a threshold without signatures it succeeds, which shows the
test can tell.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from deai.privacy.secagg import crypto, shamir
from deai.privacy.secagg.config import SECRET_ELEMENTS, SecAggConfig
from deai.privacy.secagg.errors import SecAggError
from deai.privacy.secagg.messages import (
    MASKED_INPUT,
    SERVER,
    UNMASK_REQUEST,
    UNMASK_RESPONSE,
    Message,
    pack,
    unpack,
)
from deai.privacy.secagg.party import _MASK_KEY_LABEL, SecAggParty, mask_sign
from deai.privacy.secagg.protocol import run_protocol
from deai.privacy.secagg.server import SecAggServer

VICTIM = 0
DIM = 16


def attack(cfg: SecAggConfig, *, sign: bool = False) -> dict:
    """Run a session whose server splits the victim's neighbours; return what it collected."""
    n = cfg.n_parties
    updates = np.random.default_rng(1).uniform(-1, 1, size=(n, DIM))
    signing = [Ed25519PrivateKey.generate() for _ in range(n)] if sign else None
    verify = {u: k.public_key() for u, k in enumerate(signing)} if signing else None
    parties = [
        SecAggParty(u, cfg, signing_key=signing[u] if signing else None, verify_keys=verify) for u in range(n)
    ]
    server = SecAggServer(cfg)
    told_dropped = set(sorted(int(v) for v in cfg.neighbours[VICTIM])[cfg.threshold :])
    got: dict = {"masked": None, "b": [], "s": [], "updates": updates, "server": server}

    def intercept(kind, sender, recipient, payload):
        if kind == MASKED_INPUT and sender == VICTIM:
            msg = unpack(payload, kind=kind, session=cfg.session, sender=VICTIM)
            got["masked"] = np.frombuffer(msg.blob("data"), dtype=cfg.encoding.dtype).copy()
        if kind == UNMASK_REQUEST and recipient in told_dropped:
            msg = unpack(payload, kind=kind, session=cfg.session, sender=SERVER)
            fields = dict(msg.fields)
            fields["survivors"] = [u for u in fields["survivors"] if u != VICTIM]
            fields["dropped"] = sorted([*fields["dropped"], VICTIM])
            return pack(Message(UNMASK_REQUEST, SERVER, cfg.session, fields, dict(msg.blobs)))
        if kind == UNMASK_RESPONSE:
            msg = unpack(payload, kind=kind, session=cfg.session, sender=sender)
            for name in ("b", "s"):
                ids = msg.int_list(f"{name}_ids")
                shares = np.frombuffer(msg.blob(name), dtype="<u4").reshape(len(ids), SECRET_ELEMENTS)
                got[name] += [(sender + 1, shares[j]) for j, u in enumerate(ids) if u == VICTIM]
        return payload

    try:
        run_protocol(parties, server, updates, intercept=intercept)
    except SecAggError:
        pass  # the honest server code may notice the tampering; the attacker keeps what it collected
    return got


def recover_input(cfg: SecAggConfig, got: dict) -> np.ndarray:
    """The victim's encoded input from its masked input, t shares of b and t shares of s."""
    t, enc = cfg.threshold, cfg.encoding

    def secret(shares):
        chosen = sorted(shares, key=lambda s: s[0])[:t]
        xs = np.array([x for x, _ in chosen], dtype=np.uint64)
        return shamir.field_to_bytes(shamir.reconstruct(xs, np.stack([s for _, s in chosen])))

    total = got["masked"].copy()
    total -= crypto.prg_words(secret(got["b"]), cfg.dim, enc.dtype)
    s_key = X25519PrivateKey.from_private_bytes(secret(got["s"]))
    public = got["server"]._public_keys
    for v in sorted(int(v) for v in cfg.neighbours[VICTIM]):
        seed = crypto.agree(
            s_key, public[v][crypto.KEY_BYTES :], label=_MASK_KEY_LABEL, session=cfg.session, a=VICTIM, b=v
        )
        mask = crypto.prg_words(seed, cfg.dim, enc.dtype)
        total = total - mask if mask_sign(VICTIM, v) > 0 else total + mask
    return total & enc.dtype.type(enc.word_mask)


@pytest.mark.parametrize("n", [10, 60])
@pytest.mark.parametrize("fraction", [0.5, 0.6, 0.75, 0.9])
def test_the_lying_server_fails_at_every_accepted_threshold(n, fraction):
    cfg = SecAggConfig.create(n, DIM, seed=0, round=0, clip=1.0, threshold_fraction=fraction)
    got = attack(cfg)
    assert len(got["b"]) >= cfg.threshold  # the neighbours told "survived" did reveal b-shares
    assert len(got["s"]) < cfg.threshold  # but too few are left to reveal s: the victim stays masked


def test_below_half_the_attack_recovers_the_victims_input_exactly():
    """The reviewer's case (n = 10, k = 9, t = 3), forced past the config's refusal: the attack works."""
    cfg = dataclasses.replace(SecAggConfig.create(10, DIM, seed=0, round=0, clip=1.0), threshold=3)
    got = attack(cfg)
    assert len(got["b"]) >= 3 and len(got["s"]) >= 3
    np.testing.assert_array_equal(recover_input(cfg, got), cfg.encoding.encode(got["updates"][VICTIM]))


def test_signed_keys_and_the_consistency_check_stop_the_attack_even_below_half():
    cfg = dataclasses.replace(SecAggConfig.create(10, DIM, seed=0, round=0, clip=1.0), threshold=3)
    got = attack(cfg, sign=True)
    assert got["s"] == []  # the neighbours told "dropped" see a request that contradicts the signed U3
