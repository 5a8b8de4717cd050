"""A party cut off from the aggregator by a real network partition, then healed; a peer with no inbound port.

The test makes its own network namespace joined to the host by a veth pair (10.77.x.1 on the host side,
10.77.x.2 inside), runs party 9 inside it, and takes the namespace's end of the link down and up again.
The aggregator listens on loopback (for the other parties) and on the veth address only. Everything the
test creates is removed in ``finally``, and every process is ended by PID.
"""

import json
import time

import numpy as np
import pytest

from deai.config import parse_config
from deai.net.launch import LocalFederation

from .conftest import ip

pytestmark = [pytest.mark.network, pytest.mark.slow]


def test_a_partitioned_party_misses_rounds_by_deadline_and_rejoins_when_healed(tmp_path, namespace):
    ns, ns_end, host_ip = namespace
    cfg = parse_config({
        "run": {"name": "partition", "rounds": 50, "seed": 7, "checkpoint_every": 1},
        "data": {"dataset": "digits", "num_parties": 10, "partition": "dirichlet", "alpha": 0.5},
        "strategy": {"lr": 0.3},
        "network": {"min_round_s": 0.3, "reconnect_s": 120, "join_timeout_s": 90},
    })  # fmt: skip
    with LocalFederation(cfg, tmp_path / "fed") as fed:
        fed.prepare()
        address = fed.start_aggregator(listen=f"127.0.0.1:0,{host_ip}:0")
        port = address.split(",")[0].rpartition(":")[2]
        for p in range(9):
            fed.start_party(p)
        fed.start_party(9, connect=f"{host_ip}:{port}", wrap=("ip", "netns", "exec", ns))
        path = fed.state_dir("aggregator") / "run" / "metrics.jsonl"

        def rounds_done():
            return len(path.read_text().splitlines()) if path.is_file() else 0

        end = time.monotonic() + 120
        while rounds_done() < 4 and time.monotonic() < end:
            time.sleep(0.1)
        assert rounds_done() >= 4, fed.stderr("aggregator")
        cut_at = rounds_done()
        ip("netns", "exec", ns, "ip", "link", "set", ns_end, "down")  # the partition
        time.sleep(6)
        healed_at = rounds_done()
        ip("netns", "exec", ns, "ip", "link", "set", ns_end, "up")  # healed
        assert fed.wait_aggregator(300) == 0, fed.stderr("aggregator")
        lines = [json.loads(x) for x in path.read_text().splitlines()]
        agg = fed.events("aggregator")
        party9 = fed.events("party-00009")
    assert [m["round"] for m in lines] == list(range(1, 51))
    missed = [m for m in lines if m["participants"] < 10]
    assert missed and min(m["round"] for m in missed) > cut_at - 1  # it answered every round before the cut
    assert all(m["dropped"] + m["stragglers"] == 10 - m["participants"] for m in missed)
    # the cut-off party is waited for until the (adapted) deadline or until the stream is seen dead, never
    # for network.round_timeout_s (300 s)
    times = [e["t"] for e in agg if e["event"] == "round"]
    assert float(np.diff(times).max()) < 30
    trained = [e["round"] for e in party9 if e["event"] == "trained"]
    assert trained[-1] == 50 and any(r > healed_at for r in trained)  # back in after healing
    assert lines[-1]["participants"] == 10
    assert len(trained) == len(set(trained))
