"""The star over gRPC, measured: a 100 MB update against a raw loopback socket, the aggregator's memory,
the per-round overhead of real processes over the simulator, and bytes on the wire with compression.

1. **Streaming.** A party process sends one update of ``--mb`` MB (float32) to an aggregator process: signed
   envelope, 1 MiB chunks over a gRPC stream, reassembled into one buffer, SHA-256 and signature checked,
   decoded into the update row. The same bytes then go over a plain TCP loopback socket between the same
   kind of processes (``sendall`` / ``recv_into`` a preallocated buffer). Both are timed from the first
   byte sent to the receiver's acknowledgement; the receiver reports its peak resident memory growth.
2. **Round overhead.** The same task (digits, 10 parties, logistic regression, 20 rounds) in the simulator
   and as 10 party processes plus an aggregator (``deai launch``): the server's time per round.
3. **Bytes per party per round** on the wire (digits MLP, 10 parties), compression off, int8, top-k 5%
   and top-k 5% + int8, from the aggregator's per-round log.

    .venv/bin/python benchmarks/bench_network.py [--mb 100] [--repeats 3] [--skip-rounds]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import socket
import tempfile
import time
from pathlib import Path

import numpy as np

CHUNK = 1 << 20


def _rss_mb() -> float:
    """This process's peak resident set (VmHWM), MB; unlike ``ru_maxrss`` it is not inherited at fork."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def _grpc_receiver(conn, sender_pub: bytes, dim: int) -> None:  # noqa: ANN001
    from deai.net.envelope import Gate, Sealer
    from deai.net.events import EventLog
    from deai.net.payloads import read_update
    from deai.net.star import StarHub
    from deai.verify.identity import Identity

    me = Identity.generate("aggregator")
    from deai.verify.identity import key_id

    gate = Gate("bench", me.id, {key_id(sender_pub): sender_pub}, 1 << 31)
    hub = StarHub(
        "127.0.0.1:0", gate, Sealer(me, "bench"), {key_id(sender_pub): 0}, EventLog("agg", echo=None)
    )
    base = _rss_mb()
    conn.send((hub.port, me.public_key))
    for _ in range(conn.recv()):
        party, env = hub.inbox.get(timeout=600)
        batch = read_update(env.body, dim)
        assert batch.deltas.shape == (1, dim)
        conn.send(("got", _rss_mb() - base))
        del env, batch
    hub.close()


def _socket_receiver(conn, nbytes: int) -> None:  # noqa: ANN001
    srv = socket.create_server(("127.0.0.1", 0))
    buf = bytearray(nbytes)
    view = memoryview(buf)
    conn.send(srv.getsockname()[1])
    for _ in range(conn.recv()):
        s, _ = srv.accept()
        got = 0
        while got < nbytes:
            got += s.recv_into(view[got:], min(CHUNK, nbytes - got))
        s.close()
        conn.send("got")
    srv.close()


def streaming(mb: int, repeats: int) -> dict[str, float]:
    from deai.messages import UpdateBatch
    from deai.net.envelope import Gate, Sealer
    from deai.net.events import EventLog
    from deai.net.payloads import HELLO, UPDATE, update_body
    from deai.net.star import StarLink
    from deai.verify.identity import Identity

    dim = mb * (1 << 20) // 4
    rng = np.random.default_rng(0)
    row = rng.normal(size=(1, dim)).astype(np.float32)
    batch = UpdateBatch(np.array([0]), np.array([1]), np.array([0]), row, np.array([1.0]), np.array([1]), {})
    body = update_body(batch, None)
    ctx = mp.get_context("spawn")
    party = Identity.generate("party")
    # gRPC, signed and chunked
    here, there = ctx.Pipe()
    proc = ctx.Process(target=_grpc_receiver, args=(there, party.public_key, dim))
    proc.start()
    port, agg_pub = here.recv()
    from deai.verify.identity import key_id

    gate = Gate("bench", party.id, {key_id(agg_pub): agg_pub}, 1 << 31)
    link = StarLink(
        f"127.0.0.1:{port}", gate, Sealer(party, "bench"), key_id(agg_pub), EventLog("p", echo=None)
    )
    here.send(repeats)
    link.send(HELLO, 0, b"")
    grpc_s, growth = [], []
    for r in range(repeats):
        t0 = time.perf_counter()
        link.send(UPDATE, r + 1, body)
        _, grew = here.recv()
        grpc_s.append(time.perf_counter() - t0)
        growth.append(grew)
    link.close()
    proc.join(60)
    # a raw socket, the same bytes
    here, there = ctx.Pipe()
    proc = ctx.Process(target=_socket_receiver, args=(there, len(body)))
    proc.start()
    port = here.recv()
    here.send(repeats)
    raw_s = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(body)
        here.recv()
        raw_s.append(time.perf_counter() - t0)
    proc.join(60)
    size_mb = len(body) / 2**20
    g, s = min(grpc_s), min(raw_s)
    return {
        "update_mb": round(size_mb, 1),
        "grpc_s": round(g, 3),
        "grpc_mb_per_s": round(size_mb / g, 1),
        "raw_socket_s": round(s, 3),
        "raw_socket_mb_per_s": round(size_mb / s, 1),
        "grpc_over_raw": round(g / s, 2),
        "aggregator_peak_growth_mb": round(max(growth), 1),
        "growth_each_mb": [round(x, 1) for x in growth],
        "growth_over_update_size": round(max(growth) / size_mb, 2),
    }


def _task(**sections):  # noqa: ANN003
    from deai.config import parse_config

    cfg = {
        "run": {"name": "bench-net", "rounds": 20, "seed": 3},
        "data": {"dataset": "digits", "num_parties": 10, "partition": "dirichlet", "alpha": 0.5},
        "strategy": {"lr": 0.3},
    }
    for k, v in sections.items():
        cfg.setdefault(k, {}).update(v)
    return parse_config(cfg)


def round_overhead(where: Path) -> dict[str, float]:
    import deai
    from deai.net.launch import launch

    cfg = _task()
    sim = deai.run(cfg, write=False)
    net = launch(cfg, where / "overhead", timeout=600)
    assert net["model_hash"] == sim.model_hash, "network and simulator must agree bit for bit"
    lines = [
        json.loads(x)
        for x in (where / "overhead/nodes/aggregator/run/metrics.jsonl").read_text().splitlines()
    ]
    walls = np.diff([0.0] + [m["wall_time_s"] for m in lines])
    sim_walls = np.diff([0.0] + [m["wall_time_s"] for m in sim.history])
    return {
        "rounds": len(lines),
        "simulator_ms_per_round": round(1000 * float(np.median(sim_walls)), 2),
        "network_ms_per_round": round(1000 * float(np.median(walls)), 2),
        "overhead_ms_per_round": round(1000 * float(np.median(walls) - np.median(sim_walls)), 2),
        "same_model_hash": True,
    }


def wire_bytes(where: Path) -> list[dict[str, float]]:
    from deai.net.launch import LocalFederation, launch

    out = []
    for kind in ("none", "int8", "topk", "topk_int8"):
        cfg = _task(run={"rounds": 5}, model={"kind": "mlp", "hidden": 256},
                    compression={"kind": kind, "topk_fraction": 0.05})  # fmt: skip
        summary = launch(cfg, where / f"bytes-{kind}", timeout=600)
        events = LocalFederation(cfg, where / f"bytes-{kind}").events("aggregator")
        rounds = [e for e in events if e["event"] == "round"]
        per = sum(e["bytes_in"] for e in rounds) / (len(rounds) * 10)
        out.append(
            {
                "compression": kind,
                "bytes_in_per_party_round": round(per),
                "accuracy": summary["final_accuracy"],
            }
        )
    dense = out[0]["bytes_in_per_party_round"]
    for row in out:
        row["ratio_to_dense"] = round(dense / row["bytes_in_per_party_round"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-rounds", action="store_true", help="only the streaming measurement")
    args = ap.parse_args()
    result = {"streaming": streaming(args.mb, args.repeats)}
    print(json.dumps(result["streaming"]), flush=True)
    if not args.skip_rounds:
        with tempfile.TemporaryDirectory() as tmp:
            result["round_overhead"] = round_overhead(Path(tmp))
            print(json.dumps(result["round_overhead"]), flush=True)
            result["wire_bytes"] = wire_bytes(Path(tmp))
            for row in result["wire_bytes"]:
                print(json.dumps(row), flush=True)
    out = Path(__file__).parent / "results" / "bench_network.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {out}")


if __name__ == "__main__":
    main()
