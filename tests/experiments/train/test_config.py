"""TrainConfig: defaults, YAML, overrides and validation; every shipped paper config loads."""

from __future__ import annotations

from pathlib import Path

import pytest

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
