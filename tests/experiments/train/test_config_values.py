"""Config values as every source gives them: -0.0 is 0.0, a seed lies in [0, 2**63) (compared exactly,
not as a float), a number YAML reads as text ("nan") is told what is allowed, and a wrong value names
where it came from (the --config file, the sweep spec's block, --set)."""

from __future__ import annotations

import math
import typing
from dataclasses import fields

import pytest
import torch
import yaml

from lmix.errors import LmixValueError
from lmix.experiments.train.config import (
    SEED_LIMIT,
    TrainConfig,
    _base_type,
    check_keys,
    config_from_sources,
    load_yaml,
)
from lmix.experiments.train.mixer_config import mixer_from_config

HINTS = typing.get_type_hints(TrainConfig)
FLOAT_FIELDS = [f.name for f in fields(TrainConfig) if _base_type(HINTS[f.name])[0] is float]
FLOAT_LIST_FIELDS = [f.name for f in fields(TrainConfig) if _base_type(HINTS[f.name])[0] == list[float]]
NUMBER_FIELDS = [f.name for f in fields(TrainConfig) if _base_type(HINTS[f.name])[0] in (int, float)]


def _positive_zero(value: float) -> bool:
    return value == 0.0 and math.copysign(1.0, value) == 1.0


@pytest.mark.parametrize("name", FLOAT_FIELDS)
def test_every_float_field_given_minus_zero_holds_zero(name, tmp_path):
    # as a YAML file (--config, a sweep spec) and as a flag (argparse's float) give it
    path = tmp_path / "c.yaml"
    path.write_text(f"{name}: -0.0\n")
    assert _positive_zero(load_yaml(path)[name])
    assert _positive_zero(check_keys({name: float("-0.0")}, source="--set")[name])
    # a TrainConfig built in Python: resolve() writes the one spelling config.yaml then holds
    config = TrainConfig(**{name: -0.0}).resolve()
    assert _positive_zero(getattr(config, name))
    assert f"{name}: -0.0" not in config.to_yaml() and f"{name}: 0.0" in config.to_yaml()


@pytest.mark.parametrize("name", FLOAT_LIST_FIELDS)
def test_every_float_list_field_given_minus_zero_holds_zero(name):
    # the families are what they should be (a renamed type would empty them silently)
    assert {"max_soft", "alpha", "lr", "label_smoothing"} <= set(FLOAT_FIELDS)
    assert FLOAT_LIST_FIELDS == ["mix_p"] and {"seed", "epochs", "crop_padding"} <= set(NUMBER_FIELDS)
    (value,) = check_keys({name: [-0.0, 1.0]}, source="--set").values()
    assert _positive_zero(value[0]) and value[1] == 1.0
    assert _positive_zero(getattr(TrainConfig(**{name: [-0.0, 1.0]}).resolve(), name)[0])


def test_minus_zero_max_soft_is_saved_as_zero():
    config = config_from_sources({"method": "lmix", "max_soft": -0.0})
    assert yaml.safe_load(config.to_yaml())["max_soft"] == 0.0 and "max_soft: 0.0" in config.to_yaml()


@pytest.mark.parametrize("seed", [SEED_LIMIT, SEED_LIMIT + 1, 2**64 - 1, 2**64, 2**100, -1])
def test_a_seed_outside_the_range_is_refused_by_validation(seed):
    with pytest.raises(LmixValueError) as err:
        config_from_sources({"seed": seed})
    assert str(err.value) == f"seed must be an integer in [0, 2**63), got {seed}"


@pytest.mark.parametrize("method", ["lmix", "lmix+mixup", "cutmix+cutout+mixup", "patchup"])
def test_the_largest_seed_works_and_the_next_is_refused(method):
    # the bound leaves room for a combination's components, seeded seed + 1, seed + 2, ...
    config = config_from_sources({"seed": SEED_LIMIT - 1, "method": method})
    mixer = mixer_from_config(config)
    if not mixer.uses_model:
        mixer(torch.rand(4, 1, 8, 8), torch.arange(4))
    # compared exactly: 2**63 - 1 and 2**63 are the same float
    assert float(SEED_LIMIT - 1) == float(SEED_LIMIT) and config.seed == SEED_LIMIT - 1
    with pytest.raises(LmixValueError, match=r"seed must be an integer in \[0, 2\*\*63\)"):
        config_from_sources({"seed": SEED_LIMIT, "method": method})


@pytest.mark.parametrize("name", NUMBER_FIELDS)
@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "NaN", "-Infinity"])
def test_a_non_finite_number_written_as_text_is_told_what_is_allowed(name, text):
    # YAML reads nan and inf as text (its own spellings are .nan and .inf)
    with pytest.raises(LmixValueError) as err:
        check_keys({name: text}, source="--set", named=True)
    message = str(err.value)
    assert message.startswith(f"--set: config key {name!r} must be ") and message.endswith(f", got {text!r}")
    assert "of type" not in message
    bounds = next(f for f in fields(TrainConfig) if f.name == name).metadata["bounds"]
    if _base_type(HINTS[name])[0] is float:
        assert "a finite number" in message
    if bounds is not None:
        assert bounds in message


def test_max_soft_nan_says_the_interval():
    with pytest.raises(LmixValueError) as err:
        check_keys({"max_soft": "nan"}, source="--set", named=True)
    assert str(err.value) == "--set: config key 'max_soft' must be a finite number in [0, 0.5], got 'nan'"


def test_a_config_file_s_wrong_value_names_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("max_soft: abc\n")
    with pytest.raises(LmixValueError) as err:
        load_yaml(path)
    assert str(err.value) == f"{path}: config key 'max_soft' must be of type float, got 'abc'"
    # a caller that names the file itself (the run records' reader) gets the message without it
    with pytest.raises(LmixValueError) as err:
        check_keys({"max_soft": "abc"}, source="config.yaml")
    assert str(err.value) == "config key 'max_soft' must be of type float, got 'abc'"


@pytest.mark.parametrize("name", FLOAT_FIELDS + FLOAT_LIST_FIELDS)
@pytest.mark.parametrize("text, value", [("1e-3", 1e-3), ("5E-1", 0.5), ("25e-3", 25e-3), ("-0e0", 0.0)])
def test_every_float_field_takes_exponent_notation_as_yaml_1_1_reads_it(name, text, value, tmp_path):
    """`lr: 1e-3` is text to PyYAML (YAML 1.1 wants a dot); it is the number in a config file, a spec and --set."""
    path = tmp_path / "c.yaml"
    path.write_text(f"{name}: {text}\n")
    read = yaml.safe_load(path.read_text())[name]
    assert read == text  # the YAML 1.1 reading this works around
    got = load_yaml(path)[name]
    got = got[0] if isinstance(got, list) else got
    assert got == value and isinstance(got, float) and not (value == 0.0 and not _positive_zero(got))
    assert check_keys({name: text}, source="--set")[name] == load_yaml(path)[name]


@pytest.mark.parametrize("text", ["1e400", "-1e999", "1e", "e-3", "1e-3x", "1 e-3", "0x1p-3"])
def test_text_that_is_not_a_finite_exponent_number_is_still_refused(text):
    with pytest.raises(LmixValueError, match="config key 'lr' must be"):
        check_keys({"lr": text}, source="--set")


def test_lmix_train_config_file_with_lr_1e_3(tmp_path, capsys):
    from tests.cli_helpers import run_cli

    path = tmp_path / "c.yaml"
    path.write_text(
        "dataset: digits\nwidth: 4\nepochs: 1\ntrain_subset: 64\nbatch_size: 32\nlr: 1e-3\nprogress: false\n"
    )
    code, _, err = run_cli(capsys, ["train", "--config", str(path), "--out", str(tmp_path / "run")])
    assert code == 0, err
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["lr"] == 0.001
