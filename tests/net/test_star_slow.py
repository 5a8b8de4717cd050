"""Slower networked variants, behind their own marker: ``pytest -m network_slow`` (CI runs them too).

Compression on the wire, FedBuff with real stragglers, and a party's own privacy budget across a crash:
each starts real processes like ``test_star_processes.py`` (whose helpers it uses) and ends them by PID.
"""

import signal

import numpy as np
import pytest

from deai.net.launch import LocalFederation, launch

from .test_star_processes import metrics, simulated_hash, task, wait_until

pytestmark = [pytest.mark.network_slow, pytest.mark.slow]


def test_compressed_updates_cross_the_wire_smaller_and_reach_the_simulators_model(tmp_path):
    received = {}
    for kind in ("none", "topk_int8"):
        cfg = task(
            rounds=3, model={"kind": "mlp", "hidden": 64}, compression={"kind": kind, "topk_fraction": 0.05}
        )
        summary = launch(cfg, tmp_path / kind, timeout=240)
        assert summary["model_hash"] == simulated_hash(cfg)
        rounds = [
            e for e in LocalFederation(cfg, tmp_path / kind).events("aggregator") if e["event"] == "round"
        ]
        received[kind] = sum(e["bytes_in"] for e in rounds) / (3 * 10)  # per party per round
    assert received["topk_int8"] < received["none"] / 6, received  # measured 8.0x at 5% top-k, 8 bits


def test_fedbuff_over_the_wire_does_not_hold_fast_parties_back_and_ledgers_staleness(tmp_path):
    from deai.verify.ledger import read_entries

    gaps = {}
    for mode, sections in {
        "sync": {},
        "fedbuff": {"participation": {"async_buffer": 5, "concurrency": 10}},
    }.items():
        cfg = task(rounds=6, run={"eval_every": 6}, **sections)
        with LocalFederation(cfg, tmp_path / mode) as fed:
            fed.prepare()
            fed.start_aggregator()
            for p in range(10):
                fed.start_party(p, *(["--fault", "slow:0.6"] if p >= 7 else []))
            assert fed.wait_aggregator(240) == 0, fed.stderr("aggregator")
            times = [e["t"] for e in fed.events("aggregator") if e["event"] == "round"]
            lines = metrics(fed)
        gaps[mode] = float(np.median(np.diff(times)))
        assert len(lines) == 6
    assert gaps["fedbuff"] < gaps["sync"] / 2, gaps  # sync waits for the three slow parties every round
    assert max(m["staleness_max"] for m in lines) >= 1
    results = [
        e
        for e in read_entries(tmp_path / "fedbuff/nodes/aggregator/run/ledger.db")
        if e["kind"] == "round_result"
    ]
    assert len(results) == 6 and all("staleness_counts" in e["body"] for e in results)


def test_each_party_node_enforces_its_own_privacy_budget_across_a_crash(tmp_path):
    """Under central DP with keyed noise the network run is the simulator's bit for bit, each party
    declining once one more round would pass its own epsilon; a party killed and restarted keeps its
    count (it is in its saved state), so a crash cannot reset its budget."""
    private = {"mode": "central", "noise_multiplier": 2.0, "clip_norm": 1.0, "party_budget_epsilon": 5.0,
               "simulation": True}  # fmt: skip
    cfg = task(rounds=6, privacy=private)
    summary = launch(cfg, tmp_path / "plain", timeout=240)
    assert summary["model_hash"] == simulated_hash(cfg)
    events = LocalFederation(cfg, tmp_path / "plain").events("party-00000")
    assert [e["round"] for e in events if e["event"] == "trained"] == [1, 2, 3, 4]  # 4 rounds fit in eps 5
    assert [e["round"] for e in events if e["event"] == "declined"] == [5, 6]
    cfg = task(rounds=16, privacy=private, network={"min_round_s": 0.5})  # ~7 s to restart and rejoin
    with LocalFederation(cfg, tmp_path / "crash") as fed:
        fed.prepare()
        fed.start_aggregator()
        for p in range(10):
            fed.start_party(p, *(["--fault", "crash-after:train:2"] if p == 0 else []))
        assert fed.procs["party-00000"].wait(120) == 137
        fed.start_party(0)
        assert fed.wait_aggregator(240) == 0, fed.stderr("aggregator")
        events = fed.events("party-00000")
    trained = [e["round"] for e in events if e["event"] == "trained"]
    declined = [e["round"] for e in events if e["event"] == "declined"]
    assert [e["answered_round"] for e in events if e["event"] == "restored"] == [2]
    assert len(trained) == 4 and trained[:2] == [1, 2] and declined and min(declined) > max(trained)


def test_a_party_given_a_fresh_certificate_mid_run_rejoins_from_its_state(tmp_path):
    """Certificate rotation as documented: the owner issues party 3 a new certificate from the same task
    CA, the party restarts with the same state directory and takes part again; it never trains a round
    twice."""
    from deai.net.tls import issue

    cfg = task(rounds=8, network={"min_round_s": 1.0, "reconnect_s": 60, "join_timeout_s": 60})
    with LocalFederation(cfg, tmp_path / "fed", tls=True) as fed:
        fed.prepare()
        fed.start_aggregator()
        for p in range(10):
            fed.start_party(p)
        wait_until(lambda: len(metrics(fed)) >= 2, 120, "two rounds")
        old = (fed.out / "tls" / "party-00003" / "node.crt").read_bytes()
        fed.kill("party-00003", signal.SIGTERM)
        issue(fed.out / "tls" / "ca", "party-00003", fed.out / "tls" / "party-00003")
        assert (fed.out / "tls" / "party-00003" / "node.crt").read_bytes() != old
        fed.start_party(3)
        assert fed.wait_aggregator(240) == 0, fed.stderr("aggregator")
        trained = [e["round"] for e in fed.events("party-00003") if e["event"] == "trained"]
        lines = metrics(fed)
    assert len(trained) == len(set(trained)) and trained[-1] == 8  # back in, each round once
    assert lines[-1]["participants"] == 10


def test_homomorphic_aggregation_over_the_wire_sums_ciphertexts_to_plain_fedavg(tmp_path):
    """Under he_ckks each party node encrypts its own weighted update (the public context arrives as a
    phase message); the aggregator adds ciphertexts and the key holder decrypts only the sum. The model
    matches plain FedAvg up to CKKS's flooded decryption noise, and what arrives is ciphertext-sized."""
    import deai
    from deai.params import load_params

    pytest.importorskip("tenseal")
    plain_cfg = task(rounds=3, data={"num_parties": 4})
    he_cfg = task(rounds=3, data={"num_parties": 4}, strategy={"aggregator": "he_ckks"})
    summary = launch(he_cfg, tmp_path / "he", timeout=240)
    assert summary["rounds"] == 3
    got = load_params(tmp_path / "he" / "nodes" / "aggregator" / "run" / "final.npz")[0]
    plain = deai.run(plain_cfg, write=False)
    assert np.abs(got - plain.params).max() < 1e-3  # measured 1.1e-4 (the simulator's own HE: 9.7e-5)
    assert summary["final_accuracy"] == pytest.approx(plain.final_accuracy, abs=0.01)
    rounds = [
        e for e in LocalFederation(he_cfg, tmp_path / "he").events("aggregator") if e["event"] == "round"
    ]
    plain_bytes = 4 * got.size * 4  # one round's float32 updates from 4 parties
    assert all(e["bytes_in"] > 50 * plain_bytes for e in rounds)  # ciphertexts: measured 128x (1.33 MB)
