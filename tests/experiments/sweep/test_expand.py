"""Sweep expansion: product size, stable names, include/runs, dedupe, ordering, validation."""

from __future__ import annotations

import pytest

from lmix.experiments.sweep import expand, format_value, load_spec, parse_spec

GRID = {
    "base": {"dataset": "digits", "model": "simple_cnn", "epochs": 3},
    "grid": {"method": ["mixup", "lmix"], "alpha": [0.5, 2.0], "seed": [0, 1, 2]},
}


def test_product_size_names_and_order(tmp_path):
    runs = expand(parse_spec(GRID), tmp_path)
    assert len(runs) == 2 * 2 * 3
    names = [r.name for r in runs]
    assert len(set(names)) == len(names)
    assert names[0] == "dataset=digits/model=simple_cnn/method=mixup/alpha=0.5/seed=0"
    # seed varies slowest: the first 4 runs are every (method, alpha) with seed 0
    assert [r.config.seed for r in runs] == [0] * 4 + [1] * 4 + [2] * 4
    assert [r.index for r in runs] == list(range(12))
    for r in runs:
        assert r.dir == tmp_path / r.name
        assert r.config.epochs == 3 and r.config.model == "simple_cnn"
        assert f"alpha={format_value(r.config.alpha)}" in r.name and f"seed={r.config.seed}" in r.name


def test_names_are_stable_across_invocations(tmp_path, write_spec):
    path = write_spec(GRID)
    a = [(r.name, r.settings) for r in expand(load_spec(path), tmp_path)]
    b = [(r.name, r.settings) for r in expand(load_spec(path), tmp_path)]
    assert a == b


def test_include_and_runs_add_runs(tmp_path):
    spec = dict(GRID)
    spec["include"] = [{"method": ["cutout"], "seed": [0, 1], "box_size": [4]}]  # a box that fits digits' 8x8
    spec["runs"] = [{"method": "lmix+mixup", "seed": 7, "mix_schedule": "alternate"}]
    runs = expand(parse_spec(spec), tmp_path)
    assert len(runs) == 12 + 2 + 1
    # seed slowest across grid, include and runs alike
    assert [r.config.seed for r in runs] == [0] * 5 + [1] * 5 + [2] * 4 + [7]
    extra = runs[-1]
    assert extra.config.method == "lmix+mixup" and extra.config.seed == 7
    assert extra.name == "dataset=digits/model=simple_cnn/method=lmix+mixup/mix_schedule=alternate/seed=7"
    cutout = [r for r in runs if r.config.method == "cutout"]
    # cutout takes no alpha: the setting is dropped and left out of the name
    assert [r.name for r in cutout] == [
        "dataset=digits/model=simple_cnn/method=cutout/box_size=4/seed=0",
        "dataset=digits/model=simple_cnn/method=cutout/box_size=4/seed=1",
    ]
    assert all(r.config.alpha is None for r in cutout)


def test_settings_a_method_ignores_do_not_multiply_runs(tmp_path):
    spec = {"base": {"model": "simple_cnn"}, "grid": {"method": ["none", "mixup"], "alpha": [0.2, 1.0], "seed": [0]}}
    runs = expand(parse_spec(spec), tmp_path)
    assert sorted(r.name for r in runs) == [
        "dataset=digits/model=simple_cnn/method=mixup/alpha=0.2/seed=0",
        "dataset=digits/model=simple_cnn/method=mixup/alpha=1.0/seed=0",
        "dataset=digits/model=simple_cnn/method=none/seed=0",
    ]


def test_layers_config_base_grid_overrides(tmp_path, write_spec):
    (tmp_path / "cfg.yaml").write_text("model: simple_cnn\nepochs: 9\nlr: 0.05\nmilestones: [3, 6]\n")
    path = write_spec({"config": "cfg.yaml", "base": {"epochs": 8}, "grid": {"seed": [0, 1], "lr": [0.2]}})
    runs = expand(load_spec(path), tmp_path / "out", overrides={"device": "cpu"})
    assert len(runs) == 2
    for r in runs:
        assert (r.config.model, r.config.epochs, r.config.lr, r.config.device) == ("simple_cnn", 8, 0.2, "cpu")
        assert r.config.milestones == [3, 6]
        assert r.name.endswith(f"/lr=0.2/seed={r.config.seed}")


def test_list_valued_fields_take_lists_of_alternatives(tmp_path):
    runs = expand(parse_spec({"base": {"epochs": 10}, "grid": {"milestones": [[5], [5, 8]]}}), tmp_path)
    assert [r.config.milestones for r in runs] == [[5], [5, 8]]
    assert runs[1].name.endswith("milestones=5,8/seed=0")
    with pytest.raises(ValueError, match="each itself a list"):
        parse_spec({"grid": {"milestones": [5, 8]}})


def test_scalar_grid_value_is_one_alternative(tmp_path):
    runs = expand(parse_spec({"grid": {"method": "lmix", "seed": [0, 1]}}), tmp_path)
    assert [r.config.method for r in runs] == ["lmix", "lmix"]


@pytest.mark.parametrize(
    "grid, needle",
    [
        ({"method": ["lmix", "supermix"]}, "unknown mixer 'supermix'"),
        ({"model": ["resnet9000"]}, "unknown model 'resnet9000'"),
        ({"dataset": ["imagenet22k"]}, "unknown dataset 'imagenet22k'"),
        ({"epochs": [0]}, "epochs must be an integer >= 1"),
        ({"method": ["lmix"], "alpha": [-1.0]}, "alpha"),
    ],
)
def test_every_run_is_validated_before_running(tmp_path, grid, needle):
    with pytest.raises(ValueError) as err:
        expand(parse_spec({"grid": {**grid, "seed": [0]}}), tmp_path)
    assert needle in str(err.value)


def test_set_overrides_may_not_touch_varied_keys(tmp_path):
    with pytest.raises(ValueError, match="varies"):
        expand(parse_spec(GRID), tmp_path, overrides={"alpha": 1.0})
    with pytest.raises(ValueError, match="unknown config key"):
        expand(parse_spec(GRID), tmp_path, overrides={"nope": 1})
