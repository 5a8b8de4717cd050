"""Privacy paths through the whole engine, each against a truth computed outside it.

Central DP-FedAvg's released noise against its closed form ``zC / (qN)``; adaptive clipping
against the update rule of Andrew et al. 2021 and the quantile it tracks; the PLD accountant,
``deai privacy sweep`` and ``audit_run`` on real run directories; SecAgg+ with parties that drop
after masking, against the plain mean of the survivors' updates (retrained independently).
"""

import json
import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting import pld, rdp

from deai.config import ConfigError
from deai.engine.api import as_config, build_data, build_model, run
from deai.privacy.audit.report import audit_run
from deai.privacy_report import sweep
from deai.train import LocalSpec, train_parties
from tests.conftest import make_config


def poisson_gaussian(z: float, q: float, steps: int) -> dp_accounting.DpEvent:
    gaussian = dp_accounting.GaussianDpEvent(z)
    single = gaussian if q == 1 else dp_accounting.PoissonSampledDpEvent(q, gaussian)
    return dp_accounting.SelfComposedDpEvent(single, steps)


def rdp_epsilon(z: float, q: float, steps: int, delta: float = 1e-5) -> float:
    return rdp.RdpAccountant().compose(poisson_gaussian(z, q, steps)).get_epsilon(delta)


def initial_params(cfg: dict) -> np.ndarray:
    experiment = as_config(cfg)
    return build_model(experiment, build_data(experiment)).init_params(experiment.run.seed)


def local_deltas(cfg: dict, party_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Round-1 updates of ``party_ids`` retrained outside the engine, and their example counts."""
    experiment = as_config(cfg)
    fed = build_data(experiment)
    model = build_model(experiment, fed)
    s = experiment.strategy
    result = train_parties(
        model,
        fed.x_train,
        fed.y_train,
        fed.train_offsets,
        party_ids,
        model.init_params(experiment.run.seed),
        LocalSpec(epochs=s.local_epochs, batch_size=s.batch_size, lr=s.lr),
        experiment.run.seed,
        1,
    )
    return result.deltas.astype(np.float64), fed.train_sizes[party_ids].astype(np.float64)


# ---------------------------------------------------------------------------- central noise
def test_central_noise_on_the_released_average_has_std_zC_over_qN():
    """With lr ~ 0 every update is ~0, so one round's model change is the released noise itself."""
    z, clip, parties, q = 1.0, 1.0, 20, 0.5
    cfg = make_config(
        run={"rounds": 1, "seed": 3},
        data={"num_parties": parties},
        model={"kind": "mlp"},  # 4,810 coordinates: the std is measured to about 1%
        strategy={"lr": 1e-9},
        participation={"fraction": q, "poisson": True},
        privacy={"mode": "central", "noise_multiplier": z, "clip_norm": clip, "simulation": True},
    )
    r = run(cfg, write=False)
    # Seed 3 samples 7 parties, not qN = 10: a denominator of the realized count would show as 10/7.
    assert r.history[0]["participants"] == 7
    noise = r.params.astype(np.float64) - initial_params(cfg)
    expected = z * clip / (q * parties)
    assert noise.std() == pytest.approx(expected, rel=0.05)
    assert abs(noise.mean()) < 4 * expected / math.sqrt(noise.size)


# ---------------------------------------------------------------------------- adaptive clipping
def test_adaptive_clipping_follows_the_quantile_rule_and_reaches_the_target_quantile():
    gamma, eta, start = 0.3, 0.5, 3.0
    records = []
    r = run(
        make_config(
            run={"rounds": 15},
            data={"num_parties": 20},
            privacy={
                "mode": "central",
                "noise_multiplier": 1.0,
                "clip_norm": start,
                "adaptive_clipping": True,
                "target_quantile": gamma,
                "clip_learning_rate": eta,
            },
        ),
        write=False,
        on_record=records.append,  # the updates themselves, in-process (the metrics log no norms under DP)
    )
    clip = [start] + [m["clip_norm"] for m in r.history]  # round r clips with clip[r - 1]
    norms = [np.linalg.norm(rec.batch.deltas.astype(np.float64), axis=1) for rec in records]
    assert max(norms[0]) < start  # it starts above every update
    # Andrew et al. 2021: C <- C exp(-eta (b~ - gamma)), b~ the unclipped fraction plus N(0, (m/20)^2)/m.
    residuals = []
    for i, n in enumerate(norms):
        unclipped = float(np.mean(n <= clip[i]))
        b_tilde = gamma - math.log(clip[i + 1] / clip[i]) / eta
        if 0.1 < unclipped < 0.9:  # away from the [0, 1] clamp
            residuals.append(b_tilde - unclipped)
        else:
            assert abs(b_tilde - unclipped) < 0.25
    residuals = np.array(residuals)
    assert len(residuals) >= 5
    assert abs(residuals.mean()) < 4 * 0.05 / math.sqrt(len(residuals))
    assert 0.5 * 0.05 < residuals.std(ddof=1) < 1.8 * 0.05
    # and where it ends: at the target quantile of the parties' update norms
    assert abs(math.log(clip[-1] / np.quantile(norms[-1], gamma))) < 0.25
    assert np.mean([np.mean(n <= c) for n, c in zip(norms[-5:], clip[-6:-1], strict=True)]) < 0.6


def test_adaptive_clipping_is_refused_under_secure_aggregation():
    with pytest.raises(ConfigError, match="adaptive_clipping .* server would see every update"):
        run(
            make_config(
                data={"num_parties": 12},
                strategy={"aggregator": "secagg", "aggregator_options": {"clip": 1.0}},
                privacy={"mode": "central", "adaptive_clipping": True},
            ),
            write=False,
        )


# ---------------------------------------------------------------------------- PLD accountant
def test_pld_epsilon_through_the_engine_equals_dp_accounting_every_round():
    z, q = 1.5, 0.5
    r = run(
        make_config(
            run={"rounds": 4},
            data={"num_parties": 20},
            participation={"fraction": q, "poisson": True},
            privacy={"mode": "central", "noise_multiplier": z, "accountant": "pld"},
        ),
        write=False,
    )
    assert r.summary()["privacy"]["accountant"] == "pld"
    for rounds, m in enumerate(r.history, start=1):
        reference = pld.PLDAccountant(value_discretization_interval=1e-3)
        reference.compose(poisson_gaussian(z, q, rounds))
        assert m["epsilon"] == pytest.approx(reference.get_epsilon(1e-5), rel=1e-9)
    assert r.history[-1]["epsilon"] < rdp_epsilon(z, q, 4)


# ---------------------------------------------------------------------------- sweep and audit
def test_privacy_sweep_writes_a_table_whose_epsilon_falls_as_noise_rises(tmp_path):
    zs = [0.5, 2.0, 8.0]
    base = as_config(make_config(run={"rounds": 2}, data={"num_parties": 10}))
    table = sweep(base, zs, tmp_path / "sweep", audit=False)
    rows = table["rows"]
    assert [row["noise_multiplier"] for row in rows] == [None, *zs]
    assert rows[0]["epsilon"] == math.inf
    eps = [row["epsilon"] for row in rows[1:]]
    assert eps == pytest.approx([rdp_epsilon(z, 1.0, 2) for z in zs], rel=1e-9)
    assert eps[0] > eps[1] > eps[2] > 0
    md = (tmp_path / "sweep" / "privacy_utility.md").read_text().splitlines()
    assert md[4].startswith("| non-private | — | ∞ |")
    assert [line.split(" | ")[2] for line in md[5:8]] == [f"{e:.3g}" for e in eps]
    written = json.loads((tmp_path / "sweep" / "privacy_utility.json").read_text())
    assert [row["epsilon"] for row in written["rows"][1:]] == pytest.approx(eps, rel=1e-12)
    for row in rows:
        assert (tmp_path / "sweep" / row["run"].replace("=", "_") / "final.npz").is_file()


def test_audit_of_a_dp_run_reports_its_epsilon_and_valid_aucs(tmp_path):
    r = run(
        make_config(
            run={"rounds": 3},
            data={"dataset": "breast_cancer", "num_parties": 5},  # tabular: no (slow) gradient inversion
            privacy={"mode": "central", "noise_multiplier": 1.0},
        ),
        out=tmp_path / "run",
    )
    report = audit_run(tmp_path / "run", max_examples=200)
    assert report["epsilon"] == pytest.approx(rdp_epsilon(1.0, 1.0, 3), rel=1e-9)
    assert report["epsilon"] == r.summary()["privacy"]["epsilon"] and report["delta"] == 1e-5
    for name in ("mia_loss_auc", "mia_shadow_auc", "mia_advantage"):
        assert 0.0 <= report[name] <= 1.0, name
    assert report["mia_pairs"] > 0 and report["inversion"] is None
    assert json.loads((tmp_path / "run" / "audit.json").read_text()) == report


@pytest.mark.slow
def test_privacy_sweep_with_audits_reports_attack_aucs(tmp_path):
    table = sweep(as_config(make_config(run={"rounds": 1}, data={"num_parties": 5})), [1.0], tmp_path / "s")
    for row in table["rows"]:
        assert 0.0 <= row["mia_loss_auc"] <= 1.0 and 0.0 <= row["mia_shadow_auc"] <= 1.0
    assert (tmp_path / "s" / "non-private" / "audit.json").is_file()


# ---------------------------------------------------------------------------- SecAgg+ dropouts
def secagg_config(privacy: dict | None = None, drop: float = 0.35) -> dict:
    # 12 parties; with these seeds party 3 drops after masking in round 1 (checked below).
    return make_config(
        run={"rounds": 1, "party_signals": True},
        data={"num_parties": 12},
        strategy={"aggregator": "secagg", "aggregator_options": {"clip": 1.0, "dropout_after_masking": drop}},
        **({"privacy": privacy} if privacy else {}),
    )


def survivors_of(r) -> tuple[np.ndarray, np.ndarray]:
    signals = r.history[0]["party_signals"]
    ids, survivor = np.array(signals["party"]), np.array(signals["secagg_survivor"], dtype=bool)
    assert 0 < (~survivor).sum() < len(ids) // 2  # someone dropped mid-protocol, most survived
    return ids, survivor


def test_secagg_with_parties_dropping_after_masking_is_the_plain_mean_of_the_survivors():
    cfg = secagg_config()
    r = run(cfg, write=False)
    ids, survivor = survivors_of(r)
    deltas, sizes = local_deltas(cfg, ids)
    clipped = np.clip(deltas[survivor], -1.0, 1.0)
    mean = (clipped * sizes[survivor, None]).sum(axis=0) / sizes[survivor].sum()
    np.testing.assert_allclose(r.params, initial_params(cfg) + mean, atol=1e-6)
    everyone = (np.clip(deltas, -1.0, 1.0) * sizes[:, None]).sum(axis=0) / sizes.sum()
    assert np.abs(mean - everyone).max() > 1e-3  # the survivors' mean is not everyone's


def test_central_dp_under_secagg_with_dropouts_sums_the_survivors_over_the_fixed_denominator():
    clip_norm = 0.5
    cfg = secagg_config({"mode": "central", "noise_multiplier": 0.0, "clip_norm": clip_norm})
    r = run(cfg, write=False)
    ids, survivor = survivors_of(r)
    deltas, _ = local_deltas(cfg, ids)
    norms = np.linalg.norm(deltas, axis=1, keepdims=True)
    clipped = deltas * np.minimum(1.0, clip_norm / norms)
    # DP-FedAvg's fixed denominator qN = 12 whoever survives: each party moves the sum by <= C / qN.
    expected = initial_params(cfg) + clipped[survivor].sum(axis=0) / 12
    np.testing.assert_allclose(r.params, expected, atol=1e-5)


def test_distributed_dp_under_secagg_accounts_only_the_noise_shares_that_reached_the_sum():
    z = 2.0
    r = run(secagg_config({"mode": "distributed", "noise_multiplier": z, "clip_norm": 0.5}), write=False)
    _, survivor = survivors_of(r)
    # Each of qN = 12 shares carries N(0, (zC)^2 / 12); the survivors' shares give z sqrt(m / 12).
    effective = z * math.sqrt(survivor.sum() / 12)
    assert r.history[0]["epsilon"] == pytest.approx(rdp_epsilon(effective, 1.0, 1), rel=1e-9)
