"""Attacks and defences through the whole engine, and the `deai robustness` command."""

import json
import subprocess
import sys

import numpy as np
import pytest

from deai.config import load_config
from deai.engine.api import run
from deai.robustness import evaluate_matrix
from tests.conftest import crashed_copy

BASE = "examples/robustness_digits.toml"


def _cfg(attack, defence, rounds=15, **attack_options):
    data = load_config(BASE).model_dump()
    data["run"]["rounds"] = rounds
    data["run"]["party_signals"] = True
    data["attack"] = {"kind": attack, "fraction": 0.2, "options": attack_options}
    data["strategy"]["aggregator"] = defence
    return data


def test_free_riders_are_flagged_by_near_zero_contribution():
    r = run(_cfg("free_rider", "mean", rounds=5), write=False)
    sig = r.history[-1]["party_signals"]
    mal = np.array(sig["malicious"])
    norms = np.array(sig["update_norm"])
    assert mal.sum() == 10
    assert norms[mal].max() < 0.01 * np.median(norms[~mal])
    assert np.abs(np.array(sig["cosine_to_aggregate"])[mal]).max() < 1e-3


def test_foolsgold_gives_ten_sybils_under_a_fifth_of_the_weight():
    r = run(_cfg("sybil", "foolsgold", rounds=10), write=False)
    shares = [m["malicious_weight_share"] for m in r.history]
    assert max(shares[2:]) < 0.2, shares
    assert r.history[-1]["party_signals"]["foolsgold_weight"]


def test_fltrust_stops_the_backdoor_that_plain_fedavg_lets_through():
    from deai.attacks import backdoor_success_rate
    from deai.engine.api import build_data, build_model

    def asr(defence):
        cfg = _cfg("backdoor", defence, rounds=30)
        res = run(cfg, write=False)
        fed = build_data(load_config(BASE))
        model = build_model(load_config(BASE), fed)

        def predict(x):
            return model.logits(res.params[None], x[None])[0].argmax(-1)

        return backdoor_success_rate(predict, fed.x_eval, fed.y_eval, 0, fed.image_shape), res.final_accuracy

    asr_mean, _ = asr("mean")
    asr_fltrust, acc_fltrust = asr("fltrust")
    assert asr_mean > 0.5
    assert asr_fltrust < 0.1 and acc_fltrust > 0.88


def test_oversized_updates_are_rejected_and_never_reach_the_model():
    cfg = _cfg("gaussian", "mean", rounds=8, sigma=1000.0)
    cfg["validation"] = {"max_update_norm": 50.0}
    r = run(cfg, write=False)
    assert all(m["rejected"] == m["participants"] - 40 for m in r.history)
    assert all(m["rejected_reasons"] == {"norm_too_large": 10} for m in r.history)
    # never reach the model: a different rejected payload from the same parties gives the identical model
    louder = _cfg("gaussian", "mean", rounds=8, sigma=5000.0)
    louder["validation"] = {"max_update_norm": 50.0}
    assert run(louder, write=False).model_hash == r.model_hash
    cfg["validation"] = {}
    wrecked = run(cfg, write=False).final_accuracy
    assert wrecked < 0.5 and r.final_accuracy > wrecked + 0.3  # without validation the attack wrecks FedAvg


def test_matrix_has_every_cell_and_a_defence_that_holds():
    report = evaluate_matrix(
        BASE,
        ["sign_flip", "ipm"],
        ["mean", "fltrust"],
        0.2,
        attack_options={"sign_flip": {"scale": 4.0}, "ipm": {"epsilon": 100.0}},
    )
    cells = {(r["attack"], r["defence"]): r for r in report["results"]}
    assert report["f_max"] == 0.3 and not report["oracle"]  # the base config declares f_max = 0.3
    assert set(cells) == {(a, d) for a in ("sign_flip", "ipm") for d in ("mean", "fltrust")}
    for attack in ("sign_flip", "ipm"):
        assert cells[(attack, "mean")]["accuracy"] < report["clean_accuracy"] - 0.10
        assert cells[(attack, "fltrust")]["accuracy"] > report["clean_accuracy"] - 0.03


@pytest.mark.slow
def test_robustness_cli_json_and_files(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "deai.cli",
            "robustness",
            "--config",
            BASE,
            "--attacks",
            "alie,label_flip",
            "--defences",
            "median,krum",
            "--byzantine-fraction",
            "0.2",
            "--out",
            str(tmp_path),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert 0 < out["clean_accuracy"] <= 1
    assert {(c["attack"], c["defence"]) for c in out["results"]} == {
        (a, d) for a in ("alie", "label_flip") for d in ("median", "krum")
    }
    assert all(c["backdoor_success"] is None for c in out["results"])
    for name in ("robustness.md", "robustness.json", "heatmap.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_unknown_attack_name_is_a_clear_error(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "deai.cli",
            "robustness",
            "--config",
            BASE,
            "--attacks",
            "sign_flop",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "sign_flop" in r.stderr and "sign_flip" in r.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("defence", ["foolsgold", "reputation", "centered_clipping"])
def test_stateful_defences_resume_to_the_same_model(tmp_path, defence):
    from deai.engine.api import resume

    cfg = _cfg("sybil", defence, rounds=6)
    cfg["run"]["checkpoint_every"] = 3
    if defence == "centered_clipping":
        cfg["strategy"]["aggregator_options"] = {"clip_radius": 1.0}
    full = run(cfg, out=tmp_path / "full")
    assert resume(crashed_copy(tmp_path / "full", at_round=3)).model_hash == full.model_hash
