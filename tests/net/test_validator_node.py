"""A validator node's review, in-process: forwarded updates are checked against their senders' signatures.

The aggregator relays the parties' signed frames; whatever it changes (a byte of an update, a header
field) or leaves out is caught and filed as a dissent, and an unaltered round is co-signed with the very
hashes the simulator's in-process validator computes from the same rows (the reference).
"""

import json

import numpy as np
import pytest

from deai.config import parse_config
from deai.engine.api import build_data, build_model
from deai.engine.assembly import task_strategy
from deai.messages import RoundRecord, UpdateBatch
from deai.net.codec import encode
from deai.net.envelope import Envelope, Gate, Sealer
from deai.net.events import EventLog
from deai.net.payloads import REVIEW, UPDATE, update_body
from deai.net.roster import Roster, task_id
from deai.net.validator_node import ValidatorNode
from deai.params import params_hash
from deai.verify.identity import Identity
from deai.verify.ledger import entry_hash, signed_entry
from deai.verify.validator import Validator

PARTIES = 3


@pytest.fixture(scope="module")
def world():
    cfg = parse_config({
        "run": {"name": "v", "rounds": 2, "seed": 3},
        "data": {"dataset": "digits", "num_parties": PARTIES},
        "model": {"kind": "logreg"},
        "ledger": {"validators": 1},
    })  # fmt: skip
    model = build_model(cfg, build_data(cfg))
    agg, val = Identity.generate("aggregator"), Identity.generate("validator")
    parties = [Identity.generate("party") for _ in range(PARTIES)]
    roster = Roster(agg.public_key, [p.public_key for p in parties], ["a", "b", "c"], None, [val.public_key])
    tid = task_id(cfg)
    gate = Gate(tid, agg.id, roster.keys(), 1 << 24)
    rng = np.random.default_rng(0)
    frames = []
    for i, ident in enumerate(parties):  # each party's own signed update, as the aggregator received it
        batch = UpdateBatch(
            party_ids=np.array([i]),
            round=np.array([1]),
            base_version=np.array([0]),
            deltas=rng.normal(0, 0.01, (1, model.layout.dim)).astype(np.float32),
            weights=np.array([10.0 + i]),
            steps=np.array([5]),
        )
        frame = Sealer(ident, tid).seal(UPDATE, 1, agg.id, update_body(batch, None))
        frames.append(gate.open(frame))
    return cfg, model, roster, tid, val, frames


def _claim(cfg, model, frames, forge=None):
    """The round result an honest aggregator appends: the reference validator's hashes of the rows."""
    from deai.net.payloads import read_update

    strategy, _ = task_strategy(cfg, PARTIES)
    w0 = model.init_params(cfg.run.seed)
    ref = Validator(Identity.generate("validator"), strategy.aggregator, strategy.server_opt, cfg.run.seed,
                    model.layout, w0, strategy.server_opt.init(len(w0)))  # fmt: skip
    batch = UpdateBatch.concat([read_update(bytes(f.body), model.layout.dim) for f in frames])
    body = ref.recompute(RoundRecord(1, 0, w0, batch.party_ids, {}, None, {}, True, batch=batch))
    body |= {"released": True, "participants": [0, 1, 2], "rejected": {}} | (forge or {})
    text, digest, _ = signed_entry(
        "ledger-task", 7, "ab" * 32, "round_result", 1, Identity.generate("aggregator"), body
    )
    return text, digest, params_hash(w0, model.layout)


def _review(tmp_path, world, frames=None, bodies=None, forge=None, before=None):
    cfg, model, roster, tid, val, honest = world
    frames = honest if frames is None else frames
    text, digest, w0_hash = _claim(cfg, model, honest, forge)
    strategy, _ = task_strategy(cfg, PARTIES)
    node = ValidatorNode(cfg, val, roster, model, strategy, None, tmp_path, EventLog("v", None, None),
                         task_id=tid)  # fmt: skip
    fields = {
        "result_entry": text,
        "model_before": before or w0_hash,
        "seq": 8,
        "prev": digest,
        "frames": [{"header": f.header, "signature": f.signature.hex()} for f in frames],
    }
    arrays = {
        f"u{i}": np.frombuffer(bytes(b), np.uint8) for i, b in enumerate(bodies or [f.body for f in frames])
    }
    reply = node._review(Envelope(REVIEW, 1, roster.aggregator_id, 0, encode(fields, arrays), {}))
    if "declined" in reply:
        return reply, None, digest
    entry = json.loads(reply["entry"])
    assert entry["seq"] == 8 and entry["prev"] == digest and entry["signer"] == val.id
    assert entry_hash(reply["entry"]) and len(reply["signature"]) == 128
    return reply, entry, digest


def test_an_unaltered_round_is_cosigned_with_the_reference_hashes(tmp_path, world):
    _, entry, digest = _review(tmp_path, world)
    claim = json.loads(_claim(*world[:2], world[5])[0])["body"]
    assert entry["kind"] == "cosigned" and entry["body"]["result"] == digest
    for k in ("updates_root", "aggregate_sha256", "model_sha256"):
        assert entry["body"][k] == claim[k]


def test_an_update_the_aggregator_altered_is_caught_by_its_senders_signature(tmp_path, world):
    bodies = [bytearray(f.body) for f in world[5]]
    bodies[1][-5] ^= 1  # one bit of party 1's update
    _, entry, _ = _review(tmp_path, world, bodies=bodies)
    assert entry["kind"] == "dissent"
    assert "forwarded update 1" in entry["body"]["reason"] and "bad_digest" in entry["body"]["reason"]


def test_a_header_the_aggregator_rewrote_no_longer_carries_its_senders_signature(tmp_path, world):
    frames = list(world[5])
    f = frames[2]
    frames[2] = Envelope(f.kind, 2, f.sender, f.seq, f.body, {**f.header, "round": 2}, f.signature)
    _, entry, _ = _review(tmp_path, world, frames=frames)
    assert entry["kind"] == "dissent" and "bad_signature" in entry["body"]["reason"]


def test_an_update_left_out_or_a_false_result_is_dissented(tmp_path, world):
    _, entry, _ = _review(tmp_path / "a", world, frames=world[5][:2])
    assert entry["kind"] == "dissent" and "not the result's participants" in entry["body"]["reason"]
    _, entry, _ = _review(tmp_path / "b", world, forge={"model_sha256": "0" * 64})
    assert entry["kind"] == "dissent" and "model_sha256" in entry["body"]["reason"]


def test_a_validator_behind_the_round_declines_rather_than_dissents(tmp_path, world):
    reply, entry, _ = _review(tmp_path, world, before="1" * 64)
    assert entry is None and reply == {"declined": "its model is not the round's start"}
