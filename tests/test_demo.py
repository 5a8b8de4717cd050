"""The demo is the project's front door: it must run end to end and tell the truth in its report."""

import json

import pytest

from deai.demo import run_demo


@pytest.mark.slow
def test_demo_runs_end_to_end_and_writes_its_report(tmp_path):
    summary = run_demo(out=tmp_path, rounds=5)
    rows = {r["model"]: r for r in summary["collaboration"]["rows"]}
    assert {"local-only", "federated: fedavg", "federated: scaffold", "federated: fedadam", "pooled"} <= set(
        rows
    )
    assert summary["collaboration"]["seeds"] == [0, 1, 2, 3, 4]
    assert all(len(rows[m]["per_seed"]) == 5 for m in ("local-only", "pooled", "federated: scaffold"))
    page = (tmp_path / "report.html").read_text()
    for heading in ("Privacy: secure aggregation and leakage", "Privacy: differential privacy", "Robustness"):
        assert heading in page
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["robustness"][0]["defence"] == "(no attack)"
    verdicts = [r["verdict"] for r in summary["ledger"]]
    assert verdicts == ["valid", "caught", "caught"]  # as written; a rewritten entry; a lying aggregator
    assert "co-signatures" in summary["ledger"][2]["detail"]
    pay = summary["incentives"]
    copier, free_rider = pay[1], pay[3]
    assert copier["slashed"] == 10.0 and copier["paid"] < pay[0]["paid"]  # caught by commit-reveal
    assert free_rider["paid"] == 0.0 and free_rider["Shapley value"] < 0 < pay[2]["Shapley value"]
    jobs = [r["outcome"] for r in summary["compute_jobs"]]
    assert jobs[0] == "accepted" and jobs[1].startswith("caught")
    assert "provider B wrong at step 1337" in jobs[2]
    secagg_diff = float(summary["privacy"][0]["value"])
    assert secagg_diff < 1e-4  # secure aggregation reproduces plain FedAvg up to fixed-point precision
    nodes = {r["check"]: r["value"] for r in summary["nodes"]}
    assert nodes["same model as the simulator, bit for bit"] == "True"
    assert nodes["party killed after sending its masked input"].startswith("party 4")
    witnessed = {r["check"]: r["value"] for r in summary["validators"]}
    assert witnessed["rounds co-signed by more than 2/3 of the validators"] == "5 of 5"
    assert witnessed["false co-signatures refused by the aggregator"] == "5"
    signed = "rounds whose updates are each signed by its party node and committed before revealed"
    assert witnessed[signed] == "5 of 5"
    broken = "rounds party 7 revealed another update than it committed to: rejected and slashed"
    assert witnessed[broken] == "5 of 5"
    replicas = witnessed["ledger replicas (parties, validators) that verify against the signed head"]
    assert replicas == "14 of 14"
    assert "Real nodes" in page
