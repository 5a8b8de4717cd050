"""Resume against a damaged or edited run directory: fall back, refuse, or repair; never lose a round."""

import json
import warnings

import numpy as np
import pytest

from deai.config import ConfigError, ConfigWarning
from deai.engine.api import resume, run
from deai.engine.rundir import ResumeWarning, RunDirectory, RunWriteError
from tests.conftest import make_config

CFG = make_config(run={"rounds": 6, "checkpoint_every": 2}, data={"num_parties": 5})


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished 6-round run, copied by each test that damages it."""
    out = tmp_path_factory.mktemp("runs") / "ok"
    result = run(CFG, out=out)
    return out, result


def copy_of(finished, tmp_path):
    import shutil

    src, _ = finished
    dst = tmp_path / "run"
    shutil.copytree(src, dst)
    return dst


def rolled_back(run_dir, round_):
    """As after a crash at ``round_``: latest.npz is that round's checkpoint and final.npz is gone."""
    ck = run_dir / "checkpoints"
    (ck / "latest.npz").write_bytes((ck / f"round-{round_:05d}.npz").read_bytes())
    for later in ck.glob("round-*.npz"):
        if int(later.stem.split("-")[1]) > round_:
            later.unlink()
    (run_dir / "final.npz").unlink()


DAMAGE = {
    "truncated": lambda b: b[: len(b) // 2],
    "empty": lambda b: b"",
    "random_bytes": lambda b: np.random.default_rng(0).bytes(len(b)),
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_damaged_latest_falls_back_to_newest_numbered_checkpoint(finished, tmp_path, damage):
    d = copy_of(finished, tmp_path)
    rolled_back(d, 4)
    latest = d / "checkpoints" / "latest.npz"
    latest.write_bytes(damage(latest.read_bytes()))
    with pytest.warns(ResumeWarning, match=r"skipped damaged checkpoint\(s\) latest\.npz.*round-00004\.npz"):
        result = resume(d)
    assert result.model_hash == finished[1].model_hash  # same final model as never interrupted
    assert [m["round"] for m in result.history] == [1, 2, 3, 4, 5, 6]
    assert (d / "checkpoints" / "latest.npz.damaged").exists()  # kept, not deleted


def test_no_usable_checkpoint_is_a_clear_error_that_changes_nothing(finished, tmp_path):
    d = copy_of(finished, tmp_path)
    for f in (d / "checkpoints").iterdir():
        f.write_bytes(b"\x00" * 50)
    before = {p.name: p.read_bytes() for p in (d / "checkpoints").iterdir()}
    metrics = (d / "metrics.jsonl").read_text()
    with pytest.raises(ConfigError, match="no usable checkpoint in .*latest.npz .*round-00006.npz"):
        resume(d)
    assert {p.name: p.read_bytes() for p in (d / "checkpoints").iterdir()} == before
    assert (d / "metrics.jsonl").read_text() == metrics


def test_kill_during_numbered_checkpoint_write_recreates_it(finished, tmp_path):
    """Numbered checkpoints are written before latest.npz, so a kill between them redoes the round."""
    d = copy_of(finished, tmp_path)
    ck = d / "checkpoints"
    rolled_back(d, 2)  # latest is round 2 ... (later rounds' numbered checkpoints are gone)
    (ck / "round-00004.npz.tmp").write_bytes(b"partial")  # ... and round 4's write was torn
    result = resume(d)
    assert not list(ck.glob("*.tmp"))
    assert sorted(p.name for p in ck.glob("round-*.npz")) == [
        "round-00002.npz",
        "round-00004.npz",
        "round-00006.npz",
    ]
    assert result.model_hash == finished[1].model_hash


def test_checkpoint_order_is_numbered_then_latest(tmp_path, monkeypatch):
    import deai.engine.rundir as rundir

    written = []
    real = rundir.save_params
    monkeypatch.setattr(
        rundir, "save_params", lambda path, *a, **k: (written.append(path.name), real(path, *a, **k))
    )
    run(make_config(run={"rounds": 2, "checkpoint_every": 2}), out=tmp_path / "r")
    assert written == ["latest.npz", "round-00002.npz", "latest.npz"]


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (("lr = 0.5", "lr = 0.25"), "strategy.lr"),
        (("num_parties = 5", "num_parties = 4"), "data.num_parties"),
    ],
)
def test_edited_config_is_refused_on_resume(finished, tmp_path, edit, field):
    d = copy_of(finished, tmp_path)
    rolled_back(d, 4)
    cfg = d / "config.toml"
    assert edit[0] in cfg.read_text()
    cfg.write_text(cfg.read_text().replace(*edit))
    with pytest.raises(ConfigError, match=rf"was edited after the run started \({field}: "):
        resume(d)


def test_more_rounds_on_resume_are_allowed_and_recorded(finished, tmp_path):
    d = copy_of(finished, tmp_path)
    with pytest.warns(ConfigWarning, match="run.rounds changed from 6 to 9"):
        result = resume(d, rounds=9)
    assert result.rounds == 9
    assert "rounds = 9" in (d / "config.toml").read_text()
    longer = run({**CFG, "run": {**CFG["run"], "rounds": 9}}, write=False)
    assert result.model_hash == longer.model_hash


def test_damaged_metrics_line_in_the_middle_keeps_the_rounds_after_it(finished, tmp_path):
    d = copy_of(finished, tmp_path)
    rolled_back(d, 6)
    lines = (d / "metrics.jsonl").read_text().splitlines()
    lines[2] = "{not json"
    (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.warns(ResumeWarning, match=r"line\(s\) 3 are not valid metrics"):
        result = resume(d)
    kept = [json.loads(x)["round"] for x in (d / "metrics.jsonl").read_text().splitlines()]
    assert kept == [1, 2, 4, 5, 6]  # rounds after the bad line survive
    assert "{not json" in (d / "metrics.jsonl.damaged").read_text()
    assert result.rounds == 6


def test_torn_last_metrics_line_is_redone_silently(finished, tmp_path):
    d = copy_of(finished, tmp_path)
    rolled_back(d, 4)
    text = (d / "metrics.jsonl").read_text()
    lines = text.splitlines()
    (d / "metrics.jsonl").write_text("\n".join(lines[:4]) + "\n" + lines[4][:20])  # torn mid-append
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResumeWarning)
        result = resume(d)
    assert [m["round"] for m in result.history] == [1, 2, 3, 4, 5, 6]
    redone = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    original = [json.loads(x) for x in text.splitlines()]
    for m in redone + original:
        m.pop("wall_time_s")
    assert redone == original


def test_a_failed_write_is_one_clear_error_and_leaves_no_tmp_file(tmp_path, monkeypatch):
    import errno

    rd = RunDirectory(tmp_path / "r")
    rd.path.mkdir()

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("os.fsync", full)
    with pytest.raises(RunWriteError, match=r"cannot write .*summary.json: No space left on device"):
        rd.write_text("summary.json", "{}")
    assert list(rd.path.iterdir()) == []


def test_full_disk_mid_run_says_how_to_resume(tmp_path, monkeypatch):
    import errno

    import deai.engine.rundir as rundir

    calls = {"n": 0}
    real = rundir.RunDirectory.append_metrics

    def append(self, line):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, line)

    monkeypatch.setattr(
        rundir.RunDirectory, "append_metrics", lambda self, line: self_guard(self, append, line)
    )
    with pytest.raises(
        RunWriteError, match=r"No space left on device; the run keeps its last checkpoint.*--resume"
    ):
        run(make_config(run={"rounds": 5}), out=tmp_path / "r")
    monkeypatch.undo()
    result = resume(tmp_path / "r")
    assert result.model_hash == run(make_config(run={"rounds": 5}), write=False).model_hash


def self_guard(rd, fn, line):
    with rd.writing(rd.metrics):
        fn(rd, line)
