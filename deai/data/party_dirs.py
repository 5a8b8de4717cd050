"""Parties own their data: one directory per party, so a party's program reads only its own rows.

``write_party_dirs`` splits a ``FederatedData`` into such directories; ``load_party_dir`` reads one
back and refuses anything damaged, edited or inconsistent with its manifest.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deai import jsonio
from deai.data.federated import FederatedData, _is_int

FORMAT_VERSION = 1
DATA_FILE = "data.npz"
MANIFEST_FILE = "manifest.json"
FEDERATION_FILE = "federation.json"
CONFIG_FILE = "config.toml"
ARRAYS = ("x_train", "y_train", "x_test", "y_test")
MANIFEST_KEYS = (
    "format_version",
    "party_index",
    "party_name",
    "num_parties",
    "dataset",
    "seed",
    "num_features",
    "num_classes",
    "image_shape",
    "num_train",
    "num_test",
    "data_sha256",
    "config_sha256",
)
REGENERATE = "re-run `deai data split`"


@dataclass
class PartyDataset:
    """One party's own train and test rows, as read from its directory by ``load_party_dir``."""

    index: int
    num_parties: int
    num_classes: int
    num_features: int
    image_shape: tuple[int, ...] | None
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    manifest: dict[str, Any]

    @classmethod
    def load(cls, path: Path) -> PartyDataset:
        """Same as ``load_party_dir(path)``."""
        return load_party_dir(path)


def party_dir_name(index: int, num_parties: int) -> str:
    """``party-00007``: zero-padded to 5 digits (more when there are over 100,000 parties)."""
    width = max(5, len(str(num_parties - 1)))
    return f"party-{index:0{width}d}"


def write_party_dirs(
    fed: FederatedData, out: Path, *, dataset: str, seed: int, config_toml: str | None = None
) -> list[Path]:
    """Write one directory per party under ``out`` and return their paths, in party order.

    ``out/party-NNNNN/`` holds ``data.npz`` (``x_train``, ``y_train``, ``x_test``, ``y_test``) and
    ``manifest.json``; ``out/federation.json`` lists the parties, and ``out/config.toml`` is
    ``config_toml`` when given. The task's evaluation set (``fed.x_eval``) belongs to no party and is
    not written. ``out`` must not exist or be an empty directory. Everything is built in a sibling
    temporary directory and moved onto ``out`` in one rename, so a crash never leaves half of it.
    """
    out = Path(out)
    if not isinstance(dataset, str) or not dataset:
        raise ValueError(f"dataset must be a non-empty name, got {dataset!r}")
    if not _is_int(seed):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if config_toml is not None and not isinstance(config_toml, str):
        raise ValueError(f"config_toml must be the config's text or None, got {type(config_toml).__name__}")
    _check_fed(fed)
    _check_out(out)

    num_parties = fed.num_parties
    image_shape = None if fed.image_shape is None else [int(d) for d in fed.image_shape]
    config_bytes = None if config_toml is None else config_toml.encode("utf-8")
    config_sha = None if config_bytes is None else hashlib.sha256(config_bytes).hexdigest()
    names = [party_dir_name(p, num_parties) for p in range(num_parties)]
    # what every party's manifest and the federation's index both record
    common = {
        "format_version": FORMAT_VERSION,
        "num_parties": num_parties,
        "dataset": dataset,
        "seed": int(seed),
        "num_features": fed.num_features,
        "num_classes": int(fed.num_classes),
        "image_shape": image_shape,
    }

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists() or tmp.is_symlink():
        _remove(tmp)
    try:
        tmp.mkdir()
        for p, name in enumerate(names):
            x_train, y_train = fed.party_train(p)
            x_test, y_test = fed.party_test(p)
            buffer = io.BytesIO()
            np.savez(buffer, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
            data = buffer.getvalue()
            manifest = common | {
                "party_index": p,
                "party_name": str(fed.party_names[p]),
                "num_train": len(y_train),
                "num_test": len(y_test),
                "data_sha256": hashlib.sha256(data).hexdigest(),
                "config_sha256": config_sha,
            }
            party = tmp / name
            party.mkdir()
            (party / DATA_FILE).write_bytes(data)
            (party / MANIFEST_FILE).write_text(_dumps(manifest), encoding="utf-8")
        federation = common | {
            "parties": names,
            "party_names": [str(n) for n in fed.party_names],
            "num_train": [int(n) for n in fed.train_sizes],  # declared with every update anyway
            "config_sha256": config_sha,
        }
        (tmp / FEDERATION_FILE).write_text(_dumps(federation), encoding="utf-8")
        if config_bytes is not None:
            (tmp / CONFIG_FILE).write_bytes(config_bytes)
        try:
            os.replace(tmp, out)
        except OSError as err:  # e.g. another process filled ``out`` since the check
            raise ValueError(
                f"{out}: cannot move the party directories into place ({err.strerror or err}); "
                "choose another output directory or empty it"
            ) from err
    except BaseException:
        _remove(tmp)
        raise
    return [out / name for name in names]


@dataclass(frozen=True)
class FederationIndex:
    """What ``federation.json`` tells the task owner: the parties and the data's shape, no rows."""

    num_parties: int
    num_features: int
    num_classes: int
    image_shape: tuple[int, ...] | None
    party_names: list[str]
    train_sizes: np.ndarray
    dataset: str


def load_federation_index(out: Path) -> FederationIndex:
    """Read ``out/federation.json`` as ``write_party_dirs`` wrote it; ``ValueError`` names what is wrong."""
    path = Path(out) / FEDERATION_FILE
    if not path.is_file():
        raise ValueError(f"{path}: missing; give the directory `deai data split` wrote (or {REGENERATE})")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"), parse_constant=_reject_constant)
        n = int(doc["num_parties"])
        sizes = np.asarray(doc["num_train"], dtype=np.int64)
        names = [str(x) for x in doc["party_names"]]
        shape = doc["image_shape"]
        index = FederationIndex(
            n,
            int(doc["num_features"]),
            int(doc["num_classes"]),
            None if shape is None else tuple(int(d) for d in shape),
            names,
            sizes,
            str(doc["dataset"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a federation index of this deai ({err}); {REGENERATE}") from None
    if len(sizes) != n or len(names) != n:
        raise ValueError(f"{path}: num_train and party_names must list all {n} parties; {REGENERATE}")
    return index


def load_party_dir(path: Path) -> PartyDataset:
    """Read and check one party's directory written by ``write_party_dirs``.

    Raises ``ValueError`` naming the file and the fix when the directory or its manifest is
    missing, the manifest is not strict JSON of this format, ``data.npz`` does not match the
    manifest's sha256, or the arrays' shapes, dtypes or labels disagree with the manifest.
    """
    path = Path(path)
    if not path.is_dir():
        raise ValueError(
            f"{path}: no such party directory; pass a directory written by `deai data split` "
            "(one holding manifest.json and data.npz)"
        )
    manifest_path = path / MANIFEST_FILE
    manifest = _read_manifest(manifest_path)
    num_parties = manifest["num_parties"]
    num_classes = manifest["num_classes"]
    num_features = manifest["num_features"]
    image_shape = manifest["image_shape"]

    data_path = path / DATA_FILE
    if not data_path.is_file():
        raise ValueError(f"{data_path}: missing; copy the party's data.npz back or {REGENERATE}")
    try:
        data = data_path.read_bytes()
    except OSError as err:
        raise ValueError(f"{data_path}: cannot read ({err.strerror or err}); check its permissions") from err
    if hashlib.sha256(data).hexdigest() != manifest["data_sha256"]:
        raise ValueError(f"{manifest_path}: data.npz sha256 mismatch (file damaged or edited); {REGENERATE}")
    arrays = _read_arrays(data_path, data)

    sizes = {"train": manifest["num_train"], "test": manifest["num_test"]}
    for split, rows in sizes.items():
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.float32 or x.ndim != 2 or x.shape != (rows, num_features):
            raise ValueError(
                f"{data_path}: x_{split} must be float32 [{rows}, {num_features}] as manifest.json "
                f"says, got {x.dtype} {list(x.shape)}; {REGENERATE}"
            )
        if y.dtype != np.int64 or y.ndim != 1 or y.shape != (rows,):
            raise ValueError(
                f"{data_path}: y_{split} must be int64 [{rows}] as manifest.json says, "
                f"got {y.dtype} {list(y.shape)}; {REGENERATE}"
            )
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            raise ValueError(
                f"{data_path}: y_{split} has labels outside 0..{num_classes - 1} "
                f"(num_classes in manifest.json is {num_classes}); {REGENERATE}"
            )
        if not np.isfinite(x).all():
            raise ValueError(f"{data_path}: x_{split} holds NaN or infinite values; {REGENERATE}")
    return PartyDataset(
        index=manifest["party_index"],
        num_parties=num_parties,
        num_classes=num_classes,
        num_features=num_features,
        image_shape=None if image_shape is None else tuple(image_shape),
        x_train=arrays["x_train"],
        y_train=arrays["y_train"],
        x_test=arrays["x_test"],
        y_test=arrays["y_test"],
        manifest=manifest,
    )


# --- checks -------------------------------------------------------------------------------------


def _check_fed(fed: FederatedData) -> None:
    if fed.num_parties < 1:
        raise ValueError("the federation has no parties; nothing to write")
    for name in ("x_train", "x_test"):
        x = getattr(fed, name)
        if x.dtype != np.float32 or x.ndim != 2:
            raise ValueError(f"{name} must be float32 [N, F], got {x.dtype} {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError(f"{name} holds NaN or infinite values; a party could not train on them")
    for name in ("y_train", "y_test"):
        y = getattr(fed, name)
        if y.dtype != np.int64 or y.ndim != 1:
            raise ValueError(f"{name} must be int64 [N], got {y.dtype} {y.shape}")
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= fed.num_classes):
            raise ValueError(f"{name} must lie in 0..{fed.num_classes - 1}")
    if fed.x_test.shape[1] != fed.x_train.shape[1]:
        raise ValueError(f"x_test has {fed.x_test.shape[1]} features, x_train has {fed.x_train.shape[1]}")


def _check_out(out: Path) -> None:
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ValueError(f"{out}: exists and is not a directory; choose another output directory")
    if out.is_dir() and any(out.iterdir()):
        raise ValueError(f"{out}: exists and is not empty; choose another output directory or empty it")


def _read_manifest(manifest_path: Path) -> dict[str, Any]:
    fix = f"restore it or {REGENERATE}"
    if not manifest_path.is_file():
        raise ValueError(f"{manifest_path}: missing; {fix}")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"), parse_constant=_reject_constant)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"{manifest_path}: not valid strict JSON ({err}); {fix}") from err
    if not isinstance(manifest, dict):
        raise ValueError(f"{manifest_path}: must hold a JSON object; {fix}")
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if missing:
        raise ValueError(f"{manifest_path}: missing key(s) {', '.join(missing)}; {fix}")
    version = manifest["format_version"]
    if not _is_int(version) or version != FORMAT_VERSION:
        raise ValueError(
            f"{manifest_path}: format_version {version!r}, this deai reads {FORMAT_VERSION}; "
            f"{REGENERATE} with this deai"
        )

    def bad(key: str, want: str) -> ValueError:
        return ValueError(f"{manifest_path}: {key} must be {want}, got {manifest[key]!r}; {fix}")

    for key in ("num_parties", "num_classes", "num_features"):
        if not _is_int(manifest[key]) or manifest[key] < 1:
            raise bad(key, "an integer >= 1")
    for key in ("num_train", "num_test"):
        if not _is_int(manifest[key]) or manifest[key] < 0:
            raise bad(key, "an integer >= 0")
    index = manifest["party_index"]
    if not _is_int(index) or not 0 <= index < manifest["num_parties"]:
        raise bad("party_index", f"an integer in 0..{manifest['num_parties'] - 1}")
    if not _is_int(manifest["seed"]):
        raise bad("seed", "an integer")
    for key in ("dataset", "party_name"):
        if not isinstance(manifest[key], str):
            raise bad(key, "a string")
    if not _is_sha256(manifest["data_sha256"]):
        raise bad("data_sha256", "64 lowercase hex digits")
    if manifest["config_sha256"] is not None and not _is_sha256(manifest["config_sha256"]):
        raise bad("config_sha256", "null or 64 lowercase hex digits")
    shape = manifest["image_shape"]
    if shape is not None:
        if not isinstance(shape, list) or not shape or not all(_is_int(d) and d >= 1 for d in shape):
            raise bad("image_shape", "null or a list of integers >= 1")
        if int(np.prod(shape)) != manifest["num_features"]:
            raise bad(
                "image_shape", f"null or dimensions whose product is num_features {manifest['num_features']}"
            )
    return manifest


def _read_arrays(data_path: Path, data: bytes) -> dict[str, np.ndarray]:
    unreadable = (ValueError, OSError, EOFError, zipfile.BadZipFile)
    try:
        npz = np.load(io.BytesIO(data), allow_pickle=False)
    except unreadable as err:
        raise ValueError(f"{data_path}: not a readable array archive ({err}); {REGENERATE}") from err
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ValueError(f"{data_path}: a single array, not an archive of {', '.join(ARRAYS)}; {REGENERATE}")
    with npz:
        if sorted(npz.files) != sorted(ARRAYS):
            raise ValueError(
                f"{data_path}: must hold exactly the arrays {', '.join(ARRAYS)}, "
                f"got {', '.join(sorted(npz.files)) or 'none'}; {REGENERATE}"
            )
        try:
            return {name: npz[name] for name in ARRAYS}
        except unreadable as err:  # object (pickled) arrays, truncated members
            raise ValueError(f"{data_path}: not a readable array archive ({err}); {REGENERATE}") from err


# --- helpers ------------------------------------------------------------------------------------


def _dumps(value: Any) -> str:
    return jsonio.dumps(value, indent=2) + "\n"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not strict JSON")


def _is_sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
