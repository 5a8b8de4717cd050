"""The ``deai`` command against a hostile user: bad paths, odd names, signals, diverging runs, strict JSON.

Each test is a regression test for a defect found by trying deai as a hostile user would.
"""

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time

import pytest

from tests.test_cli import GOOD, deai, write


def strict_json(text: str):
    """Parse as strict JSON: Python's json accepts NaN/Infinity unless told not to."""

    def refuse(token):
        raise ValueError(f"non-standard JSON constant {token}")

    return json.loads(text, parse_constant=refuse)


def nothing_written(tmp_path, before):
    return sorted(tmp_path.rglob("*")) == before


def test_out_that_is_a_file_exits_2(tmp_path):
    cfg = write(tmp_path, GOOD)
    (tmp_path / "afile").write_text("mine")
    r = deai("run", str(cfg), "--out", str(tmp_path / "afile"), cwd=tmp_path)
    assert r.returncode == 2 and "exists and is not a directory" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert (tmp_path / "afile").read_text() == "mine"


def test_unwritable_out_exits_2_in_one_line(tmp_path):
    cfg = write(tmp_path, GOOD)
    r = deai("run", str(cfg), "--out", "/proc/deai-cannot-write-here", cwd=tmp_path)
    assert r.returncode == 2 and "cannot write /proc/deai-cannot-write-here" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("name", ["../../escape", "/tmp/absolute", "a/b", ".hidden", ""])
def test_run_name_cannot_leave_runs(tmp_path, name):
    cfg = write(tmp_path, GOOD.replace("[run]", f"[run]\nname = {json.dumps(name)}"))
    before = sorted(tmp_path.rglob("*"))
    r = deai("run", str(cfg), cwd=tmp_path)
    assert r.returncode == 2 and "run.name" in r.stderr
    assert nothing_written(tmp_path, before) and not (tmp_path.parent / "escape").exists()


def test_square_brackets_in_paths_are_printed_as_given(tmp_path):
    cfg = write(tmp_path, GOOD.replace("lr = 0.5", "lr = -1"), name="exp[v2].toml")
    r = deai("run", str(cfg), cwd=tmp_path)
    assert r.returncode == 2 and "exp[v2].toml" in r.stderr
    r = deai("run", "cfg[/]x.toml", cwd=tmp_path)  # used to crash the error printer
    assert r.returncode == 2 and "cfg[/]x.toml" in r.stderr and "Traceback" not in r.stderr


def test_a_directory_given_as_config_is_named_as_such(tmp_path):
    r = deai("run", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 2 and "is a directory" in r.stderr


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("[data]\nnum_parties = '3'\n", "data.num_parties: Input should be a valid integer"),
        ("[strategy]\nlocal_epochs = true\n", "strategy.local_epochs: Input should be a valid integer"),
        ("[strategy]\nlr = '0.5'\n", "strategy.lr: Input should be a valid number"),
        ("[participation]\ndropout_rate = 0.999\n", "participation.dropout_rate 0.999 leaves"),
        (
            "[strategy]\nclip_norm = 2.0\n[privacy]\nmode = 'central'\n",
            "strategy.clip_norm and privacy.mode both clip updates",
        ),
    ],
)
def test_silent_conversions_and_conflicts_are_errors(tmp_path, text, field):
    cfg = write(tmp_path, text)
    r = deai("run", str(cfg), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert field in " ".join(r.stderr.split())
    assert not (tmp_path / "out").exists()


def test_empty_config_and_no_op_settings_are_warned_about(tmp_path):
    empty = write(tmp_path, "", name="empty.toml")
    r = deai("run", str(empty), "--rounds", "1", "--out", str(tmp_path / "a"), cwd=tmp_path)
    assert r.returncode == 0 and "warning: " in r.stderr and "sets nothing" in r.stderr
    noop = write(tmp_path, GOOD + "[privacy]\nnoise_multiplier = 3.0\n", name="noop.toml")
    r = deai("run", str(noop), "--out", str(tmp_path / "b"), cwd=tmp_path)
    assert r.returncode == 0
    assert "privacy.noise_multiplier has no effect while privacy.mode is 'none'" in r.stderr


def test_diverging_run_stops_with_exit_3_and_strict_json(tmp_path):
    cfg = write(
        tmp_path,
        "[run]\nrounds = 5\n[data]\ndataset = 'breast_cancer'\nnum_parties = 8\n"
        "[model]\nkind = 'mlp'\nhidden = 32\n[strategy]\nlr = 1e6\nlocal_epochs = 2\n",
    )
    out = tmp_path / "out"
    r = deai("run", str(cfg), "--json", "--out", str(out), cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    assert "diverged" in r.stderr and "Lower strategy.lr (now 1e+06)" in r.stderr
    summary = strict_json(r.stdout)
    assert summary["diverged"] is True and summary["rounds"] < 5
    assert strict_json((out / "summary.json").read_text()) == summary
    for line in (out / "metrics.jsonl").read_text().splitlines():
        strict_json(line)


def test_ctrl_c_names_the_run_directory_to_resume(tmp_path):
    cfg = write(tmp_path, GOOD.replace("rounds = 3", "rounds = 100000"))
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "deai.cli", "run", str(cfg), "--out", str(out)],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
        # a shell's background job inherits SIGINT ignored, and Python then never raises KeyboardInterrupt
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        wait_for_rounds(out / "metrics.jsonl", 3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert f"deai run --resume {out}" in err and "RUN_DIR" not in err


def test_sigterm_restores_the_cursor_and_keeps_the_run_resumable(tmp_path):
    """On a terminal the progress bar hides the cursor (ESC[?25l); SIGTERM must show it again (ESC[?25h)."""
    cfg = write(tmp_path, GOOD.replace("rounds = 3", "rounds = 100000"))
    out = tmp_path / "out"
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "deai.cli", "run", str(cfg), "--out", str(out)],
        cwd=tmp_path,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env={**os.environ, "TERM": "xterm", "COLUMNS": "100"},
    )
    os.close(follower)
    seen = b""
    try:
        wait_for_rounds(out / "metrics.jsonl", 3)
        proc.send_signal(signal.SIGTERM)
        deadline = time.time() + 60
        while time.time() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
        proc.wait(timeout=30)
    finally:
        proc.kill()
        os.close(leader)
    assert proc.returncode == 143
    assert b"\x1b[?25l" in seen and seen.rindex(b"\x1b[?25h") > seen.rindex(b"\x1b[?25l")
    assert b"terminated" in seen
    # metrics.jsonl is written before latest.npz, so the checkpoint is at done or done - 1
    done = len((out / "metrics.jsonl").read_text().splitlines())
    assert done >= 3
    shorter = deai("run", "--resume", str(out), "--rounds", str(done - 2), cwd=tmp_path)
    assert shorter.returncode == 2 and "cannot be shortened" in shorter.stderr
    assert len((out / "metrics.jsonl").read_text().splitlines()) == done
    r = deai("run", "--resume", str(out), "--rounds", str(done + 2), "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert strict_json(r.stdout)["rounds"] == done + 2


def test_late_config_errors_exit_2_without_traceback(tmp_path):
    """Errors found only when the engine builds its parts (aggregator or attack options)."""
    bad_rule = GOOD + "[strategy.aggregator_options]\nnot_an_option = 1\n"
    bad_rule = bad_rule.replace("lr = 0.5", "lr = 0.5\naggregator = 'krum'")
    bad_attack = GOOD + "[attack]\nkind = 'ipm'\nfraction = 0.2\noptions = {bogus = 1}\n"
    for text in (bad_rule, bad_attack):
        cfg = write(tmp_path, text)
        r = deai("run", str(cfg), "--out", str(tmp_path / "o"), cwd=tmp_path)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert "options" in r.stderr and not (tmp_path / "o").exists()


def test_privacy_epsilon_json_is_strict_with_zero_noise(tmp_path):
    r = deai(
        "privacy",
        "epsilon",
        "--noise-multiplier",
        "0",
        "--sampling-rate",
        "0.1",
        "--steps",
        "10",
        "--json",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert strict_json(r.stdout)["epsilon"] is None  # infinite: documented as null


def wait_for_rounds(metrics, n, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"{metrics} did not reach {n} rounds in {timeout} s")
