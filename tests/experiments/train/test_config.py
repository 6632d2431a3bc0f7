"""TrainConfig: defaults, YAML, overrides and validation; every shipped paper config loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lmix.experiments.train.config import TrainConfig, config_from_sources, load_yaml

ROOT = Path(__file__).resolve().parents[3]
PAPER_CONFIGS = sorted((ROOT / "configs" / "paper").glob("*.yaml"))


def test_defaults_validate():
    cfg = TrainConfig().validate()
    assert cfg.dataset == "digits" and cfg.method == "lmix"
    assert cfg.resolved_milestones() == [cfg.epochs // 2, 3 * cfg.epochs // 4]


def test_yaml_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("epochs: 7\nlr: 0.05\nmilestones: [3, 5]\n")
    cfg = config_from_sources(load_yaml(f), {"lr": 0.2})
    assert cfg.epochs == 7 and cfg.lr == 0.2 and cfg.milestones == [3, 5]


@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=[p.stem for p in PAPER_CONFIGS])
def test_paper_configs_load(path):
    cfg = config_from_sources(load_yaml(path))
    assert cfg.epochs in (200, 300) and cfg.batch_size == 128 and cfg.lr == 0.1
    assert cfg.weight_decay == pytest.approx(1e-4) and cfg.momentum == 0.9
    assert max(cfg.resolved_milestones()) < cfg.epochs


def test_paper_configs_cover_every_table():
    stems = {p.stem.split("_")[0] for p in PAPER_CONFIGS}
    assert {"table1", "table2", "table3", "table4", "table5", "figure4"} <= stems
    assert len(PAPER_CONFIGS) == 14


@pytest.mark.parametrize(
    "override, match",
    [
        ({"epochs": 0}, "epochs must be"),
        ({"batch_size": 0}, "batch_size must be"),
        ({"lr": -1.0}, "lr must be"),
        ({"lr": 0.0}, "lr must be"),
        ({"milestones": [5, 50], "epochs": 10}, "past the last epoch"),
        ({"milestones": [5, 3]}, "increasing"),
        ({"schedule": "linear"}, "schedule must be"),
        ({"amp": "fp8"}, "amp must be"),
        ({"device": "tpu"}, "device must be"),
        ({"bogus": 1}, "unknown config key"),
        ({"epochs": "ten"}, "must be of type int"),
    ],
)
def test_bad_values(override, match):
    with pytest.raises(ValueError, match=match):
        config_from_sources(override)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("epochs", True, "epochs must be an integer >= 1, got True"),
        ("epochs", 2.0, "epochs must be an integer >= 1, got 2.0"),
        ("lr", "fast", "lr must be a number in (0, 100), got 'fast'"),
        ("lr", 100.0, "lr must be a number in (0, 100), got 100.0"),
        ("momentum", 1.0, "momentum must be a number in [0, 1), got 1.0"),
        ("lr_gamma", 0.0, "lr_gamma must be a number in (0, 1], got 0.0"),
        ("weight_decay", -1e-4, "weight_decay must be a number >= 0, got -0.0001"),
        ("crop_padding", -1, "crop_padding must be an integer >= 0, got -1"),
        ("warmup_epochs", 30, "warmup_epochs must be an integer in [0, epochs=30), got 30"),
        ("schedule", None, "schedule must be 'multistep', 'cosine' or 'onecycle', got None"),
        ("model_layout", "wide", "model_layout must be 'preact' or 'fmix', got 'wide'"),
        ("device", "cuda:x", "device must be auto, cpu, cuda or cuda:N, got 'cuda:x'"),
    ],
)
def test_validate_names_the_field_the_value_and_what_is_allowed(field, value, message):
    with pytest.raises(ValueError) as err:
        TrainConfig(**{field: value}).validate()
    assert str(err.value) == message


def test_validate_accepts_the_ends_of_closed_intervals_and_unset_optional_fields():
    TrainConfig(momentum=0.0, lr_gamma=1.0, label_smoothing=0.0, crop_padding=0, train_subset=None).validate()
    TrainConfig(model="preact_resnet18", model_layout="fmix", compile_mode="max-autotune", device="cuda:1").validate()


def test_bad_yaml(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("epochs: [1\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_yaml(f)
    f.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        load_yaml(f)
    with pytest.raises(FileNotFoundError):
        load_yaml(tmp_path / "missing.yaml")


def test_method_params_entry_wins_over_the_shared_settings_of_its_source():
    paper = {"alpha": 1.0, "method_params": {"patchup": {"alpha": 2.0, "patchup_type": "soft"}}}
    cfg = config_from_sources(paper, {"method": "patchup"})
    assert (cfg.alpha, cfg.patchup_type, cfg.method_params) == (2.0, "soft", {})
    assert config_from_sources(paper, {"method": "mixup"}).alpha == 1.0  # another method: shared value
    # A later source's shared setting (a flag) wins over an earlier source's entry.
    assert config_from_sources(paper, {"method": "patchup", "alpha": 0.5}).alpha == 0.5
    # Within one source the entry wins, whatever the key order.
    one = {"method": "patchup", "method_params": {"patchup": {"alpha": 2.0}}, "alpha": 1.0}
    assert config_from_sources(one).alpha == 2.0
    # Resolving is idempotent: the saved config.yaml reloads to the same config (resume, identity).
    again = config_from_sources(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg


@pytest.mark.parametrize(
    "value, match",
    [
        ({"supermix": {"alpha": 2.0}}, "not a method"),
        ({"patchup": {"lr": 0.1}}, "cannot be set per method"),
        ({"patchup": {"alpha": "two"}}, "must be of type float"),
        ({"patchup": 2.0}, "mapping of settings"),
        ([1, 2], "mapping of method"),
    ],
)
def test_method_params_errors(value, match):
    with pytest.raises(ValueError, match=match):
        config_from_sources({"method_params": value})


def test_method_params_flag_takes_yaml(capsys, tmp_path):
    import argparse

    from lmix.experiments.train.config import add_config_arguments

    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    ns = parser.parse_args(["--method", "cutmix", "--method-params", "{cutmix: {box_size: 16}, patchup: {alpha: 2}}"])
    cfg = config_from_sources(vars(ns))
    assert cfg.box_size == 16 and cfg.alpha is None
    with pytest.raises(SystemExit):
        parser.parse_args(["--method-params", "[1, 2]"])


def test_crop_and_flip_resolve_from_the_data_set_and_override_separately():
    cfg = config_from_sources({"dataset": "tiny_imagenet"})
    assert (cfg.crop_padding, cfg.flip) == (0, True)  # Tiny ImageNet's standard augmentation: flip only
    cfg = config_from_sources({"dataset": "cifar10"})
    assert (cfg.crop_padding, cfg.flip) == (4, True)
    cfg = config_from_sources({"dataset": "cifar10", "crop_padding": 0})
    assert (cfg.crop_padding, cfg.flip) == (0, True)
    cfg = config_from_sources({"dataset": "svhn", "flip": True})
    assert (cfg.crop_padding, cfg.flip) == (4, True)
    with pytest.raises(ValueError, match="crop_padding must be"):
        config_from_sources({"crop_padding": -1})


def test_run_identity_of_an_older_config_matches_its_rerun():
    from lmix.experiments.train.config import run_identity

    new = config_from_sources({"dataset": "cifar10", "method": "mixup"}).to_dict()
    old = {k: v for k, v in new.items() if k not in ("crop_padding", "flip", "compile_mode", "box_rounding")}
    old["method_params"] = None
    assert run_identity(old) == run_identity(new)
    assert run_identity({**new, "test_batch_size": 64, "checkpoint_every": 5}) == run_identity(new)
    assert run_identity({**new, "crop_padding": 0}) != run_identity(new)


def test_cuda_settings_validate():
    cfg = config_from_sources({"compile": True, "compile_mode": "max-autotune", "test_batch_size": 4096})
    assert cfg.compile and cfg.compile_mode == "max-autotune" and cfg.checkpoint_every == 1
    for bad, match in [
        ({"compile_mode": "fast"}, "compile_mode must be"),
        ({"test_batch_size": 0}, "test_batch_size must be"),
        ({"checkpoint_every": 0}, "checkpoint_every must be"),
        ({"box_rounding": "floor"}, "box_rounding must be"),
    ]:
        with pytest.raises(ValueError, match=match):
            config_from_sources(bad)


@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=[p.stem for p in PAPER_CONFIGS])
def test_paper_configs_give_each_method_the_papers_values(path):
    """The paper's settings: PatchUp soft with alpha 2; every other method alpha 1 and its defaults."""
    layer = load_yaml(path)
    patchup = config_from_sources(layer, {"method": "patchup"})
    assert (patchup.alpha, patchup.patchup_type) == (2.0, "soft")
    assert (patchup.patchup_prob, patchup.gamma, patchup.block_size) == (0.7, 0.5, 7)
    for method in ("mixup", "cutmix", "fmix", "lmix", "lmix+mixup"):
        cfg = config_from_sources(layer, {"method": method})
        assert cfg.alpha == 1.0 and cfg.patchup_type is None, method
        assert cfg.box_size is None  # CutMix: the Beta-sampled box, not a fixed one


def test_reference_restoring_settings_reach_the_mixer():
    """--box-rounding reference, --mix-mode batch and --amp none: the cheap ways back to the references."""
    from lmix.experiments.train import mixer_from_config

    cfg = config_from_sources({"method": "cutmix", "box_rounding": "reference", "mix_mode": "batch", "amp": "none"})
    mixer = mixer_from_config(cfg)
    assert (mixer.box_rounding, mixer.mode, cfg.amp) == ("reference", "batch", "none")
    per_method = config_from_sources({"method": "cutmix", "method_params": {"cutmix": {"box_rounding": "reference"}}})
    assert mixer_from_config(per_method).box_rounding == "reference"


def test_patchup_loss_scale_reaches_the_mixer_and_is_refused_when_wrong():
    from lmix.experiments.train import mixer_from_config

    assert mixer_from_config(config_from_sources({"method": "patchup"})).loss_scale == "reference"
    single = config_from_sources({"method": "patchup", "method_params": {"patchup": {"loss_scale": "single"}}})
    assert single.loss_scale == "single" and mixer_from_config(single).loss_scale == "single"
    with pytest.raises(ValueError, match="loss_scale must be 'reference'"):
        mixer_from_config(config_from_sources({"method": "patchup", "loss_scale": "twice"}))


@pytest.mark.parametrize("key", ["\x1e", "a\nb", "\x00", "ok"])
def test_identity_difference_is_one_line_whatever_the_keys(key):
    from lmix.experiments.train.config import identity_difference

    ours = TrainConfig().to_dict()
    shown = identity_difference({**ours, key: []}, ours)
    assert shown is not None and len(shown.splitlines()) == 1 and shown.startswith(repr(key)[1:-1] + ": [] there")
    assert identity_difference(dict(ours), ours) is None
