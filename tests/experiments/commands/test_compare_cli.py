"""lmix compare: the default study's spec, a real tiny end-to-end run, resume, its CLI errors, and its terminal
table (the report's seed-paired tests, the same p-values and intervals as report.json)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmix.experiments.cli import build_parser, main
from lmix.experiments.commands.compare import DEFAULT_METHODS, DEFAULT_SEEDS, DEFAULTS, build_spec, summary_lines
from lmix.experiments.report import build_report, report_json
from lmix.experiments.report.formats import fmt_p, signed_ci
from lmix.experiments.sweep import expand, parse_spec
from tests.cli_helpers import run_cli
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


@pytest.mark.parametrize("dataset", ["osuleaf", "arrowhead"])
def test_a_time_series_data_set_gets_the_sequence_model_unless_one_is_given(tmp_path, dataset):
    spec = build_spec(build_parser().parse_args(["compare", "--dataset", dataset]))
    assert spec["base"]["model"] == "cnn1d" and "width" not in spec["base"]
    expand(parse_spec(spec), tmp_path)  # a valid spec: the model takes sequences
    spec = build_spec(build_parser().parse_args(["compare", "--dataset", dataset, "--width", "8"]))
    assert spec["base"]["model"] == "cnn1d" and spec["base"]["width"] == 8
    spec = build_spec(build_parser().parse_args(["compare", "--dataset", dataset, "--model", "simple_cnn"]))
    assert spec["base"]["model"] == "simple_cnn"  # the user's choice stands (and the run checks refuse it)
    for images in ("digits", "cifar10", "nonsense"):
        assert build_spec(build_parser().parse_args(["compare", "--dataset", images]))["base"]["model"] == "simple_cnn"


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


# Small settings first, so that a case that slipped through would train a moment, not the default study.
GUARD = ["--epochs", "1", "--seeds", "1", "--methods", "none", "--train-subset", "64", "--batch-size", "32"]
# Every flag of lmix compare given a value the user must fix: {file} is a file, {missing} a path that does not exist.
USER_ERRORS = [
    (["--dataset", "nope"], "lmix compare: run {seed=0, method=none}: unknown dataset 'nope'; choose one of: "),
    (["--model", "nope"], "unknown model 'nope'; known models: "),
    (["--model", "cnn1d"], "model 'cnn1d' takes sequences (B, C, L) but data set 'digits' holds images"),
    (
        ["--dataset", "osuleaf", "--model", "simple_cnn"],  # without --model, compare picks cnn1d for sequences
        "model 'simple_cnn' takes images (B, C, H, W) but data set 'osuleaf' holds sequences",
    ),
    (["--methods", "none,bogus"], "run {seed=0, method=bogus}: unknown mixer 'bogus'"),
    (["--methods", ","], "--methods is empty"),
    (["--methods", "lmix,lmix"], "--methods lists a method twice"),
    (["--seeds", "0"], "lmix compare: --seeds must be >= 1, got 0"),
    (["--seeds", "two"], "argument --seeds: invalid int value: 'two'"),
    (["--epochs", "abc"], "argument --epochs: invalid int value: 'abc'"),
    (["--epochs", "0"], "epochs must be an integer >= 1"),
    (["--train-subset", "lots"], "--train-subset must be an integer or 'all'"),
    (["--schedule", "sometimes"], "schedule"),
    (["--set", "seed=3"], "use --methods / --seeds"),
    (["--set", "nope=1"], "unknown config key(s) ['nope']"),
    (["--set", "lr=abc"], "config key 'lr' must be of type float, got 'abc'"),
    (["--threads", "0"], "--threads must be >= 1"),
    (["--dataset", "cifar10", "--data-root", "{missing}"], "lmix compare: cifar10: data not found in {missing}"),
    (["--dataset", "cifar10", "--data-root", "{file}"], "lmix compare: --data-root '{file}' is a file, not a folder; "),
    (["--dataset", "cifar10", "--data-root", "{file}", "--set", "download=true"], "--data-root '{file}' is a file"),
    (["--out", "{file}"], "lmix compare: --out '{file}' is a file, not a folder"),
    (["--out", "{file}/study"], "--out '{file}/study' is inside '{file}', which is a file, not a folder"),
]


@pytest.mark.parametrize("extra, needle", USER_ERRORS, ids=[" ".join(e) for e, _ in USER_ERRORS])
def test_every_user_error_is_one_line_exit_2_and_leaves_nothing(capsys, tmp_path, monkeypatch, extra, needle):
    """Each is found before anything is written: no runs/compare-* folder (nor runs/), no --out, no run trained."""
    monkeypatch.chdir(tmp_path)  # the default --out, runs/compare-<timestamp>, would be made here
    paths = {"file": "a-file", "missing": str(tmp_path / "no-such-folder")}
    (tmp_path / "a-file").write_text("not a folder\n")
    monkeypatch.setattr("lmix.experiments.sweep.one_run.train", pytest.fail)  # nothing may train
    code, out, err = run_cli(capsys, ["compare", *GUARD, *(_fill(a, paths) for a in extra)])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert _fill(needle, paths) in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"] and out == ""
    assert (tmp_path / "a-file").read_text() == "not a folder\n"


def _fill(text: str, paths: dict[str, str]) -> str:
    for key, path in paths.items():
        text = text.replace("{" + key + "}", path)
    return text


def _failing_trainer(monkeypatch, err: Exception, *, epochs_done: int):
    """Every run fails with ``err``, after ``epochs_done`` epochs of records (0: before its first epoch)."""

    def train(config, log=print):
        out = Path(config.out)
        out.mkdir(parents=True, exist_ok=True)
        if epochs_done:
            (out / "config.yaml").write_text(config.to_yaml())
            (out / "metrics.jsonl").write_text('{"epoch": 1, "test_acc": 50.0, "train_loss": 1.0}\n')
        raise err

    monkeypatch.setattr("lmix.experiments.sweep.one_run.train", train)


def test_every_run_failing_on_the_data_is_one_line_exit_2_and_leaves_nothing(capsys, tmp_path, monkeypatch):
    """A data problem only training finds (damaged files): the first run's reason, and no useless folder."""
    from lmix.data.info import DataNotFoundError

    monkeypatch.chdir(tmp_path)
    reason = "cifar10: files in /data are missing or failed torchvision's integrity check; pass --data-root DIR"
    _failing_trainer(monkeypatch, DataNotFoundError(reason), epochs_done=0)
    code, _, err = run_cli(capsys, ["compare", *GUARD, "--seeds", "2"])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("lmix compare: no run finished (2 of 2 failed), so no report; the first, ")
    assert lines[0].endswith(f"seed=0: {reason}; nothing was kept")
    assert list(tmp_path.iterdir()) == []  # neither runs/compare-* nor runs/


def test_every_run_failing_after_an_epoch_keeps_the_runs_and_says_where(capsys, tmp_path, monkeypatch):
    """A fault (not the user's) after the runs recorded epochs: exit 1, the runs kept for a re-run to resume."""
    out = tmp_path / "cmp"
    _failing_trainer(monkeypatch, RuntimeError("CUDA error: an illegal memory access"), epochs_done=1)
    code, _, err = run_cli(capsys, ["compare", *GUARD, "--out", str(out)])
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err
    assert "no run finished (1 of 1 failed), so no report; the first, " in lines[0]
    assert lines[0].endswith(
        f"seed=0: CUDA error: an illegal memory access; the runs are in {out} (each failed run's failed.json "
        "says why; re-run the same command to resume)"
    )
    assert len(list(out.rglob("failed.json"))) == 1 and len(list(out.rglob("metrics.jsonl"))) == 1
    assert not (out / "report").exists()


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
