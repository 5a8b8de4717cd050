"""CKKS parameters, their security level, and what a public context can and cannot do."""

import numpy as np
import pytest

ts = pytest.importorskip("tenseal")  # optional dependency: skip, not fail, without it

from deai.privacy.he import CKKSParams, KeyOwner, PublicContext, encrypt_update, make_secret_context  # noqa: E402
from deai.privacy.he.context import params_of, serialize_public  # noqa: E402


def test_default_parameters_give_4096_slots_at_128_bit_security():
    params = CKKSParams()
    assert params.slots == 4096
    assert sum(params.coeff_mod_bit_sizes) == 200  # <= 218, the HE standard's 128-bit limit at N = 8192
    assert params.security_bits == 128
    assert params.ciphertexts_for(100_000) == 25


def test_additive_preset_is_192_bit_secure_with_2_to_19_headroom():
    params = CKKSParams.additive()
    assert params.security_bits == 192  # 120 bits <= 152
    assert params.max_abs_value == 2.0**19


def test_a_modulus_too_large_for_128_bit_security_is_refused():
    with pytest.raises(ValueError, match="128-bit security"):
        CKKSParams(coeff_mod_bit_sizes=(60, 60, 60, 60))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"poly_modulus_degree": 6000}, "poly_modulus_degree"),
        ({"coeff_mod_bit_sizes": (60,)}, "at least two primes"),
        ({"coeff_mod_bit_sizes": (61, 60)}, "20 to 60 bits"),
        ({"scale_bits": 60}, "scale_bits"),
    ],
)
def test_invalid_parameters_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CKKSParams(**kwargs)


def test_parameters_read_back_from_a_deserialized_context():
    params = CKKSParams.additive()
    public = PublicContext.from_bytes(serialize_public(make_secret_context(params)))
    assert params_of(public.context) == params == public.params


def test_public_context_bytes_carry_no_secret_key():
    public = KeyOwner().public_context
    loaded = ts.context_from(public.data)
    assert not loaded.has_secret_key()
    assert loaded.has_public_key()


def test_the_aggregators_public_context_cannot_decrypt():
    public = KeyOwner().public_context
    vector = ts.ckks_vector(public.context, [0.5, -0.25])
    with pytest.raises(ValueError, match="secret_key"):  # TenSEAL refuses: no secret key in the context
        vector.decrypt()


def test_a_context_with_a_secret_key_is_refused_as_public():
    secret = make_secret_context()
    with pytest.raises(ValueError, match="secret key"):
        PublicContext.from_bytes(secret.serialize(save_secret_key=True))


def test_updates_beyond_the_decryptable_range_are_refused_at_encryption():
    public = KeyOwner(CKKSParams.additive()).public_context
    with pytest.raises(ValueError, match="above"):
        encrypt_update(np.array([1.0]), public, weight=2.0**20)
    with pytest.raises(ValueError, match="NaN"):
        encrypt_update(np.array([np.nan]), public)
