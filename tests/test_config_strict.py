"""Config validation: strict types, conflicts as errors, no-op settings as warnings."""

import warnings

import pytest

from deai.config import ConfigError, ConfigWarning, ineffective_settings, load_config, parse_config


def test_toml_integers_are_still_accepted_where_floats_are_expected():
    cfg = parse_config({"strategy": {"lr": 1, "mu": 0}, "data": {"alpha": 2}})
    assert cfg.strategy.lr == 1.0 and isinstance(cfg.strategy.lr, float)


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("data", "num_parties", "3"),
        ("strategy", "local_epochs", True),
        ("strategy", "lr", "0.5"),
        ("run", "party_signals", 1),
        ("run", "rounds", 2.0),
    ],
)
def test_strings_bools_and_floats_are_not_silently_converted(section, key, value):
    with pytest.raises(ConfigError, match=rf"{section}\.{key}: Input should be"):
        parse_config({section: {key: value}})


def test_aggregator_options_without_an_aggregator_is_an_error():
    with pytest.raises(ConfigError, match="aggregator_options needs strategy.aggregator"):
        parse_config({"strategy": {"aggregator_options": {"num_byzantine": 2}}})


def test_no_op_settings_are_listed_and_defaults_are_not():
    cfg = parse_config(
        {
            "strategy": {"beta1": 0.5},
            "participation": {"straggler_policy": "partial"},
            "privacy": {"target_epsilon": 4.0},
            "attack": {"options": {"scale": 2.0}},
        }
    )
    notes = ineffective_settings(cfg)
    assert any("strategy.beta1 applies only to fedadam" in n for n in notes)
    assert any("straggler_policy has no effect without participation.deadline" in n for n in notes)
    assert any("privacy.target_epsilon has no effect" in n for n in notes)
    assert any("attack.fraction and attack.options have no effect" in n for n in notes)
    resolved = parse_config(__import__("tomllib").loads(parse_config({}).to_toml()))
    assert ineffective_settings(resolved) == []  # a resolved config.toml spells out defaults: no noise


def test_empty_file_warns_and_a_binary_file_is_an_error(tmp_path):
    empty = tmp_path / "e.toml"
    empty.write_text("")
    with pytest.warns(ConfigWarning, match="sets nothing"):
        load_config(empty)
    binary = tmp_path / "b.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not a text file"):
        load_config(binary)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (tmp_path / "ok.toml").write_text("[run]\nrounds = 2\n")
        load_config(tmp_path / "ok.toml")


def test_replicate_without_a_holdout_is_refused():
    with pytest.raises(
        ConfigError, match="data: replicate > 1 with holdout_fraction = 0 would evaluate on copies"
    ):
        parse_config({"data": {"replicate": 3, "holdout_fraction": 0.0}})
