"""A run killed with ``kill -9`` and resumed keeps its server optimizer's state.

tests/test_cli.py kills a SCAFFOLD run, whose server SGD has no state, so a resume that restarted the
server optimizer from scratch would pass there. Here the server optimizer carries state that every later
round depends on: FedAdam, FedYogi and FedAdagrad (first and second moments, Reddi et al. 2021) and FedAvg
with server momentum (FedAvgM). Independent truth: the final model of the same config never interrupted.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deai.engine.api import run

ROUNDS = 25
KILL_AFTER = 3  # rounds logged before the kill: by then the server state has taken several steps

CONFIG = """
[run]
rounds = {rounds}
seed = 1
checkpoint_every = 10
[data]
dataset = "digits"
num_parties = 4
partition = "dirichlet"
alpha = 0.5
[model]
kind = "logreg"
[strategy]
lr = 0.1
local_epochs = 2
{strategy}
"""

SERVER_OPTIMIZERS = {
    "fedadam": 'algorithm = "fedadam"\nserver_lr = 0.03',
    "fedyogi": 'algorithm = "fedyogi"\nserver_lr = 0.03',
    "fedadagrad": 'algorithm = "fedadagrad"\nserver_lr = 0.1',
    "fedavg_momentum": 'algorithm = "fedavg"\nserver_lr = 0.1\nserver_momentum = 0.9',
}


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _kill_after_rounds(cfg: Path, run_dir: Path, rounds_done: int, timeout: float = 120) -> tuple[int, str]:
    """Start ``deai run CFG --out RUN_DIR`` and SIGKILL it once ``rounds_done`` rounds are logged.

    Returns how many metrics lines the killed run left behind, and its stderr.
    """
    log = run_dir.with_name(run_dir.name + ".stderr")
    with open(log, "w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "deai.cli", "run", str(cfg), "--out", str(run_dir)],
            cwd=cfg.parent,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        metrics = run_dir / "metrics.jsonl"
        try:
            deadline = time.monotonic() + timeout
            while _lines(metrics) < rounds_done and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    return _lines(metrics), log.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", sorted(SERVER_OPTIMIZERS))
def test_kill_9_then_resume_keeps_the_server_optimizer_state(tmp_path, optimizer):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(CONFIG.format(rounds=ROUNDS, strategy=SERVER_OPTIMIZERS[optimizer]))
    run_dir = tmp_path / "crash"
    done, stderr = _kill_after_rounds(cfg, run_dir, KILL_AFTER)
    assert KILL_AFTER <= done < ROUNDS, f"the kill should land mid-run; it had logged {done} rounds\n{stderr}"

    resume = subprocess.Popen(
        [sys.executable, "-m", "deai.cli", "run", "--resume", str(run_dir), "--json"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        uninterrupted = run(cfg, write=False)  # meanwhile, in this process
        out, err = resume.communicate(timeout=120)
    finally:
        if resume.poll() is None:
            os.kill(resume.pid, signal.SIGKILL)
            resume.wait(timeout=30)
    assert uninterrupted.rounds == ROUNDS and uninterrupted.stopped is None
    assert resume.returncode == 0, err
    summary = json.loads(out)
    assert summary["rounds"] == ROUNDS
    assert summary["model_hash"] == uninterrupted.model_hash
