"""The bodies of the star protocol's messages: a task, one party's update, evaluation counts."""

from __future__ import annotations

from typing import Any

import numpy as np

from deai.evaluation import EvalCounts
from deai.messages import TrainTask, UpdateBatch
from deai.net.codec import WireError, decode, encode
from deai.train import LocalSpec
from deai.transforms.compress import LEVELS, pow2_scales
from deai.verify.commit_reveal import Commit

# Message kinds. Aggregator -> party: TRAIN, REVEAL, PHASE, EVALUATE, STOP, WELCOME, LEDGER. Party ->
# aggregator: HELLO, UPDATE, COMMIT, DECLINED, PHASE_REPLY, COUNTS. Aggregator -> validator: REVIEW (and
# LEDGER, STOP); validator -> aggregator: REVIEWED.
HELLO, WELCOME, TRAIN, UPDATE, DECLINED = "hello", "welcome", "train", "update", "declined"
PHASE, PHASE_REPLY, EVALUATE, COUNTS, STOP = "phase", "phase_reply", "evaluate", "counts", "stop"
LEDGER, REVIEW, REVIEWED = "ledger", "review", "reviewed"
COMMIT, REVEAL = "commit", "reveal"  # [ledger] commit_reveal: a signed commitment, then the update


def task_body(task: TrainTask, ledger_task: str | None = None, commit_reveal: bool = False) -> bytes:
    """The round's task; with ``ledger_task`` ([ledger] sign_updates) the party signs its update for
    that ledger, and with ``commit_reveal`` it first answers with a commitment only."""
    arrays = {"params": task.params}
    if task.control is not None:
        arrays["control"] = task.control
    fields: dict[str, Any] = {
        "round": task.round,
        "version": task.version,
        "seed": task.seed,
        "withhold": task.withhold,
    }
    if ledger_task is not None:
        fields["ledger"] = {"task": ledger_task, "commit_reveal": commit_reveal}
    return encode(fields, arrays)


def signing_terms(body: bytes) -> tuple[str | None, bool]:
    """The ledger task a party signs its update for (None: unsigned) and whether it commits first."""
    return _signing_terms(decode(body)[0])


def _signing_terms(fields: dict[str, Any]) -> tuple[str | None, bool]:
    terms = fields.get("ledger")
    if terms is None:
        return None, False
    if not isinstance(terms, dict) or not isinstance(terms.get("task"), str) or not terms["task"]:
        raise WireError("task body: ledger must be {task: str, commit_reveal: bool}")
    return terms["task"], bool(terms.get("commit_reveal"))


def commit_body(commit: Commit) -> bytes:
    """Phase 1 of commit–reveal: the commitment and the party's signature of it (the salt stays home)."""
    return encode({"commitment": commit.commitment.hex(), "signature": commit.signature.hex()})


def read_commit(body: bytes) -> tuple[bytes, bytes]:
    """(commitment, signature) from a COMMIT body."""
    fields, _ = decode(body)
    try:
        committed, sig = bytes.fromhex(fields["commitment"]), bytes.fromhex(fields["signature"])
    except (KeyError, TypeError, ValueError) as err:
        raise WireError(f"commit body needs commitment and signature in hex ({err})") from None
    if len(committed) != 32 or len(sig) != 64:
        raise WireError("commit body: a commitment is 32 bytes and an Ed25519 signature 64")
    return committed, sig


def read_task(body: bytes, spec: LocalSpec, party: int, dim: int) -> TrainTask:
    """The task in ``body`` for ``party``; the local training spec is the party's own (from its config)."""
    return read_signed_task(body, spec, party, dim)[0]


def read_signed_task(
    body: bytes, spec: LocalSpec, party: int, dim: int
) -> tuple[TrainTask, str | None, bool]:
    """The task, with its signing terms (:func:`signing_terms`), from one decoding of ``body``."""
    fields, arrays = decode(body)
    ledger_task, commit = _signing_terms(fields)
    params = _vector(arrays, "params", dim)
    control = _vector(arrays, "control", dim) if "control" in arrays else None
    task = TrainTask(
        round=int(fields["round"]),
        version=int(fields["version"]),
        params=params,
        spec=spec,
        seed=int(fields["seed"]),
        party_ids=np.array([party], dtype=np.int64),
        control=control,
        withhold=bool(fields["withhold"]),
    )
    return task, ledger_task, commit


def update_body(batch: UpdateBatch, signature: bytes | None, salt: bytes | None = None) -> bytes:
    """One party's row (a node holds one party), with its update signature and, revealing a commitment,
    the commitment's salt."""
    if len(batch) != 1:
        raise ValueError(f"a node sends one party's update; got {len(batch)} rows")
    arrays = compact(batch.deltas[0], "delta")
    # per-party metrics travel as float64 arrays: a loss may be NaN or inf, which JSON cannot hold
    arrays |= {f"metric.{k}": np.asarray(v[:1], dtype=np.float64) for k, v in batch.metrics.items()}
    if batch.control_deltas is not None:
        arrays["control_delta"] = batch.control_deltas[0]
    fields: dict[str, Any] = {
        "party": int(batch.party_ids[0]),
        "round": int(batch.round[0]),
        "base_version": int(batch.base_version[0]),
        "weight": float(batch.weights[0]),
        "steps": int(batch.steps[0]),
        "signature": None if signature is None else signature.hex(),
    }
    if salt is not None:
        fields["salt"] = salt.hex()
    return encode(fields, arrays)


def read_update(body: bytes, dim: int, committed: tuple[bytes, bytes] | None = None) -> UpdateBatch:
    """One party's row; revealing a commitment (``committed``: the commitment and its signature, from the
    party's COMMIT), the row carries the :class:`Commit` its salt opens, and a reveal without a salt is
    refused."""
    fields, arrays = decode(body)
    try:
        delta = _vector(expand(arrays, "delta", dim), "delta", dim, withheld=True)  # empty: a private sum
        control = _vector(arrays, "control_delta", dim) if "control_delta" in arrays else None
        sig = fields.get("signature")
        batch = UpdateBatch(
            party_ids=np.array([int(fields["party"])], dtype=np.int64),
            round=np.array([int(fields["round"])], dtype=np.int64),
            base_version=np.array([int(fields["base_version"])], dtype=np.int64),
            deltas=_owned(delta)[None, :],
            weights=np.array([float(fields["weight"])], dtype=np.float64),
            steps=np.array([int(fields["steps"])], dtype=np.int64),
            metrics={
                k.removeprefix("metric."): np.array(v, dtype=np.float64).reshape(1)
                for k, v in arrays.items()
                if k.startswith("metric.")
            },
            control_deltas=None if control is None else control[None, :].copy(),
            signatures=None if sig is None else [bytes.fromhex(sig)],
        )
        if committed is not None:
            salt = _salt(fields)
            if salt is None:
                raise WireError("a reveal without its commitment's salt")
            batch.commits = [Commit(*committed, salt)]
    except (KeyError, TypeError, ValueError) as err:
        raise WireError(f"update body: {err}") from None
    return batch


def update_salt(body: bytes) -> bytes | None:
    """The salt a revealed update carries (None: it reveals no commitment)."""
    return _salt(decode(body)[0])


def _salt(fields: dict[str, Any]) -> bytes | None:
    salt = fields.get("salt")
    try:
        return None if salt is None else bytes.fromhex(salt)
    except (TypeError, ValueError):
        raise WireError("update body: salt must be hex") from None


def compact(row: np.ndarray, name: str) -> dict[str, np.ndarray]:
    """The smallest exact encoding of a float32 row: sparse (int32 positions) where most entries are zero,
    and 8-bit ``q * 2^e`` where every value is one (what deai's compression transforms produce); the
    receiver's :func:`expand` rebuilds the row bit for bit, so the wire never changes an update."""
    row = np.ascontiguousarray(row, dtype=np.float32)
    out: dict[str, np.ndarray] = {}
    values = row
    nz = np.flatnonzero(row.view(np.uint32))  # by bits: a -0.0 is kept as it is
    if len(row) < 2**31 and len(nz) * 8 < len(row) * 3:  # positions + values beat the dense row
        out[f"{name}.index"] = nz.astype(np.int32)
        out[f"{name}.size"] = np.array([len(row)], dtype=np.int64)
        values = row[nz]
    if len(values):
        e = int(pow2_scales(values[None, :])[0])
        q = values.astype(np.float64) / np.ldexp(1.0, e)
        if np.abs(q).max() <= LEVELS and np.array_equal(q, np.rint(q)):
            q8 = q.astype(np.int8)
            back = q8.astype(np.float32) * np.float32(np.ldexp(1.0, e))
            if np.array_equal(back.view(np.uint32), values.view(np.uint32)):  # bit for bit, signs of 0 too
                out[f"{name}.q8"], out[f"{name}.exp"] = q8, np.array([e], dtype=np.int64)
                return out
    out[name if f"{name}.index" not in out else f"{name}.values"] = values
    return out


def expand(arrays: dict[str, np.ndarray], name: str, dim: int) -> dict[str, np.ndarray]:
    """``arrays`` with the row ``name`` rebuilt from its compact encoding (see :func:`compact`)."""
    if name in arrays:
        return arrays
    out = {k: v for k, v in arrays.items() if not k.startswith(f"{name}.")}
    try:
        if f"{name}.q8" in arrays:
            e = int(arrays[f"{name}.exp"][0])
            if not -150 <= e <= 128:
                raise WireError(f"{name}: exponent {e} is outside float32's range")
            values = arrays[f"{name}.q8"].astype(np.float32) * np.float32(np.ldexp(1.0, e))
        else:
            values = arrays[f"{name}.values"]
        if f"{name}.index" in arrays:
            size, index = int(arrays[f"{name}.size"][0]), arrays[f"{name}.index"].astype(np.int64)
            if (
                size != dim
                or len(index) != len(values)
                or (len(index) and (index.min() < 0 or index.max() >= dim))
            ):
                raise WireError(f"{name}: sparse positions do not fit a row of {dim}")
            row = np.zeros(size, np.float32)
            row[index] = values
            values = row
    except (KeyError, IndexError) as err:
        raise WireError(f"{name}: incomplete compact encoding ({err})") from None
    out[name] = np.asarray(values, dtype=np.float32)
    return out


def counts_body(counts: EvalCounts) -> bytes:
    loss = np.array([counts.loss_sum], dtype=np.float64)  # inf once a model diverges: not JSON
    return encode({}, {"hits": counts.hits, "support": counts.support, "loss_sum": loss})


def read_counts(body: bytes, num_classes: int) -> EvalCounts:
    _, arrays = decode(body)
    hits, support, loss = arrays.get("hits"), arrays.get("support"), arrays.get("loss_sum")
    if hits is None or support is None or hits.shape != (num_classes,) or support.shape != (num_classes,):
        raise WireError(f"counts body must hold hits and support of {num_classes} classes")
    if loss is None or loss.shape != (1,):
        raise WireError("counts body must hold loss_sum [1]")
    return EvalCounts(hits.astype(np.float64), support.astype(np.int64), float(loss[0]))


def _owned(a: np.ndarray) -> np.ndarray:
    """``a`` itself when writable (a view of the received frame's buffer), else a copy."""
    return a if a.flags.writeable else a.copy()


def _vector(arrays: dict[str, np.ndarray], name: str, dim: int, *, withheld: bool = False) -> np.ndarray:
    a = arrays.get(name)
    if a is None or a.dtype != np.float32 or a.shape not in ((dim,), *(((0,),) if withheld else ())):
        got = "nothing" if a is None else f"{a.dtype} {list(a.shape)}"
        raise WireError(f"{name} must be float32 [{dim}] (the task's model); got {got}")
    return a
