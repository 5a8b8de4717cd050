"""Party directories round-trip every party's rows exactly, and damaged or edited ones are refused."""

import hashlib
import io
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from deai.data import build_federation, load_dataset
from deai.data.party_dirs import (
    MANIFEST_KEYS,
    PartyDataset,
    load_party_dir,
    party_dir_name,
    write_party_dirs,
)

CONFIG = '[data]\ndataset = "digits"\nnum_parties = 12\n'


def strict_json(path: Path):
    """Parse ``path`` as RFC 8259 JSON: Python's NaN/Infinity/-Infinity constants fail the test."""

    def reject(name):
        raise AssertionError(f"{path}: non-strict JSON constant {name}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=reject)


@pytest.fixture(scope="module")
def fed():
    return build_federation(load_dataset("digits"), 12, "dirichlet", 5, alpha=0.5)


@pytest.fixture
def written(tmp_path, fed):
    out = tmp_path / "parties"
    write_party_dirs(fed, out, dataset="digits", seed=5, config_toml=CONFIG)
    return out


def rewrite_manifest(party: Path, **changes) -> None:
    manifest = strict_json(party / "manifest.json")
    for key, value in changes.items():
        if value is KeyError:
            del manifest[key]
        else:
            manifest[key] = value
    (party / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def replace_data(party: Path, **arrays) -> None:
    """Write ``arrays`` as the party's data.npz and update the manifest's sha256 to match."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    (party / "data.npz").write_bytes(buffer.getvalue())
    rewrite_manifest(party, data_sha256=hashlib.sha256(buffer.getvalue()).hexdigest())


# --- writing and reading back -------------------------------------------------------------------


def test_round_trip_gives_every_party_its_own_rows(tmp_path, fed):
    out = tmp_path / "parties"
    paths = write_party_dirs(fed, out, dataset="digits", seed=5, config_toml=CONFIG)
    assert paths == [out / f"party-{p:05d}" for p in range(fed.num_parties)]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [p.name for p in paths] + ["federation.json", "config.toml"]
    )
    for p, path in enumerate(paths):
        assert sorted(f.name for f in path.iterdir()) == ["data.npz", "manifest.json"]
        party = load_party_dir(path)
        assert isinstance(party, PartyDataset)
        assert (party.index, party.num_parties, party.num_classes) == (p, fed.num_parties, 10)
        assert party.num_features == 64 and party.image_shape == (1, 8, 8)
        x_train, y_train = fed.party_train(p)
        x_test, y_test = fed.party_test(p)
        for got, want in ((party.x_train, x_train), (party.y_train, y_train)):
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
        for got, want in ((party.x_test, x_test), (party.y_test, y_test)):
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
        m = party.manifest
        assert set(m) == set(MANIFEST_KEYS)
        assert m["format_version"] == 1 and m["dataset"] == "digits" and m["seed"] == 5
        assert m["party_name"] == fed.party_names[p]
        assert (m["num_train"], m["num_test"]) == (len(y_train), len(y_test))
        assert m["image_shape"] == [1, 8, 8]
        assert m["data_sha256"] == hashlib.sha256((path / "data.npz").read_bytes()).hexdigest()
        assert m["config_sha256"] == hashlib.sha256(CONFIG.encode()).hexdigest()
    assert (out / "config.toml").read_text(encoding="utf-8") == CONFIG
    assert PartyDataset.load(paths[3]).index == 3


def test_federation_json_lists_every_party(written, fed):
    federation = strict_json(written / "federation.json")
    assert federation["format_version"] == 1 and federation["num_parties"] == fed.num_parties
    assert federation["dataset"] == "digits" and federation["seed"] == 5 and federation["num_classes"] == 10
    assert federation["parties"] == [f"party-{p:05d}" for p in range(fed.num_parties)]
    assert all((written / name).is_dir() for name in federation["parties"])
    assert federation["config_sha256"] == hashlib.sha256(CONFIG.encode()).hexdigest()


def test_every_file_written_is_strict_json(written):
    files = [written / "federation.json", *written.glob("party-*/manifest.json")]
    assert len(files) == 13
    for path in files:
        strict_json(path)


def test_data_npz_needs_no_pickle(written):
    with np.load(written / "party-00000" / "data.npz", allow_pickle=False) as npz:
        assert sorted(npz.files) == ["x_test", "x_train", "y_test", "y_train"]
        assert all(npz[name].dtype != object for name in npz.files)


def test_without_config_there_is_no_config_file(tmp_path, fed):
    out = tmp_path / "parties"
    write_party_dirs(fed, out, dataset="digits", seed=5)
    assert not (out / "config.toml").exists()
    assert load_party_dir(out / "party-00000").manifest["config_sha256"] is None
    assert strict_json(out / "federation.json")["config_sha256"] is None


def test_an_existing_empty_directory_is_used(tmp_path, fed):
    out = tmp_path / "parties"
    out.mkdir()
    write_party_dirs(fed, out, dataset="digits", seed=5)
    assert load_party_dir(out / "party-00011").index == 11


def test_data_set_without_image_shape(tmp_path):
    fed = build_federation(load_dataset("breast_cancer"), 3, "iid", 0)
    write_party_dirs(fed, tmp_path / "bc", dataset="breast_cancer", seed=0)
    party = load_party_dir(tmp_path / "bc" / "party-00002")
    assert party.image_shape is None and party.manifest["image_shape"] is None
    assert party.num_features == 30 and party.num_classes == 2


def test_a_thousand_parties_are_written_quickly(tmp_path):
    fed = build_federation(load_dataset("digits"), 1000, "iid", 1)
    out = tmp_path / "many"
    start = time.perf_counter()
    paths = write_party_dirs(fed, out, dataset="digits", seed=1)
    elapsed = time.perf_counter() - start
    assert len(paths) == 1000 and paths[-1].name == "party-00999"
    assert elapsed < 30, f"writing 1000 parties took {elapsed:.1f} s"  # about 1 s; generous for busy CI
    for p in (0, 499, 999):  # includes parties with no test rows
        np.testing.assert_array_equal(load_party_dir(paths[p]).y_test, fed.party_test(p)[1])


def test_directory_names_widen_past_100000_parties():
    assert party_dir_name(7, 12) == "party-00007"
    assert party_dir_name(99_999, 100_000) == "party-99999"
    assert party_dir_name(7, 100_001) == "party-000007"


# --- refusals when writing ----------------------------------------------------------------------


def test_non_empty_output_is_refused_and_left_intact(tmp_path, fed):
    out = tmp_path / "parties"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty; choose another output directory or empty it") as err:
        write_party_dirs(fed, out, dataset="digits", seed=5)
    assert str(out) in str(err.value)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parties"]  # no temp directory left


def test_a_previous_split_is_not_overwritten(written, fed):
    before = (written / "party-00000" / "data.npz").read_bytes()
    with pytest.raises(ValueError, match="not empty"):
        write_party_dirs(fed, written, dataset="digits", seed=6)
    assert (written / "party-00000" / "data.npz").read_bytes() == before


def test_output_that_is_a_file_is_refused(tmp_path, fed):
    out = tmp_path / "parties"
    out.write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        write_party_dirs(fed, out, dataset="digits", seed=5)
    assert out.read_text() == "x"


def test_leftover_temp_directory_does_not_break_a_rerun(tmp_path, fed):
    out = tmp_path / "parties"
    leftover = tmp_path / f".parties.tmp-{os.getpid()}"
    (leftover / "party-00000").mkdir(parents=True)
    (leftover / "party-00000" / "data.npz").write_bytes(b"half written")
    (leftover / "stray.txt").write_text("from a crashed run")
    write_party_dirs(fed, out, dataset="digits", seed=5)
    assert not leftover.exists()
    assert not (out / "stray.txt").exists()
    np.testing.assert_array_equal(load_party_dir(out / "party-00000").x_train, fed.party_train(0)[0])


def test_a_crash_mid_write_leaves_nothing_behind(tmp_path, fed, monkeypatch):
    out = tmp_path / "parties"
    calls = []
    real_savez = np.savez

    def failing_savez(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        return real_savez(*args, **kwargs)

    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(OSError, match="No space"):
        write_party_dirs(fed, out, dataset="digits", seed=5)
    assert list(tmp_path.iterdir()) == []  # neither the output nor the temp directory
    monkeypatch.setattr(np, "savez", real_savez)
    write_party_dirs(fed, out, dataset="digits", seed=5)
    assert len(list(out.glob("party-*"))) == fed.num_parties


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dataset": "", "seed": 0}, "dataset must be a non-empty name"),
        ({"dataset": "digits", "seed": 1.5}, "seed must be an integer"),
        ({"dataset": "digits", "seed": True}, "seed must be an integer"),
        ({"dataset": "digits", "seed": 0, "config_toml": b"x"}, "config_toml must be"),
    ],
)
def test_bad_arguments_are_refused(tmp_path, fed, kwargs, message):
    with pytest.raises(ValueError, match=message):
        write_party_dirs(fed, tmp_path / "parties", **kwargs)
    assert list(tmp_path.iterdir()) == []


# --- refusals when reading ----------------------------------------------------------------------


def test_flipped_byte_in_data_is_refused(written):
    party = written / "party-00004"
    data = bytearray((party / "data.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (party / "data.npz").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="data.npz sha256 mismatch") as err:
        load_party_dir(party)
    assert str(party / "manifest.json") in str(err.value)
    assert "re-run `deai data split`" in str(err.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"num_classes": 3}, r"labels outside 0\.\.2"),
        ({"num_classes": 0}, "num_classes must be an integer >= 1"),
        ({"num_classes": "10"}, "num_classes must be an integer >= 1"),
        ({"num_classes": True}, "num_classes must be an integer >= 1"),
        ({"num_classes": KeyError}, "missing key"),
        ({"data_sha256": KeyError}, "missing key"),
        ({"format_version": 2}, "format_version 2, this deai reads 1"),
        ({"party_index": 12}, r"party_index must be an integer in 0\.\.11"),
        ({"num_train": 1}, "x_train must be float32"),
        ({"num_features": 32}, "image_shape must be null or dimensions whose product"),
        ({"num_features": 32, "image_shape": None}, r"x_train must be float32 \[\d+, 32\]"),
        ({"image_shape": [1, 8, "8"]}, "image_shape must be null or a list"),
        ({"data_sha256": "0" * 63}, "data_sha256 must be 64 lowercase hex digits"),
        ({"data_sha256": "0" * 64}, "sha256 mismatch"),
        ({"config_sha256": 5}, "config_sha256 must be null or 64"),
        ({"dataset": None}, "dataset must be a string"),
    ],
    ids=lambda v: str(v) if isinstance(v, dict) else None,
)
def test_edited_manifest_is_refused(written, changes, message):
    party = written / "party-00001"
    rewrite_manifest(party, **changes)
    with pytest.raises(ValueError, match=message) as err:
        load_party_dir(party)
    assert str(party) in str(err.value)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_manifest_with_non_finite_number_is_refused(written, constant):
    party = written / "party-00002"
    text = (party / "manifest.json").read_text(encoding="utf-8")
    (party / "manifest.json").write_text(text.replace('"seed": 5', f'"seed": {constant}'), encoding="utf-8")
    assert constant in (party / "manifest.json").read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="not valid strict JSON"):
        load_party_dir(party)


@pytest.mark.parametrize("text", ["{", "[1, 2]", "", "\xff"], ids=["truncated", "list", "empty", "latin1"])
def test_manifest_that_is_not_a_json_object_is_refused(written, text):
    party = written / "party-00000"
    (party / "manifest.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError, match=r"manifest\.json: (not valid strict JSON|must hold a JSON object)"):
        load_party_dir(party)


def test_missing_files_are_refused(written, tmp_path):
    with pytest.raises(ValueError, match="no such party directory"):
        load_party_dir(tmp_path / "nowhere")
    (written / "party-00000" / "manifest.json").unlink()
    with pytest.raises(ValueError, match=r"manifest\.json: missing; restore it or re-run"):
        load_party_dir(written / "party-00000")
    (written / "party-00001" / "data.npz").unlink()
    with pytest.raises(ValueError, match=r"data\.npz: missing"):
        load_party_dir(written / "party-00001")


def test_arrays_of_the_wrong_kind_are_refused_even_with_a_matching_sha(written, fed):
    party = written / "party-00003"
    x_train, y_train = fed.party_train(3)
    x_test, y_test = fed.party_test(3)
    good = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}

    replace_data(party, **(good | {"x_train": x_train.astype(np.float64)}))
    with pytest.raises(ValueError, match="x_train must be float32"):
        load_party_dir(party)
    replace_data(party, **(good | {"y_test": y_test.astype(np.int32)}))
    with pytest.raises(ValueError, match="y_test must be int64"):
        load_party_dir(party)
    replace_data(party, **(good | {"y_train": np.full_like(y_train, 10)}))
    with pytest.raises(ValueError, match=r"labels outside 0\.\.9"):
        load_party_dir(party)
    bad_x = x_train.copy()
    bad_x[0, 0] = np.nan
    replace_data(party, **(good | {"x_train": bad_x}))
    with pytest.raises(ValueError, match="NaN or infinite"):
        load_party_dir(party)
    replace_data(party, **{k: v for k, v in good.items() if k != "x_test"})
    with pytest.raises(ValueError, match="must hold exactly the arrays"):
        load_party_dir(party)
    replace_data(party, **(good | {"extra": np.zeros(1)}))
    with pytest.raises(ValueError, match="must hold exactly the arrays"):
        load_party_dir(party)
    replace_data(party, **(good | {"x_test": np.array([{"a": 1}], dtype=object)}))
    with pytest.raises(ValueError, match="not a readable array archive"):
        load_party_dir(party)
    replace_data(party, **good)
    np.testing.assert_array_equal(load_party_dir(party).x_train, x_train)


def single_array() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((2, 64), np.float32))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not a zip file at all", "not a readable array archive"),
        (b"PK\x03\x04 truncated zip", "not a readable array archive"),
        (single_array(), "a single array, not an archive"),
    ],
    ids=["garbage", "truncated-zip", "npy"],
)
def test_data_that_is_not_an_npz_archive_is_refused(written, data, message):
    party = written / "party-00005"
    (party / "data.npz").write_bytes(data)
    rewrite_manifest(party, data_sha256=hashlib.sha256(data).hexdigest())
    with pytest.raises(ValueError, match=message):
        load_party_dir(party)
