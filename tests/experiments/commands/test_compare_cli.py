"""lmix compare: the default study's spec, a real tiny end-to-end run, resume, its CLI errors, and its terminal
table (the report's seed-paired tests, the same p-values and intervals as report.json)."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmix.experiments.cli import build_parser, main
from lmix.experiments.commands.compare import DEFAULT_METHODS, DEFAULT_SEEDS, DEFAULTS, build_spec, summary_lines
from lmix.experiments.report import build_report, report_json
from lmix.experiments.report.formats import fmt_p, signed_ci
from lmix.experiments.sweep import expand, parse_spec
from tests.cli_helpers import one_line_error
from tests.experiments.report.conftest import make_run

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
    assert "digits, simple_cnn: final test accuracy over seeds" in text
    assert "  regime: " in text and "Welch" not in text
    assert "4 runs trained" in text
    data = json.loads((out / "report" / "report.json").read_text())
    assert_table_matches_report(text, data)
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


def table_rows(text: str) -> dict[str, dict[str, str]]:
    """The terminal table of ``lmix compare`` (one row), by method: column name -> value."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  method "))
    header = re.split(r"\s{2,}", lines[start].strip())
    rows = {}
    for line in lines[start + 1 :]:
        if not line.startswith("  ") or line.startswith("  vs ") or line.startswith("  p: "):
            break
        values = re.split(r"\s{2,}", line.strip())
        rows[values[0]] = dict(zip(header, values))
    return rows


def assert_table_matches_report(text: str, data: dict) -> None:
    """Every p-value and interval in the terminal table is report.json's paired test against the baseline."""
    rows = table_rows(text)
    tests = {t["a"]: t for block in data["paired"] for t in block["tests"] if t["b"] == "Baseline"}
    tests = {a: t for a, t in tests.items() if t["metric"] == "final_acc"}
    assert set(rows) == {g["column_label"] for g in data["groups"]}
    for g in data["groups"]:
        row, acc = rows[g["column_label"]], g["final_acc"]
        assert row["n"] == str(acc["n"])
        if acc["ci95"] is not None:
            assert row["95% CI"] == f"[{acc['mean'] - acc['ci95']:.2f}, {acc['mean'] + acc['ci95']:.2f}]"
        t = tests.get(g["column_label"])
        if t is None:
            assert "p" not in row, row  # the baseline, or no seed shared with it
            continue
        assert row["vs Baseline [95% CI]"] == signed_ci(t["diff"], t["ci95"])
        assert row["p"] == fmt_p(t["p"])
        assert row.get("Holm p", "") == ("" if t["p_holm"] is None else fmt_p(t["p_holm"]))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    finals=st.lists(
        st.lists(st.floats(80, 100, allow_nan=False).map(lambda x: round(x, 2)), min_size=3, max_size=3),
        min_size=1,
        max_size=4,
    )
)
def test_terminal_table_is_the_reports_paired_tests(tmp_path_factory, finals):
    """Any accuracies, 1 to 4 seeds: the terminal's p-values and intervals are report.json's, paired by seed."""
    root = tmp_path_factory.mktemp("runs")
    for seed, per_method in enumerate(finals):
        for method, final in zip(("none", "mixup", "lmix"), per_method):
            make_run(root, method=method, seed=seed, final=final)
    report = build_report(root)
    text = "\n".join(summary_lines(report))
    assert "Welch" not in text
    assert_table_matches_report(text, report_json(report))
