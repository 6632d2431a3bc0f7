"""The mixer a config describes: resolved settings state every value and build the same mixer."""

from __future__ import annotations

import pytest

from lmix.experiments.train import config_from_sources, mixer_from_config
from lmix.experiments.train.config import run_identity
from lmix.experiments.train.mixer_config import (
    METHOD_PARAM_KEYS,
    ignored_mixer_settings,
    mixer_settings,
    resolve_mixer_settings,
)
from lmix.mixing import list_mixers

COMBINATIONS = ["lmix+mixup", "cutmix+fmix", "cutout+none", "lmix+fmix+mixup"]


@pytest.mark.parametrize("method", list_mixers() + COMBINATIONS)
def test_resolved_settings_build_the_same_mixer_and_resolve_to_themselves(method):
    config = config_from_sources({"method": method, "seed": 3})
    mixer = resolve_mixer_settings(config)
    assert mixer.describe() == mixer_from_config(config).describe()
    before = config.to_dict()
    resolve_mixer_settings(config)
    assert config.to_dict() == before
    # The saved config.yaml is a valid --config: it loads to the same config.
    assert config_from_sources(before) == config


def test_every_default_is_stated_and_settings_a_method_does_not_take_stay_null():
    config = config_from_sources({"method": "lmix"})
    resolve_mixer_settings(config)
    stated = {key: getattr(config, key) for key in METHOD_PARAM_KEYS if getattr(config, key) is not None}
    assert stated == {
        "alpha": 1.0,
        "decay": 3.0,
        "k": 1.0,
        "image_k": 0.0,
        "max_soft": 0.0,
        "reformulate": False,
        "mix_mode": "sample",
    }
    cutout = config_from_sources({"method": "cutout"})
    resolve_mixer_settings(cutout)
    assert cutout.box_size == 16  # the mixer's [16, 16], as the config's one side
    cutmix = config_from_sources({"method": "cutmix"})
    resolve_mixer_settings(cutmix)
    assert (cutmix.box_size, cutmix.box_rounding) == (None, "exact")  # None: CutMix's Beta-sampled box


def test_a_setting_the_method_ignores_is_reported_then_dropped():
    config = config_from_sources({"method": "none", "alpha": 0.4, "k": 2.0})
    assert ignored_mixer_settings(config) == ["alpha", "k"]
    resolve_mixer_settings(config)
    assert (config.alpha, config.k) == (None, None)


def test_a_combination_states_what_its_parts_agree_on():
    config = config_from_sources({"method": "lmix+mixup", "alpha": 0.5})
    mixer = resolve_mixer_settings(config)
    assert (config.alpha, config.k, config.mix_p, config.mix_schedule) == (0.5, 1.0, [0.5, 0.5], "random")
    # The choice draws per batch, its parts per sample: no one mix_mode states that.
    assert config.mix_mode is None and mixer.mode == "batch" and mixer.mixers[0].mode == "sample"
    config = config_from_sources({"method": "lmix+mixup", "mix_mode": "sample"})
    resolve_mixer_settings(config)
    assert config.mix_mode == "sample"


def test_mixer_settings_name_every_mixing_field():
    settings = mixer_settings(mixer_from_config(config_from_sources({"method": "patchup"})))
    assert list(settings) == list(METHOD_PARAM_KEYS)
    assert (settings["alpha"], settings["patchup_type"], settings["k"]) == (2.0, "soft", None)


def test_mix_p_is_refused_for_a_single_method():
    with pytest.raises(ValueError, match="only to combined methods"):
        resolve_mixer_settings(config_from_sources({"method": "lmix", "mix_p": [1.0]}))


def test_run_identity_treats_a_null_default_and_the_stated_default_as_the_same_run():
    old = config_from_sources({"method": "lmix"}).to_dict()
    new = config_from_sources({"method": "lmix"})
    resolve_mixer_settings(new)
    assert old["k"] is None and new.k == 1.0
    assert run_identity(old) == run_identity(new.to_dict())
    assert run_identity({**old, "k": 2.0}) != run_identity(new.to_dict())
    # A setting the method does not take does not make another run.
    assert run_identity({**old, "method": "none", "alpha": 1.0}) == run_identity({**old, "method": "none"})
    # A method that no longer exists is compared as saved.
    assert run_identity({**old, "method": "supermix"})["k"] is None


def test_soft_edges_and_reformulate_reach_the_mixer_and_the_records():
    """--max-soft and --reformulate (and their YAML keys) build the mixer with them; the resolved config
    states them for LMix/FMix and leaves them null for methods that do not take them."""
    import argparse

    from lmix.experiments.train.config import add_config_arguments

    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    flags = vars(parser.parse_args(["--method", "fmix", "--max-soft", "0.2", "--reformulate"]))
    config = config_from_sources(flags)
    mixer = resolve_mixer_settings(config)
    assert (mixer.max_soft, mixer.reformulate) == (0.2, True)
    assert (config.max_soft, config.reformulate) == (0.2, True)
    assert config_from_sources(config.to_dict()) == config  # the saved config.yaml builds it again
    assert mixer.describe()["max_soft"] == 0.2 and mixer.describe()["reformulate"] is True
    choice = config_from_sources({"method": "lmix+mixup", "max_soft": 0.1})
    assert resolve_mixer_settings(choice).mixers[0].max_soft == 0.1 and choice.max_soft == 0.1
    cutmix = config_from_sources({"method": "cutmix", "max_soft": 0.1, "reformulate": True})
    assert ignored_mixer_settings(cutmix) == ["max_soft", "reformulate"]
    resolve_mixer_settings(cutmix)
    assert (cutmix.max_soft, cutmix.reformulate) == (None, None)


@pytest.mark.parametrize(
    "layer,message",
    [
        ({"max_soft": 0.6}, "max_soft must be a number in [0, 0.5], got 0.6"),
        ({"max_soft": -0.1}, "max_soft must be a number in [0, 0.5], got -0.1"),
        ({"max_soft": "soft"}, "config key 'max_soft' must be of type float, got 'soft'"),
        ({"reformulate": "maybe"}, "config key 'reformulate' must be of type bool, got 'maybe'"),
        ({"reformulate": 1}, "config key 'reformulate' must be of type bool, got 1"),
    ],
)
def test_bad_soft_edges_and_reformulate_values_are_one_line_errors(layer, message):
    with pytest.raises(ValueError) as info:
        config_from_sources({"method": "lmix", **layer})
    assert str(info.value) == message
