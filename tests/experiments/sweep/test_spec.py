"""Reading sweep specs: unknown or misplaced keys, empty grids, config layers, attack_eps."""

from __future__ import annotations

import pytest

from lmix.errors import LmixValueError
from lmix.experiments.sweep import load_spec, parse_spec


@pytest.mark.parametrize(
    "spec, needle",
    [
        ({"grid": {"sed": [0]}}, "unknown key(s) ['sed']; known keys:"),
        ({"base": {"epoch": 3}, "grid": {"seed": [0]}}, "unknown config key(s) ['epoch']"),
        ({"gird": {"seed": [0]}}, "unknown key(s) ['gird']; known keys: name"),
        ({"base": {"epochs": 3}}, "defines no runs"),
        ({"grid": {}}, "grid: must be a non-empty mapping"),
        ({"grid": {"seed": []}}, "seed has an empty list"),
        ({"grid": {"epochs": ["ten"]}}, "must be of type int"),
        ({"base": {"out": "x"}, "grid": {"seed": [0]}}, "set by lmix sweep"),
        ({"runs": [{}]}, "non-empty mapping"),
        (["seed"], "must be a mapping"),
    ],
)
def test_invalid_specs(spec, needle):
    with pytest.raises(LmixValueError) as err:
        parse_spec(spec)
    assert needle in str(err.value)


def test_layers_varied_keys_and_name(tmp_path, write_spec):
    (tmp_path / "cfg.yaml").write_text("model: simple_cnn\nepochs: 9\n")
    path = write_spec(
        {
            "config": "cfg.yaml",
            "base": {"epochs": 8},
            "grid": {"method": ["lmix"], "seed": [0]},
            "include": [{"alpha": [0.5]}],
            "runs": [{"lr": 0.2, "seed": 1}],
        },
        name="my_spec.yaml",
    )
    spec = load_spec(path)
    assert spec.name == "my_spec" and spec.source == str(path)
    assert spec.layers == ({"model": "simple_cnn", "epochs": 9}, {"epochs": 8})
    assert spec.varied == ("method", "seed", "alpha", "lr")
    assert [dict(g) for g in spec.grids] == [{"method": ("lmix",), "seed": (0,)}, {"alpha": (0.5,)}]
    assert spec.attack_eps is None


@pytest.mark.parametrize("value", [[0, 2, 8], "0,2,8", [0.0, 2, 8.0]])
def test_attack_eps_in_255_units(value):
    spec = parse_spec({"attack_eps": value, "grid": {"seed": [0]}})
    assert spec.attack_eps == (0.0, 2.0, 8.0)
    assert parse_spec({"attack_eps": 4, "grid": {"seed": [0]}}).attack_eps == (4.0,)


@pytest.mark.parametrize("value", [[], [True], {"eps": 1}, [0, 300]])
def test_bad_attack_eps(value):
    with pytest.raises(LmixValueError, match="attack_eps"):
        parse_spec({"attack_eps": value, "grid": {"seed": [0]}})
