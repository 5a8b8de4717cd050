"""The ``deai`` command as a user runs it: real subprocesses, exit codes, files on disk."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def deai(*args, cwd, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "deai.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def write(tmp_path, text, name="cfg.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


GOOD = """
[run]
rounds = 3
[data]
dataset = "digits"
num_parties = 5
[strategy]
lr = 0.5
"""

BAD = {
    "typo": (GOOD.replace("num_parties", "num_partys"), "data.num_partys: unknown key"),
    "negative_lr": (GOOD.replace("lr = 0.5", "lr = -0.1"), "strategy.lr: Input should be greater than 0"),
    "alpha": (
        GOOD.replace("num_parties = 5", "num_parties = 5\npartition = 'dirichlet'\nalpha = 0"),
        "data.alpha: Input should be greater than 0",
    ),
    "too_many_parties": (GOOD.replace("num_parties = 5", "num_parties = 5000"), "num_parties (5000) exceeds"),
    "unknown_algorithm": (
        GOOD.replace("lr = 0.5", "algorithm = 'fedavgg'"),
        "strategy.algorithm: Input should be",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_exits_2_with_one_clear_error_and_writes_nothing(tmp_path, case):
    text, expected = BAD[case]
    cfg = write(tmp_path, text)
    before = sorted(tmp_path.rglob("*"))
    r = deai("run", str(cfg), "--json", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert expected in " ".join(r.stderr.split()), r.stderr
    assert "Traceback" not in r.stderr
    assert r.stdout == ""
    assert sorted(tmp_path.rglob("*")) == before


def test_run_json_prints_one_summary_and_writes_run_directory(tmp_path):
    cfg = write(tmp_path, GOOD)
    r = deai("run", str(cfg), "--json", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert {"final_accuracy", "rounds", "wall_time_s", "run_dir"} <= set(summary)
    assert summary["rounds"] == 3 and 0 < summary["final_accuracy"] <= 1
    out = Path(summary["run_dir"])
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["round"] for m in lines] == [1, 2, 3]
    for name in ("config.toml", "report.html", "final.npz", "summary.json", "checkpoints/latest.npz"):
        assert (out / name).exists(), name
    assert "<img" in (out / "report.html").read_text()


def test_out_directory_that_holds_a_run_is_refused(tmp_path):
    cfg = write(tmp_path, GOOD)
    assert deai("run", str(cfg), "--out", str(tmp_path / "out"), cwd=tmp_path).returncode == 0
    r = deai("run", str(cfg), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 2 and "--resume" in r.stderr


SLOW = """
[run]
rounds = 40
seed = 3
checkpoint_every = 10
[data]
dataset = "digits"
num_parties = 20
partition = "dirichlet"
alpha = 0.5
[model]
kind = "mlp"
hidden = 256
[strategy]
algorithm = "scaffold"
lr = 0.05
local_epochs = 20
[participation]
fraction = 0.5
dropout_rate = 0.1
[ledger]
validators = 3
sign_updates = true
"""


@pytest.mark.slow
def test_kill_9_then_resume_reaches_the_same_final_model(tmp_path):
    cfg = write(tmp_path, SLOW)
    ref = deai("run", str(cfg), "--json", "--out", str(tmp_path / "ref"), cwd=tmp_path, timeout=300)
    assert ref.returncode == 0, ref.stderr
    ref_hash = json.loads(ref.stdout)["model_hash"]

    crash_dir = tmp_path / "crash"
    proc = subprocess.Popen(
        [sys.executable, "-m", "deai.cli", "run", str(cfg), "--out", str(crash_dir)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ},
    )
    metrics = crash_dir / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 8:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(metrics.read_text().splitlines())
    assert 8 <= done < 40, f"the run should have been killed mid-way, it had {done} rounds"

    res = deai("run", "--resume", str(crash_dir), "--json", cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["model_hash"] == ref_hash
    rounds = [json.loads(x)["round"] for x in metrics.read_text().splitlines()]
    assert rounds == list(range(1, 41))
    # the ledger goes on with the same chain: every round once, the last one's model is the final model
    check = deai("ledger", "verify", str(crash_dir), "--json", cwd=tmp_path)
    verdict = json.loads(check.stdout)
    assert check.returncode == 0 and verdict["valid"], check.stderr
    assert verdict["rounds"] == 40 and verdict["validators"] == 3 and verdict["disputes"] == []
    shown = json.loads(deai("ledger", "show", str(crash_dir), "--json", cwd=tmp_path).stdout)
    results = [e for e in shown if e["kind"] == "round_result"]
    assert [e["round"] for e in results] == list(range(1, 41))
    assert results[-1]["body"]["model_sha256"] == out["model_hash"]


def test_resume_of_a_missing_directory_is_a_clear_error(tmp_path):
    r = deai("run", "--resume", str(tmp_path / "nope"), cwd=tmp_path)
    assert r.returncode == 2 and "not a deai run directory" in r.stderr


def test_value_prints_strict_json_of_each_party_and_refuses_bad_methods(tmp_path):
    cfg = write(tmp_path, GOOD)
    r = deai("value", str(cfg), "--method", "exact", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) == {"method", "utility", "values", "seconds"} and out["method"] == "exact"
    assert sorted(out["values"]) == [f"party-{p:03d}" for p in range(5)]
    human = deai("value", str(cfg), "--method", "loo", cwd=tmp_path)
    assert human.returncode == 0 and "loo values" in human.stderr + human.stdout
    bad = deai("value", str(cfg), "--method", "banzhaf", cwd=tmp_path)
    assert bad.returncode == 2 and "--method must be one of exact, gtg, tmc, loo" in bad.stderr
    missing = deai("value", str(tmp_path / "nope.toml"), cwd=tmp_path)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
