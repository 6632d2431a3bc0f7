"""``lmix train`` pointed at a finished run reads its records as ``lmix report`` and ``lmix sweep`` read
them (:mod:`lmix.experiments.records`): a damaged record is refused in one line naming the file, where
it once said "already complete"; a ``config.yaml`` of another run names the setting that differs. The
folder is left as it was in every case."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from lmix.experiments.report.collect import UNREADABLE, collect_runs
from tests.cli_helpers import one_line_error, run_cli
from tests.experiments.damage import EXAMPLES, FILE_SETTINGS, damaged, damaged_jsonl, dump_json, dump_yaml, snapshot

QUICK = [
    *("--dataset", "digits", "--model", "simple_cnn", "--width", "8", "--batch-size", "32"),
    *("--train-subset", "64", "--eval-train", "0", "--epochs", "2", "--no-progress"),
]
RECORDS = ("summary.json", "config.yaml", "metrics.jsonl")


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished 2-epoch run (checkpoint, summary, config, metrics), in a folder of its own."""
    from lmix.experiments.cli import main

    run = tmp_path_factory.mktemp("finished") / "run"
    assert main(["train", *QUICK, "--out", str(run)]) == 0
    return run


def _copy(finished: Path, root: Path) -> Path:
    run = root / "run"
    shutil.copytree(finished, run)
    return run


def _strategy(finished: Path, name: str) -> st.SearchStrategy[bytes]:
    data = (finished / name).read_bytes()
    if name == "metrics.jsonl":
        return damaged_jsonl(data)
    return damaged(data, yaml.safe_load, dump_yaml) if name == "config.yaml" else damaged(data, json.loads, dump_json)


@pytest.mark.parametrize("name", RECORDS)
@settings(FILE_SETTINGS, max_examples=max(5, EXAMPLES // 3))
@given(data=st.data())
def test_train_over_a_finished_run_agrees_with_the_report_on_a_damaged_record(finished, capsys, name, data):
    content = data.draw(_strategy(finished, name), label=name)
    with tempfile.TemporaryDirectory() as tmp:
        run = _copy(finished, Path(tmp))
        (run / name).write_bytes(content)
        (record,) = collect_runs(tmp).runs
        before = snapshot(run)
        code, out, err = run_cli(capsys, ["train", *QUICK, "--out", str(run)])
        assert snapshot(run) == before  # refused or complete: nothing written, nothing trained
        if code == 0:
            assert record.status != UNREADABLE, record.detail
            assert "already complete" in out and not err
            return
        (line,) = err.strip().splitlines()
        assert code == 2 and "Traceback" not in err
        if "holds a different run (its config.yaml differs: " in line:
            assert name == "config.yaml"  # a config.yaml of another run's settings, readable or not by the report
            return
        assert record.status == UNREADABLE, (record.status, line)
        assert line.startswith(f"lmix: error: out dir '{run}' has an unreadable record: {record.detail}; "), line


@pytest.mark.parametrize(
    "name, edit, needle",
    [
        ("config.yaml", {"max_soft": "abc"}, "config.yaml: config key 'max_soft' must be of type float, got 'abc'"),
        ("config.yaml", {"reformulate": 3}, "config.yaml: config key 'reformulate' must be of type bool, got 3"),
        ("config.yaml", {"max_soft": 0.3}, "(its config.yaml differs: max_soft: 0.3 there, 0.0 here)"),
        ("config.yaml", {"model": "preact_resnet18"}, "model: 'preact_resnet18' there, 'simple_cnn' here"),
        ("config.yaml", {"dataset": "osuleaf"}, "'osuleaf'"),
        ("metrics.jsonl", b"", "metrics.jsonl: is empty (truncated?)"),
        ("metrics.jsonl", bytes(range(100, 200)), "metrics.jsonl: is not text (UTF-8)"),
        ("summary.json", {"final_acc": 150}, "summary.json: final_acc must be an accuracy in percent"),
    ],
    ids=["max_soft-abc", "reformulate-3", "max_soft-0.3", "model", "dataset", "emptied", "random-bytes", "final_acc"],
)
def test_the_tester_s_damaged_finished_runs_are_refused_in_one_line(capsys, tmp_path, finished, name, edit, needle):
    run = _copy(finished, tmp_path)
    path = run / name
    if isinstance(edit, bytes):
        path.write_bytes(edit)
    elif name == "config.yaml":
        path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), **edit}, sort_keys=False))
    else:
        path.write_text(json.dumps({**json.loads(path.read_text()), **edit}))
    before = snapshot(run)
    line = one_line_error(capsys, ["train", *QUICK, "--out", str(run)], needle, str(run), name)
    assert "already complete" not in line and snapshot(run) == before


def test_a_leftover_config_names_the_setting_that_differs(capsys, tmp_path, finished):
    # what a start refused too late used to leave: config.yaml and an empty metrics.jsonl
    run = tmp_path / "run"
    run.mkdir()
    config = yaml.safe_load((finished / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**config, "max_soft": 0.3}, sort_keys=False))
    (run / "metrics.jsonl").write_text("")
    one_line_error(
        capsys,
        ["train", *QUICK, "--out", str(run)],
        f"out dir '{run}' holds a different run (its config.yaml differs: max_soft: 0.3 there, 0.0 here)",
    )


def test_resume_names_the_damaged_config_yaml(capsys, tmp_path, finished):
    run = _copy(finished, tmp_path)
    path = run / "config.yaml"
    path.write_text(path.read_text().replace("max_soft: 0.0", "max_soft: abc"))
    one_line_error(
        capsys,
        ["train", "--resume", "--out", str(run)],
        f"lmix train: --resume: {path}: config key 'max_soft' must be of type float, got 'abc'",
    )
