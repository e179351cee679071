"""Config parsing: defaults, overrides, TOML round trip, and one clear error per mistake."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from robench.config import ConfigError, config_from_dict, load_config, to_toml


def test_defaults_are_the_paper_recipe() -> None:
    cfg = load_config(None)
    t = cfg.train
    assert (t.lr, t.momentum, t.nesterov, t.weight_decay, t.batch_size) == (
        0.1,
        0.9,
        True,
        5e-4,
        128,
    )
    assert t.lr_min == 1e-6 and cfg.augment.method == "baseline"


def test_overrides_and_round_trip() -> None:
    cfg = load_config(None, ["train.epochs=3", "augment.options={jsd = false}", "name=quick"])
    assert cfg.train.epochs == 3 and cfg.augment.options == {"jsd": False} and cfg.name == "quick"
    assert config_from_dict(tomllib.loads(to_toml(cfg))) == cfg


def test_integer_accepted_for_float() -> None:
    assert load_config(None, ["train.lr=1"]).train.lr == 1.0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epoc=3", "unknown config key 'train.epoc' (did you mean 'train.epochs'?)"),
        ("train.epochs=0", "'train.epochs' must be >= 1"),
        ("train.lr=-0.1", "'train.lr' must be > 0.0"),
        ("train.momentum=2", "'train.momentum' must be <= 1.0"),
        ('train.epochs="ten"', "'train.epochs' must be an integer"),
        ("train.epochs=2.5", "'train.epochs' must be an integer"),
        ("train.nesterov=1", "'train.nesterov' must be true or false"),
        ("train.amp=maybe", "'train.amp' must be one of auto | on | off"),
        ("train.step=graph", "'train.step' must be one of auto | eager | captured"),
        ("evaluate.metrics=3", "'evaluate.metrics' must be a list of a string"),
        ("model=3", "'model' must be a [model] table"),
        ("nonsense=1", "unknown config key 'nonsense'"),
    ],
)
def test_bad_values_give_one_line_naming_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_captured_step_cannot_be_compiled_too() -> None:
    with pytest.raises(ConfigError, match=r"does not work with train\.compile = true"):
        load_config(None, ["train.step=captured", "train.compile=true"])
    assert load_config(None, ["train.step=auto", "train.compile=true"]).train.compile


def test_malformed_toml_file(tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nepochs = 3\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(bad)


def test_missing_config_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_shipped_configs_parse() -> None:
    configs = sorted((Path(__file__).resolve().parents[1] / "baselines").glob("*.toml"))
    assert configs
    for path in configs:
        load_config(path)
