"""The robustness matrix keeps finished work: pre-flight checks, not-applicable cells, the journal, resume,
parallel cells and failed cells (``deai robustness``)."""

import dataclasses
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import deai.robustness as robustness
from deai.cli import main
from deai.config import ConfigError, load_config
from deai.robustness import JOURNAL, evaluate_matrix, plan_matrix, run_matrix

# 20 parties, 30% malicious: f = 6, so Krum (n >= 2f + 3 = 15) runs and Bulyan (n >= 4f + 3 = 27) cannot.
BASE = load_config("examples/robustness_digits.toml").with_sections(
    run={"rounds": 2}, data={"num_parties": 20}
)
FRACTION = 0.3
OPTIONS = {"sign_flip": {"scale": 4.0}}


def _strict_loads(text: str):
    def refuse(constant: str):
        raise ValueError(f"non-strict JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def runs(monkeypatch):
    """The engine runs the matrix makes in this process, as (attack, defence) pairs."""
    made = []
    real = robustness.run

    def counting(cfg, **kwargs):
        made.append((cfg.attack.kind, cfg.strategy.aggregator))
        return real(cfg, **kwargs)

    monkeypatch.setattr(robustness, "run", counting)
    return made


def _results(report):
    return {(r["attack"], r["defence"]): r for r in report["results"]}


def test_infeasible_bulyan_is_marked_not_applicable_and_every_other_cell_runs(tmp_path, runs):
    report = evaluate_matrix(
        BASE,
        ["sign_flip", "alie"],
        ["mean", "krum", "bulyan"],
        FRACTION,
        attack_options=OPTIONS,
        out=tmp_path,
    )
    f, n = report["num_byzantine"]["0.3"], report["num_parties"]
    assert (n, f) == (20, 6) and n < 4 * f + 3 and n >= 2 * f + 3
    cells = _results(report)
    for attack in ("sign_flip", "alie"):
        assert cells[(attack, "bulyan")]["status"] == "not_applicable"
        assert cells[(attack, "bulyan")]["reason"] == "needs n >= 4f+3 (n=20, f=6)"
        assert cells[(attack, "bulyan")]["accuracy"] is None
        for defence in ("mean", "krum"):
            assert cells[(attack, defence)]["status"] == "ok"
            assert 0 < cells[(attack, defence)]["accuracy"] <= 1
    assert not any(d == "bulyan" for _, d in runs)  # no run was even started for it
    table = (tmp_path / "robustness.md").read_text()
    assert "| bulyan | n/a | n/a | n/a |" in table
    assert "needs n >= 4f+3 (n=20, f=6)" in table
    assert _strict_loads((tmp_path / "robustness.json").read_text())["cells"] == {
        "ok": 4,
        "not_applicable": 2,
    }
    assert (tmp_path / "heatmap.png").stat().st_size > 0


def test_feasibility_counts_the_updates_a_round_delivers_not_the_parties():
    # f = floor(f_max n) of the round's own n: 10 updates per round give f = 3
    half = BASE.with_sections(participation={"fraction": 0.5})
    assert "krum" not in plan_matrix(half, ["sign_flip"], ["krum"], FRACTION).not_applicable
    assert (
        plan_matrix(half, ["sign_flip"], ["bulyan"], FRACTION)
        .not_applicable["bulyan"]
        .startswith("needs n >= 4f+3 (n=10, f=3); round 1 has 10 of 20 parties")
    )


@pytest.mark.parametrize("where", ["existing_file", "under_a_file", "proc"])
def test_an_unwritable_out_is_refused_before_any_cell(tmp_path, runs, where):
    (tmp_path / "file").write_text("not a directory")
    out = {
        "existing_file": tmp_path / "file",
        "under_a_file": tmp_path / "file" / "matrix",
        "proc": Path("/proc/deai-robustness-test"),
    }[where]
    with pytest.raises(ConfigError, match="--out .* is not a writable directory"):
        evaluate_matrix(BASE, ["sign_flip"], ["mean"], FRACTION, out=out)
    assert runs == []


def test_a_finished_matrix_is_refused_unless_resume_or_force(tmp_path, runs):
    args = (BASE, ["sign_flip"], ["mean"], FRACTION)
    first = evaluate_matrix(*args, out=tmp_path)
    assert len(runs) == 2  # the clean baseline and one attacked cell
    with pytest.raises(ConfigError, match="already holds a robustness matrix.*--resume.*--force"):
        plan_matrix(*args, out=tmp_path)
    with pytest.raises(ConfigError, match="--resume .* --force"):
        plan_matrix(*args, out=tmp_path, resume=True, force=True)
    assert evaluate_matrix(*args, out=tmp_path, resume=True) == first  # nothing left to run
    assert len(runs) == 2
    assert evaluate_matrix(*args, out=tmp_path, force=True) == first  # everything again
    assert len(runs) == 4


def test_an_old_table_without_a_journal_is_not_overwritten_silently(tmp_path):
    (tmp_path / "robustness.md").write_text("a table from an earlier matrix\n")
    with pytest.raises(ConfigError, match=r"already holds a robustness matrix \(robustness.md\)"):
        plan_matrix(BASE, ["sign_flip"], ["mean"], FRACTION, out=tmp_path)
    with pytest.raises(ConfigError, match="no matrix journal"):
        plan_matrix(BASE, ["sign_flip"], ["mean"], FRACTION, out=tmp_path, resume=True)
    assert (tmp_path / "robustness.md").read_text() == "a table from an earlier matrix\n"


def test_an_interrupted_matrix_resumes_with_only_the_missing_cells_and_the_same_table(tmp_path, runs):
    args = (BASE, ["sign_flip", "alie"], ["mean", "median", "centered_clipping"], FRACTION)
    whole = evaluate_matrix(*args, attack_options=OPTIONS, out=tmp_path / "whole")
    total = len(runs)
    assert total == 9  # baseline, 2 clean defences, 6 attacked cells

    def interrupt_after_four(cell):
        if len(runs) == total + 4:
            raise KeyboardInterrupt  # as Ctrl-C right after the fourth cell was written

    plan = plan_matrix(*args, OPTIONS, out=tmp_path / "cut")
    with pytest.raises(KeyboardInterrupt):
        run_matrix(plan, on_cell=interrupt_after_four)
    journal = tmp_path / "cut" / JOURNAL
    assert len(journal.read_text().splitlines()) == 1 + 4  # the spec line and four cells
    assert not (tmp_path / "cut" / "robustness.md").exists()
    with open(journal, "a") as f:
        f.write('{"cell": {"attack": "alie", "def')  # a line torn by a kill mid-write

    runs.clear()
    resumed = evaluate_matrix(*args, attack_options=OPTIONS, out=tmp_path / "cut", resume=True)
    assert len(runs) == total - 4
    assert resumed == whole
    assert (tmp_path / "cut" / "robustness.md").read_text() == (
        tmp_path / "whole" / "robustness.md"
    ).read_text()
    lines = journal.read_text().splitlines()
    assert len(lines) == 1 + total and all(_strict_loads(line) for line in lines)


def test_resume_with_other_arguments_is_refused_naming_what_differs(tmp_path):
    evaluate_matrix(BASE, ["sign_flip"], ["mean"], FRACTION, out=tmp_path)
    with pytest.raises(
        ConfigError, match=r"other arguments \(byzantine_fractions: recorded \[0.3\], given \[0.2\]"
    ):
        plan_matrix(BASE, ["sign_flip"], ["mean"], 0.2, out=tmp_path, resume=True, f_max=0.3)
    other = BASE.with_sections(run={"rounds": 3})
    with pytest.raises(ConfigError, match="config_sha256"):
        plan_matrix(other, ["sign_flip"], ["mean"], FRACTION, out=tmp_path, resume=True)


@pytest.mark.slow
def test_two_worker_processes_give_the_same_numbers_as_one(tmp_path):
    # oracle: centered_clipping waits for the baseline's norm; bulyan is n/a; spawned workers with jobs=2
    args = (BASE, ["sign_flip", "ipm"], ["mean", "krum", "bulyan", "centered_clipping"], FRACTION)
    one = evaluate_matrix(*args, attack_options=OPTIONS, out=tmp_path / "one", jobs=1, oracle=True)
    two = evaluate_matrix(*args, attack_options=OPTIONS, out=tmp_path / "two", jobs=2, oracle=True)
    assert two == one
    assert {r["status"] for r in one["results"]} == {"ok", "not_applicable"}


def test_an_attack_option_for_an_attack_not_listed_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"--attack-option ipm.epsilon: attack 'ipm' is not in --attacks"):
        plan_matrix(BASE, ["sign_flip"], ["mean"], FRACTION, {"ipm": {"epsilon": 100}}, out=tmp_path / "o")
    with pytest.raises(ConfigError, match=r"--attack-option sign_flip.sacle: .*no option 'sacle'"):
        plan_matrix(BASE, ["sign_flip"], ["mean"], FRACTION, {"sign_flip": {"sacle": 4}}, out=tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_a_cell_whose_run_raises_is_recorded_as_failed_and_the_matrix_finishes(tmp_path, monkeypatch):
    real = robustness.run

    def breaks_median_under_sign_flip(cfg, **kwargs):
        if (cfg.attack.kind, cfg.strategy.aggregator) == ("sign_flip", "median"):
            raise ValueError("updates must be finite: rows [3] contain NaN or inf")
        return real(cfg, **kwargs)

    monkeypatch.setattr(robustness, "run", breaks_median_under_sign_flip)
    report = evaluate_matrix(BASE, ["sign_flip", "alie"], ["mean", "median"], FRACTION, out=tmp_path)
    cells = _results(report)
    failed = cells[("sign_flip", "median")]
    assert failed["status"] == "failed" and failed["accuracy"] is None
    assert failed["error"] == "ValueError: updates must be finite: rows [3] contain NaN or inf"
    assert all(c["status"] == "ok" for k, c in cells.items() if k != ("sign_flip", "median"))
    assert (
        "- failed, sign_flip vs median at 30%: ValueError: updates must be finite"
        in (tmp_path / "robustness.md").read_text()
    )
    # a failure is not a result: resume tries the cell again
    monkeypatch.setattr(robustness, "run", real)
    again = evaluate_matrix(
        BASE, ["sign_flip", "alie"], ["mean", "median"], FRACTION, out=tmp_path, resume=True
    )
    assert _results(again)[("sign_flip", "median")]["status"] == "ok"


def test_a_non_finite_measure_is_written_as_null_in_strict_json(tmp_path, monkeypatch):
    real = robustness.run

    def nan_accuracy(cfg, **kwargs):
        return dataclasses.replace(real(cfg, **kwargs), final_accuracy=float("nan"))

    monkeypatch.setattr(robustness, "run", nan_accuracy)
    report = evaluate_matrix(BASE, ["sign_flip"], ["mean"], FRACTION, out=tmp_path)
    assert report["results"][0]["accuracy"] is None and report["clean_accuracy"] is None
    for line in (tmp_path / JOURNAL).read_text().splitlines():
        _strict_loads(line)
    assert _strict_loads((tmp_path / "robustness.json").read_text())["results"][0]["accuracy"] is None


def _toml(tmp_path: Path, cfg=BASE) -> str:
    path = tmp_path / "base.toml"
    path.write_text(cfg.to_toml())
    return str(path)


def test_cli_exits_2_on_an_unwritable_out_before_any_cell(tmp_path, capsys, runs):
    (tmp_path / "file").write_text("x")
    argv = ["robustness", "--config", _toml(tmp_path), "--attacks", "sign_flip", "--defences", "mean"]
    assert main([*argv, "--out", str(tmp_path / "file" / "matrix")]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "not a writable directory" in err
    assert main([*argv, "--attack-option", "ipm.epsilon=100", "--out", str(tmp_path / "o")]) == 2
    assert "add ipm to --attacks" in capsys.readouterr().err
    assert runs == []


def _interrupted_cli_matrix(tmp_path: Path, sig: int) -> tuple[list[str], subprocess.Popen, str]:
    """Start ``deai robustness --jobs 2`` in a subprocess and send ``sig`` once three cells are journaled."""
    cfg = BASE.with_sections(run={"rounds": 40})  # cells of ~0.5 s: time to interrupt mid-matrix
    argv = ["robustness", "--config", _toml(tmp_path, cfg), "--attacks", "sign_flip,alie"]
    argv += ["--defences", "mean,median,krum", "--byzantine-fraction", str(FRACTION), "--jobs", "2"]
    argv += ["--out", str(tmp_path / "cut")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "deai.cli", *argv],
        stderr=subprocess.PIPE,
        text=True,
        # a shell's background job inherits SIGINT ignored, and Python then never raises KeyboardInterrupt
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    journal = tmp_path / "cut" / JOURNAL
    deadline = time.monotonic() + 120
    while not (journal.exists() and len(journal.read_text().splitlines()) >= 1 + 3):
        assert proc.poll() is None and time.monotonic() < deadline, "the matrix ended before the interrupt"
        time.sleep(0.05)
    proc.send_signal(sig)
    # Workers must not outlive the parent: they would hold stderr open and communicate() would hang.
    _, err = proc.communicate(timeout=30)
    return argv, proc, err


def _same_table_as_uninterrupted(tmp_path: Path, argv: list[str]) -> None:
    whole = [a if a != "2" else "1" for a in argv[:-1]] + [str(tmp_path / "whole")]  # --jobs 1
    assert main(whole) == 0
    assert (tmp_path / "cut" / "robustness.md").read_text() == (
        tmp_path / "whole" / "robustness.md"
    ).read_text()


@pytest.mark.slow
def test_cli_interrupted_by_sigint_keeps_finished_cells_and_resumes_to_the_same_table(tmp_path):
    argv, proc, err = _interrupted_cli_matrix(tmp_path, signal.SIGINT)
    assert proc.returncode == 130, err
    kept = len((tmp_path / "cut" / JOURNAL).read_text().splitlines()) - 1
    assert 3 <= kept < 9 and f"{kept} of 9 cells finished" in err
    resume = err.split("continue with: ")[1].split()
    assert resume[:2] == ["deai", "robustness"] and resume[-1] == "--resume"
    assert main(resume[1:]) == 0
    _same_table_as_uninterrupted(tmp_path, argv)


@pytest.mark.slow
def test_cli_killed_with_sigkill_resumes_to_the_same_table(tmp_path):
    argv, proc, _ = _interrupted_cli_matrix(tmp_path, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert main([*argv, "--resume"]) == 0
    _same_table_as_uninterrupted(tmp_path, argv)


def test_every_defence_is_told_only_f_max_whatever_the_true_fraction(tmp_path, monkeypatch):
    seen = []
    real = robustness.run

    def spy(cfg, **kwargs):
        seen.append(
            (
                cfg.attack.fraction,
                cfg.strategy.aggregator,
                cfg.strategy.f_max,
                cfg.strategy.aggregator_options,
            )
        )
        return real(cfg, **kwargs)

    monkeypatch.setattr(robustness, "run", spy)
    report = evaluate_matrix(
        BASE, ["sign_flip"], ["krum", "norm_bound"], [0.1, 0.3], attack_options=OPTIONS, out=tmp_path
    )
    assert {(fr, agg) for fr, agg, _, _ in seen} == {
        (0.0, "mean"),
        (0.0, "krum"),
        (0.0, "norm_bound"),
        (0.1, "krum"),
        (0.1, "norm_bound"),
        (0.3, "krum"),
        (0.3, "norm_bound"),
    }
    assert all(f_max == 0.3 and options == {} for _, _, f_max, options in seen)  # no oracle value anywhere
    assert report["num_byzantine"] == {"0.1": 2, "0.3": 6}
    assert report["assumptions"]["krum"].startswith("f = floor(f_max n)")
    table = (tmp_path / "robustness.md").read_text()
    assert "Accuracy at 10% Byzantine (2 of 20 parties)" in table and "told only f_max = 0.3" in table
    worst = {w["defence"]: w for w in report["worst"]}
    cells = [r for r in report["results"] if r["defence"] == "krum"]
    assert worst["krum"]["accuracy"] == min(r["accuracy"] for r in cells)


def test_oracle_mode_hands_the_true_count_and_is_labelled(tmp_path):
    plan = plan_matrix(BASE, ["sign_flip"], ["krum"], 0.3, oracle=True)
    assert robustness.oracle_options("krum", plan.num_byzantine[0.3], 0.3, None) == {"num_byzantine": 6}
    report = run_matrix(plan)
    assert report["oracle"] and report["assumptions"]["krum"].startswith("ORACLE")
    with pytest.raises(ConfigError, match="--oracle runs one"):
        plan_matrix(BASE, ["sign_flip"], ["krum"], [0.1, 0.3], oracle=True)


@pytest.mark.parametrize(
    "fractions, message", [([0.1, 0.1], "twice"), ([0.6], r"\(0, 0.5\)"), ([], "at least one")]
)
def test_bad_fractions_are_refused(fractions, message):
    with pytest.raises(ConfigError, match=message):
        plan_matrix(BASE, ["sign_flip"], ["mean"], fractions)
