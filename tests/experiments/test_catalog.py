"""Packaged configs: listed by ``lmix configs``, found by name from any directory, paths still win."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmix.experiments import catalog
from lmix.experiments.catalog import find_config, list_configs, resolve_config
from lmix.experiments.train import load_yaml
from tests.cli_helpers import one_line_error, run_cli

PACKAGED = Path(__file__).resolve().parents[2] / "src" / "lmix" / "experiments" / "configs"


def test_every_packaged_yaml_is_listed_with_a_description():
    configs = list_configs()
    files = sorted(PACKAGED.rglob("*.yaml"))
    assert len(files) >= 20
    assert sorted(c.path for c in configs) == [f.resolve() for f in files]
    assert len({c.name for c in configs}) == len(configs)  # names are unique
    for config in configs:
        expected = "sweep" if config.path.parent.name == "sweeps" else "train"
        assert config.kind == expected, config
        assert config.description and "\n" not in config.description, config
        assert len(config.description) <= 110
    kinds = [c.kind for c in configs]
    assert kinds == sorted(kinds, key=lambda k: k != "train")  # training configs first


def test_description_is_the_first_sentence(tmp_path, monkeypatch):
    (tmp_path / "sweeps").mkdir()
    (tmp_path / "a.yaml").write_text("# First line of a sentence\n# that ends here. Not this.\nkey: 1\n")
    (tmp_path / "sweeps" / "b.yaml").write_text("#\n# Short one.\n# More.\nname: b\n")
    (tmp_path / "c.yaml").write_text("epochs: 1  # no opening comment\n")
    (tmp_path / "notes.md").write_text("# not a config\n")
    monkeypatch.setattr(catalog, "CONFIG_DIR", tmp_path)
    got = {c.name: (c.kind, c.description) for c in list_configs()}
    assert got == {
        "a": ("train", "First line of a sentence that ends here."),
        "c": ("train", ""),
        "b": ("sweep", "Short one."),
    }


def test_paper_descriptions_name_their_table():
    config = find_config("table1_cifar10_preact_resnet18")
    assert config is not None and config.kind == "train"
    assert config.description.startswith("LMix paper, Table 1 (CIFAR-10)")
    assert find_config("table1.yaml").kind == "sweep"
    assert find_config("table1", "train") is None
    assert find_config("nothing") is None


def test_bare_name_resolves_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = resolve_config("table1_cifar10_preact_resnet18", kind="train")
    assert Path(path) == PACKAGED.resolve() / "paper" / "table1_cifar10_preact_resnet18.yaml"
    assert load_yaml(path)["model"] == "preact_resnet18"
    assert resolve_config("table1.yaml", kind="sweep") == str(PACKAGED.resolve() / "sweeps" / "table1.yaml")


def test_an_existing_path_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "table1").write_text("name: mine\n")
    assert resolve_config("table1", kind="sweep") == "table1"
    # a path with a '/' is passed on as it is, so the caller's loader reports a missing file
    assert resolve_config("configs/sweeps/table1.yaml", kind="sweep") == "configs/sweeps/table1.yaml"


def test_unknown_or_wrong_kind_names_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        FileNotFoundError, match=r"no file 'nope' and no packaged sweep spec of that name; `lmix configs`"
    ):
        resolve_config("nope", kind="sweep")
    with pytest.raises(
        FileNotFoundError, match=r"'table1' is a packaged sweep spec, not a training config: use it with lmix sweep"
    ):
        resolve_config("table1", kind="train")
    with pytest.raises(FileNotFoundError, match="use it with lmix train --config"):
        resolve_config("table2_cifar100_preact_resnet18", kind="sweep")


def test_lmix_configs_lists_both_kinds(capsys):
    code, out, err = run_cli(capsys, ["configs"])
    assert code == 0 and err == ""
    lines = out.splitlines()
    train_at = next(i for i, line in enumerate(lines) if line.startswith("Training configs"))
    sweep_at = next(i for i, line in enumerate(lines) if line.startswith("Sweep specs"))
    assert train_at < sweep_at
    listed = {line.split()[0]: i for i, line in enumerate(lines) if line.startswith("  ")}
    for config in list_configs():
        assert config.name in listed, config.name
        assert (listed[config.name] > sweep_at) == (config.kind == "sweep"), config.name
    assert any("table4" in line and "Fashion-MNIST" in line for line in lines)


def test_lmix_configs_name_prints_the_file_or_its_path(capsys):
    code, out, _ = run_cli(capsys, ["configs", "table5"])
    assert code == 0 and out == (PACKAGED / "sweeps" / "table5.yaml").read_text()
    code, out, _ = run_cli(capsys, ["configs", "table5_svhn_wrn28_10", "--path"])
    assert code == 0 and Path(out.strip()) == PACKAGED.resolve() / "paper" / "table5_svhn_wrn28_10.yaml"
    one_line_error(capsys, ["configs", "nope"], "no packaged config named 'nope'", "lmix configs")
    one_line_error(capsys, ["configs", "--path"], "--path needs a NAME")


def test_train_and_sweep_take_names(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_line_error(
        capsys, ["train", "--config", "nope", "--epochs", "1"], "no packaged training config", "lmix configs"
    )
    one_line_error(capsys, ["train", "--config", "table1"], "is a packaged sweep spec")
    one_line_error(capsys, ["sweep", "nope", "--dry-run"], "no packaged sweep spec")
    code, out, err = run_cli(capsys, ["sweep", "table4", "--dry-run", "--out", str(tmp_path / "runs")])
    assert code == 0, err
    assert "[25/25] todo" in out and "dataset=fashion_mnist/model=preact_resnet18" in out
