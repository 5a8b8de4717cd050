"""Identities: keys from OS entropy, key files that round-trip, and clear errors for bad ones."""

import stat

import pytest

from deai.verify.identity import Identity, KeyFileError, key_id, verify_signature


def test_keys_are_fresh_and_signatures_bind_key_and_message():
    a, b = Identity.generate("party"), Identity.generate("party")
    assert a.public_key != b.public_key and len(a.public_key) == 32 and a.id == key_id(a.public_key)
    sig = a.sign(b"round 3")
    assert verify_signature(a.public_key, sig, b"round 3")
    assert not verify_signature(a.public_key, sig, b"round 4")
    assert not verify_signature(b.public_key, sig, b"round 3")
    assert not verify_signature(b"short", sig, b"round 3") and not verify_signature(a.public_key, b"x", b"")


@pytest.mark.parametrize("passphrase", [None, "correct horse"])
def test_a_key_file_round_trips_with_mode_0600(tmp_path, passphrase):
    key = Identity.generate("validator")
    key.save(tmp_path / "v.key", passphrase)
    assert stat.S_IMODE((tmp_path / "v.key").stat().st_mode) == 0o600
    back = Identity.load(tmp_path / "v.key", passphrase)
    assert back.id == key.id and back.role == "validator"


def test_bad_key_files_get_one_clear_error_each(tmp_path):
    key = Identity.generate("owner")
    key.save(tmp_path / "k", "secret")
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        Identity.load(tmp_path / "k", "guess")
    with pytest.raises(KeyFileError, match="encrypted: give its passphrase"):
        Identity.load(tmp_path / "k")
    with pytest.raises(KeyFileError, match="does not exist"):
        Identity.load(tmp_path / "none")
    (tmp_path / "junk").write_text("hello\n")
    with pytest.raises(KeyFileError, match="not a deai key file"):
        Identity.load(tmp_path / "junk")
    other = Identity.generate("owner")
    other.save(tmp_path / "o")
    lines = (tmp_path / "o").read_text().splitlines(keepends=True)
    (tmp_path / "swapped").write_text(f"# deai owner key {key.id}\n" + "".join(lines[1:]))
    with pytest.raises(KeyFileError, match="does not match the id"):
        Identity.load(tmp_path / "swapped")
    with pytest.raises(ValueError, match="role must be one of"):
        Identity.generate("king")
