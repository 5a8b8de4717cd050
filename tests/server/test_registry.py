"""The server's party registry: identities to dense indices, stable under re-registration and late joins."""

import pytest

from deai.server import PartyRegistry, key_id


def test_names_get_dense_indices_in_registration_order_and_keep_them():
    reg = PartyRegistry(["clinic-a", "clinic-b"])
    assert [reg.index("clinic-a"), reg.index("clinic-b")] == [0, 1]
    assert reg.register("clinic-a") == 0  # registering again changes nothing
    assert reg.register("lab-c") == 2 and len(reg) == 3  # a late joiner gets the next index
    assert reg.name(2) == "lab-c" and "lab-c" in reg


def test_key_derived_ids_are_stable_and_distinct():
    a, b = key_id(b"\x01" * 32), key_id(b"\x02" * 32)
    assert a == key_id(b"\x01" * 32) and a != b and len(a) == 32
    reg = PartyRegistry([a, b])
    assert reg.index(b) == 1


@pytest.mark.parametrize("bad", ["", None, 3])
def test_bad_names_are_refused(bad):
    with pytest.raises(ValueError, match="non-empty string"):
        PartyRegistry().register(bad)


def test_unknown_parties_and_indices_are_errors_that_say_so():
    reg = PartyRegistry.dense(3)
    assert reg.name(0) == "party-00000"
    with pytest.raises(KeyError, match="not registered"):
        reg.index("stranger")
    with pytest.raises(IndexError, match="3 are registered"):
        reg.name(3)
