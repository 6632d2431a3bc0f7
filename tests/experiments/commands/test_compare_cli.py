"""lmix compare: the default study's spec, a real tiny end-to-end run, resume, and its CLI errors."""

from __future__ import annotations

import json

import pytest

from lmix.experiments.cli import build_parser, main
from lmix.experiments.commands.compare import DEFAULT_METHODS, DEFAULT_SEEDS, DEFAULTS, build_spec
from lmix.experiments.sweep import expand, parse_spec
from tests.cli_helpers import one_line_error

TINY = [
    "--model",
    "simple_cnn",
    "--width",
    "8",
    "--epochs",
    "2",
    "--seeds",
    "2",
    "--methods",
    "none,lmix",
    "--train-subset",
    "100",
    "--batch-size",
    "32",
    "--set",
    "eval_train=100",
]


def test_default_study_spec(tmp_path):
    args = build_parser().parse_args(["compare"])
    spec = build_spec(args)
    assert spec["grid"] == {"method": list(DEFAULT_METHODS), "seed": list(range(DEFAULT_SEEDS))}
    assert {k: spec["base"][k] for k in DEFAULTS} == DEFAULTS
    runs = expand(parse_spec(spec), tmp_path)
    assert len(runs) == len(DEFAULT_METHODS) * DEFAULT_SEEDS
    assert {r.config.dataset for r in runs} == {"digits"}


def test_other_model_or_dataset_drops_the_digits_defaults():
    spec = build_spec(build_parser().parse_args(["compare", "--model", "preact_resnet18", "--dataset", "cifar10"]))
    assert "width" not in spec["base"] and "train_subset" not in spec["base"]
    spec = build_spec(build_parser().parse_args(["compare", "--train-subset", "all"]))
    assert "train_subset" not in spec["base"]


def test_compare_end_to_end_and_rerun(capsys, tmp_path):
    out = tmp_path / "cmp"
    assert main(["compare", *TINY, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| model | Baseline | LMix |" in text
    assert "simple_cnn: regime: " in text
    assert "4 runs trained" in text
    data = json.loads((out / "report" / "report.json").read_text())
    assert sorted(g["method"] for g in data["groups"]) == ["lmix", "none"]
    for g in data["groups"]:
        assert len(g["runs"]) == 2
        for r in g["runs"]:
            summary = json.loads((out / r["dir"] / "summary.json").read_text())
            assert summary["final_acc"] == r["final_acc"] and summary["epochs"] == 2
    assert (out / "report" / "fig4_curves_digits_simple_cnn.png").is_file()
    assert (out / "compare.yaml").is_file() and (out / "sweep.json").is_file()
    # the same command again finds every run done
    assert main(["compare", *TINY, "--out", str(out)]) == 0
    assert "0 runs trained" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--seeds", "0"], "--seeds must be >= 1"),
        (["--train-subset", "lots"], "--train-subset must be an integer or 'all'"),
        (["--methods", ","], "--methods is empty"),
        (["--methods", "lmix,lmix"], "twice"),
        (["--methods", "none,supermix"], "unknown mixer 'supermix'"),
        (["--set", "seed=3"], "--seeds"),
        (["--epochs", "0"], "epochs must be an integer >= 1"),
        (["--threads", "0"], "--threads must be >= 1"),
    ],
)
def test_compare_errors(capsys, tmp_path, extra, needle):
    one_line_error(capsys, ["compare", "--out", str(tmp_path / "c"), *extra], needle)
    assert not list((tmp_path / "c").rglob("summary.json")) if (tmp_path / "c").exists() else True
