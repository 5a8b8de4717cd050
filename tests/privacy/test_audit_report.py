"""``audit_run``: the privacy audit of a finished run directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import deai
from deai.privacy.audit.report import audit_run

KEYS = {"epsilon", "delta", "mia_loss_auc", "mia_shadow_auc", "mia_advantage", "mia_pairs", "inversion"}


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("audit") / "run"
    deai.run(
        {
            "run": {"rounds": 2, "seed": 0},
            "data": {"dataset": "digits", "num_parties": 5},
            "model": {"kind": "logreg"},
            "strategy": {"lr": 0.5},
        },
        out=out,
    )
    return out


@pytest.fixture(scope="module")
def digits_audit(digits_run: Path) -> dict:
    return audit_run(digits_run, max_examples=300)


def test_audit_run_writes_what_it_returns(digits_run: Path, digits_audit: dict) -> None:
    assert set(digits_audit) == KEYS
    assert json.loads((digits_run / "audit.json").read_text()) == digits_audit


def test_audit_of_a_run_without_dp_reports_no_epsilon(digits_audit: dict) -> None:
    assert digits_audit["epsilon"] is None and digits_audit["delta"] is None


def test_membership_numbers_are_valid_and_capped(digits_audit: dict) -> None:
    assert 0.0 <= digits_audit["mia_loss_auc"] <= 1.0
    assert 0.0 <= digits_audit["mia_shadow_auc"] <= 1.0
    assert 0.0 <= digits_audit["mia_advantage"] <= 1.0
    assert digits_audit["mia_pairs"] == 300
    # Two rounds of logistic regression barely fit the members: little to infer.
    assert abs(digits_audit["mia_loss_auc"] - 0.5) < 0.1


def test_inversion_of_a_logreg_update_beats_the_mean_image(digits_audit: dict) -> None:
    inversion = digits_audit["inversion"]
    assert inversion is not None and inversion["labels_correct"]
    assert inversion["mse"] < 0.5 * inversion["baseline_mse"]


def test_audit_is_deterministic_in_its_seed(digits_run: Path, digits_audit: dict) -> None:
    assert audit_run(digits_run, max_examples=300) == digits_audit


def test_audit_reads_epsilon_from_the_last_metrics_line(digits_run: Path, tmp_path: Path) -> None:
    run = shutil.copytree(digits_run, tmp_path / "run")
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"round": 3, "epsilon": 1.5, "delta": 1e-5}) + "\n")
    result = audit_run(run, max_examples=100)
    assert result["epsilon"] == 1.5 and result["delta"] == 1e-5


def test_audit_of_tabular_data_skips_inversion(tmp_path: Path) -> None:
    deai.run(
        {"run": {"rounds": 1}, "data": {"dataset": "breast_cancer", "num_parties": 3}},
        out=tmp_path / "run",
    )
    result = audit_run(tmp_path / "run", max_examples=100)
    assert result["inversion"] is None
    assert 0.0 <= result["mia_loss_auc"] <= 1.0


def test_audit_rejects_a_directory_that_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="config.toml and final.npz"):
        audit_run(tmp_path)
