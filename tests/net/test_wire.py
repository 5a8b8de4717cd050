"""The wire layer on its own: bodies, signed envelopes and their gate, chunking, the roster."""

import numpy as np
import pytest

from deai.config import parse_config
from deai.messages import TrainTask, UpdateBatch
from deai.net import envelope as E
from deai.net.codec import WireError, decode, encode
from deai.net.payloads import read_task, read_update, task_body, update_body
from deai.net.roster import Roster, task_id
from deai.net.star import CHUNK_BYTES, Reassembler, chunks
from deai.train import LocalSpec
from deai.verify.identity import Identity


def test_a_body_round_trips_arrays_and_fields_exactly():
    rng = np.random.default_rng(0)
    arrays = {"w": rng.normal(size=1000).astype(np.float32), "ids": np.arange(7), "m": np.eye(3) > 0}
    fields, back = decode(encode({"round": 3, "name": "x", "nested": {"a": [1, 2]}}, arrays))
    assert fields == {"round": 3, "name": "x", "nested": {"a": [1, 2]}}
    for k, a in arrays.items():
        assert back[k].dtype == a.dtype and back[k].shape == a.shape
        np.testing.assert_array_equal(back[k], a)


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda b: b"XXXX" + b[4:], "magic"),
        (lambda b: b[:7], "truncated|header"),
        (lambda b: b[:-1], "outside the body"),
        (lambda b: b.replace(b'"float32"', b'"float16"'), "dtype"),
        (lambda b: b.replace(b"[10]", b"[11]"), "is not 40 bytes"),
    ],
)
def test_a_damaged_body_is_refused_naming_the_part(damage, match):
    body = encode({}, {"w": np.zeros(10, np.float32)})
    with pytest.raises(WireError, match=match):
        decode(damage(body))


def test_object_arrays_never_go_on_the_wire():
    with pytest.raises(WireError, match="dtype"):
        encode({}, {"o": np.array([object()])})


def _pair(max_bytes=1 << 20):
    a, b = Identity.generate("aggregator"), Identity.generate("party")
    gate = E.Gate("task1", a.id, {b.id: b.public_key}, max_bytes)
    return a, b, gate, E.Sealer(b, "task1")


def test_a_sealed_frame_opens_at_its_recipient():
    a, b, gate, sealer = _pair()
    env = gate.open(sealer.seal("update", 4, a.id, b"payload"))
    assert (env.kind, env.round, env.sender, env.body) == ("update", 4, b.id, b"payload")


def test_every_kind_of_bad_frame_is_refused_with_its_reason():
    a, b, gate, sealer = _pair(max_bytes=4096)
    good = sealer.seal("update", 1, a.id, b"x")
    gate.open(good)
    cases = {
        E.REPLAY: good,
        E.WRONG_TASK: E.Sealer(b, "other-task").seal("update", 1, a.id, b"x"),
        E.MISADDRESSED: sealer.seal("update", 1, "someone-else", b"x"),
        E.UNKNOWN_SENDER: E.Sealer(Identity.generate("party"), "task1").seal("update", 1, a.id, b"x"),
        E.OVERSIZED: sealer.seal("update", 1, a.id, b"x" * 5000),
        E.MALFORMED: b"\x00\x00\x00\x05abc",
    }
    fresh = sealer.seal("update", 1, a.id, b"body")
    cases[E.BAD_DIGEST] = fresh[:-4] + b"evil"  # the body swapped under a valid header signature
    forged = bytearray(sealer.seal("update", 1, a.id, b"y"))
    n = int.from_bytes(forged[:4], "big")
    forged[4 + n] ^= 1  # one bit of the signature
    cases[E.BAD_SIGNATURE] = bytes(forged)
    old = E.Sealer(b, "task1")
    old_frame = old.seal("update", 1, a.id, b"x")
    header = old_frame.replace(b'"v":1', b'"v":2')
    cases[E.VERSION_MISMATCH] = header
    for reason, frame in cases.items():
        with pytest.raises(E.Refused) as err:
            gate.open(frame)
        assert err.value.reason == reason, (reason, err.value)
    # a version mismatch names both versions
    with pytest.raises(E.Refused, match="protocol 2; this node speaks 1"):
        gate.open(cases[E.VERSION_MISMATCH])
    gate.open(sealer.seal("update", 2, a.id, b"still fine"))  # the gate keeps working after refusals


def test_a_restarted_sender_keeps_counting_upward():
    a, b, gate, sealer = _pair()
    first = gate.open(sealer.seal("hello", 0, a.id, b""))
    again = gate.open(E.Sealer(b, "task1").seal("hello", 0, a.id, b""))  # a new process, the same key
    assert again.seq > first.seq and again.sender == first.sender == b.id


def test_chunks_reassemble_into_the_frame_and_oversized_frames_are_skipped_unstored():
    frame = np.random.default_rng(1).bytes(CHUNK_BYTES * 2 + 17)
    r = Reassembler(max_bytes=len(frame))
    parts = list(chunks(1, frame))
    assert len(parts) == 3
    assert [r.add(c) for c in parts[:-1]] == [None, None]
    assert r.add(parts[-1]) == frame
    small = Reassembler(max_bytes=CHUNK_BYTES)
    with pytest.raises(E.Refused, match="oversized"):
        small.add(parts[0])
    assert small.add(parts[1]) is None and small._buf is None  # the rest is skipped, nothing held
    assert small.add(next(chunks(2, b"ok"))) == b"ok"


def test_task_and_update_bodies_carry_what_the_programs_exchange():
    dim = 50
    task = TrainTask(1, 0, np.arange(dim, dtype=np.float32), LocalSpec(), 7, np.array([3]), control=None)
    back = read_task(task_body(task), LocalSpec(lr=0.2), 3, dim)
    np.testing.assert_array_equal(back.params, task.params)
    assert (back.round, back.seed, back.party_ids.tolist(), back.spec.lr) == (1, 7, [3], 0.2)
    with pytest.raises(WireError, match="float32 \\[49\\]"):
        read_task(task_body(task), LocalSpec(), 3, dim - 1)
    batch = UpdateBatch(
        np.array([3]), np.array([1]), np.array([0]), np.ones((1, dim), np.float32),
        np.array([12.0]), np.array([5]), {"train_loss": np.array([np.nan])},
    )  # fmt: skip
    got = read_update(update_body(batch, b"s" * 64), dim)
    np.testing.assert_array_equal(got.deltas, batch.deltas)
    assert got.weights[0] == 12.0 and got.steps[0] == 5 and np.isnan(got.metrics["train_loss"][0])
    assert got.signatures == [b"s" * 64]


def test_the_roster_round_trips_and_refuses_damage(tmp_path):
    keys = [Identity.generate("party").public_key for _ in range(3)]
    agg = Identity.generate("aggregator").public_key
    Roster(agg, keys, ["a", "b", "c"]).save(tmp_path / "r.json")
    r = Roster.load(tmp_path / "r.json", 3)
    assert r.parties == keys and r.aggregator == agg and r.party_index()[r.party_ids[2]] == 2
    with pytest.raises(ValueError, match="lists 3 parties; the task .* has 4"):
        Roster.load(tmp_path / "r.json", 4)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a deai roster"):
        Roster.load(tmp_path / "bad.json")
    Roster(agg, [keys[0], keys[0]], ["a", "b"]).save(tmp_path / "dup.json")
    with pytest.raises(ValueError, match="twice"):
        Roster.load(tmp_path / "dup.json")


def test_the_task_id_changes_with_any_setting():
    a = parse_config({"run": {"seed": 1}})
    b = parse_config({"run": {"seed": 2}})
    assert task_id(a) == task_id(parse_config({"run": {"seed": 1}})) != task_id(b)


@pytest.mark.parametrize("kind", ["none", "int8", "topk", "topk_int8"])
def test_compressed_rows_travel_compactly_and_arrive_bit_for_bit(kind):
    from deai.context import RoundContext
    from deai.net.payloads import compact, expand
    from deai.transforms.compress import ErrorFeedbackCompressor, StochasticInt8

    rng = np.random.default_rng(3)
    rows = rng.normal(size=(4, 5000)).astype(np.float32)
    rows[0, :7] = -0.0
    ctx = RoundContext(1, 2, np.arange(4))
    t = {"none": None, "int8": StochasticInt8(), "topk": ErrorFeedbackCompressor(0.05),
         "topk_int8": ErrorFeedbackCompressor(0.05, int8=True)}[kind]  # fmt: skip
    out = rows if t is None else t.apply(rows, t.init(5000), ctx)[0]
    for row in out:
        enc = compact(row, "d")
        size = sum(a.nbytes for a in enc.values())
        back = expand(enc, "d", 5000)["d"]
        assert back.dtype == np.float32 and np.array_equal(back.view(np.uint32), row.view(np.uint32))
        limit = {
            "none": 4 * 5000,
            "int8": 5000 + 8,
            "topk": 0.05 * 5000 * 8 + 16,
            "topk_int8": 0.05 * 5000 * 5 + 24,
        }
        assert size <= limit[kind], (kind, size)


def test_stochastic_int8_is_unbiased_and_error_feedback_loses_nothing():
    from deai.context import RoundContext
    from deai.transforms.compress import ErrorFeedbackCompressor, stochastic_int8

    x = np.full((1, 4), 0.3, np.float32)
    x[0, 0] = 127.0  # scale 1: 0.3 rounds to 0 or 1
    draws = np.stack([stochastic_int8(x, RoundContext(0, r, np.array([0])))[0, 1:] for r in range(4000)])
    assert set(np.unique(draws)) == {0.0, 1.0} and abs(draws.mean() - 0.3) < 0.02
    t = ErrorFeedbackCompressor(0.25)  # 1 of 4 coordinates a round
    state, sent = t.init(4), np.zeros(4)
    u = np.array([[1.0, 0.5, 0.25, 0.125]], np.float32)
    for r in range(8):
        out, state = t.apply(u, state, RoundContext(0, r, np.array([9])))
        assert np.count_nonzero(out) == 1
        sent += out[0]
    np.testing.assert_allclose(sent + state[9], 8 * u[0], rtol=1e-6)  # sent plus still owed = everything


def test_frames_sealed_concurrently_may_arrive_out_of_order_but_each_only_once():
    a, b, gate, sealer = _pair()
    first, second = sealer.seal("gossip", 1, a.id, b"1"), sealer.seal("state", 1, a.id, b"2")
    gate.open(second)  # the later frame wins the race over another stream
    gate.open(first)
    for frame in (first, second):
        with pytest.raises(E.Refused, match="replay|accepted before"):
            gate.open(frame)


def test_a_party_state_directory_serves_one_task_and_a_damaged_state_is_named(tmp_path):
    from deai.engine.api import build_data, build_model
    from deai.net.party_node import PartyNode
    from deai.party import PartyProgram, PartyShards
    from deai.train import LocalSpec

    cfg = parse_config({"data": {"dataset": "digits", "num_parties": 4}})
    fed = build_data(cfg)
    shards = PartyShards.from_federation(fed)
    shards.ids = shards.ids[:1]

    def node(task):
        party = PartyProgram(build_model(cfg, fed), shards)
        return PartyNode(cfg, party, LocalSpec(), None, tmp_path, lambda *a, **k: None, task_id=task)

    first = node("task-a")
    first.answered_round, first.answered_model, first.last_reply = 3, "m", ("update", b"bytes")
    first._save_state()
    again = node("task-a")
    assert again.answered_round == 3 and again.last_reply == ("update", b"bytes")
    with pytest.raises(ValueError, match="belongs to task task-a, not task-b"):
        node("task-b")
    (tmp_path / "party_state.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="damaged from outside"):
        node("task-a")
