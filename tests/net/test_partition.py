"""A party cut off from the aggregator by a real network partition, then healed; a peer with no inbound port.

The test makes its own network namespace joined to the host by a veth pair (10.77.x.1 on the host side,
10.77.x.2 inside), runs party 9 inside it, and takes the namespace's end of the link down and up again.
The aggregator listens on loopback (for the other parties) and on the veth address only. Everything the
test creates is removed in ``finally``, and every process is ended by PID.
"""

import json
import os
import shutil
import socket
import subprocess
import time

import numpy as np
import pytest

from deai.config import parse_config
from deai.net.launch import LocalFederation

pytestmark = [pytest.mark.network, pytest.mark.slow]


def ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True, timeout=30)


@pytest.fixture
def namespace():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")
    n = os.getpid() % 200 + 20
    ns, host_end, ns_end = f"deai-part-{n}", f"dpa{n}", f"dpb{n}"
    try:
        ip("netns", "add", ns)
        ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
        ip("link", "set", ns_end, "netns", ns)
        ip("addr", "add", f"10.77.{n}.1/24", "dev", host_end)
        ip("link", "set", host_end, "up")
        ip("netns", "exec", ns, "ip", "addr", "add", f"10.77.{n}.2/24", "dev", ns_end)
        ip("netns", "exec", ns, "ip", "link", "set", ns_end, "up")
        ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield ns, ns_end, f"10.77.{n}.1"
    finally:
        ip("link", "del", host_end, check=False)
        ip("netns", "del", ns, check=False)


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


def test_a_peer_with_no_inbound_port_gossips_on_the_connections_it_dials(tmp_path, namespace):
    """Peer 4 runs in the namespace and listens only on the namespace's own loopback: no other peer can
    open a connection to it (as behind a NAT or a firewall that admits no inbound). It dials out to the
    bootstrap peer through the veth link. Every exchange of every round must still happen, so all five
    models equal the in-process gossip reference bit for bit."""
    pytest.importorskip("hivemind")
    from .gossip_reference import gossip_reference
    from .test_gossip_rules import p2p_task
    from .test_p2p_processes import final_models

    ns, _, host_ip = namespace
    cfg = p2p_task()
    with LocalFederation(cfg, tmp_path / "p2p") as fed:
        fed.prepare()
        public = {p: ["--listen", f"{host_ip}:0"] for p in range(4)}
        fed.start_peers(*range(4), extra=public)
        fed.start_peers(4, extra={4: ["--listen", "127.0.0.1:0"]}, wrap={4: ("ip", "netns", "exec", ns)})
        address = fed.state_dir("party-00004") / "address"
        end = time.monotonic() + 60
        while not address.is_file() and time.monotonic() < end:
            time.sleep(0.1)
        port = int(address.read_text().split(",")[0].split("/tcp/")[1].split("/")[0])
        with pytest.raises(OSError):  # while it runs: its port is closed to everyone outside it
            socket.create_connection((host_ip.rsplit(".", 1)[0] + ".2", port), timeout=3).close()
        for p in range(5):
            assert fed.procs[fed.party_name(p)].wait(240) == 0, fed.stderr(fed.party_name(p))
        got = final_models(fed)
        hidden = fed.events("party-00004")
    ref, _ = gossip_reference(cfg)
    np.testing.assert_array_equal(got, ref)
    listening = [e for e in hidden if e["event"] == "listening"][0]
    assert all("/ip4/127.0.0.1/" in m for m in listening["maddrs"])  # nothing another peer could dial
    assert not [e for e in hidden if e["event"] in ("send_failed", "refused")]
