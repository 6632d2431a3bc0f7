"""What a run folder must hold for lmix report to use it, and what it says when it does not: every
file of a finished run missing, every config value of a wrong type, a diverged loss, --quiet, and a
report that fails or may not write leaving nothing half-written."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from lmix.experiments.divergence import LOSS_KEYS, loss_bound
from lmix.experiments.report import build_report, write_report
from lmix.experiments.report.collect import FAILED, UNFINISHED, UNREADABLE, USED, collect_runs
from lmix.experiments.train import TrainConfig
from tests.cli_helpers import run_cli
from tests.experiments.damage import EXAMPLES, FILE_SETTINGS, read_only, run_lmix, run_unprivileged, snapshot
from tests.experiments.sweep.conftest import quick_sweep

from .conftest import make_run

VICTIM = "dataset=digits/model=simple_cnn/method=lmix/seed=0"
# The status a finished run gets without each of its files; a file not listed here fails the test:
# whoever adds a file to a run folder decides what its absence means.
WITHOUT = {
    "summary.json": UNFINISHED,  # not finished: "2 of 2 epochs recorded, checkpoint.pt kept, no summary.json"
    "config.yaml": UNREADABLE,  # its number could not be traced to its settings
    "metrics.jsonl": UNREADABLE,  # nor to its training
    "checkpoint.pt": USED,  # optional: the published records ship without it
    "fgsm.json": USED,  # optional: a run that was not attacked
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A real sweep of four trained and attacked digits runs (config, metrics, summary, checkpoint, fgsm)."""
    return quick_sweep(
        tmp_path_factory.mktemp("finished") / "runs", methods=["none", "lmix"], seeds=[0, 1], attack_eps=[0, 2]
    )


def _copy(template: Path, tmp_path: Path, name: str = "runs") -> Path:
    root = tmp_path / name
    shutil.copytree(template, root)
    return root


def _status(root: Path, rel: str = VICTIM):
    (record,) = [r for r in collect_runs(root).runs if r.dir == rel]
    return record


def test_every_file_of_a_finished_run_missing_one_at_a_time(finished, tmp_path, capsys):
    files = sorted(os.listdir(finished / VICTIM))
    assert {"summary.json", "config.yaml", "metrics.jsonl", "checkpoint.pt", "fgsm.json"} <= set(files)
    for name in files:
        assert name in WITHOUT, f"{name}: a run folder's file without a defined status when it is missing"
        root = _copy(finished, tmp_path, f"without-{name}")
        (root / VICTIM / name).unlink()
        run = _status(root)
        assert run.status == WITHOUT[name], (name, run.status, run.detail)
        if run.status != USED:
            assert name in run.detail  # the file is named
        if run.status == UNREADABLE:
            assert run.detail.startswith(f"{name}: is missing")
        code, out, err = run_cli(capsys, ["report", str(root), "--strict", "--quiet", "--out", str(tmp_path / name)])
        assert code == (0 if WITHOUT[name] == USED else 1), (name, err)
        assert ("Traceback" not in err) and (code == 0 or f"{VICTIM}: " in out)


def test_the_unfinished_detail_says_the_summary_is_what_is_missing(finished, tmp_path):
    root = _copy(finished, tmp_path)
    (root / VICTIM / "summary.json").unlink()
    assert _status(root).detail == "2 of 2 epochs recorded, checkpoint.pt kept, no summary.json"


# -- every config value of a wrong type ----------------------------------------------------------
_FIELD_TYPES = typing.get_type_hints(TrainConfig)
FIELDS = [f.name for f in dataclasses.fields(TrainConfig)]


def _inner(tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if typing.get_origin(tp) in (typing.Union, __import__("types").UnionType) else tp


def _accepts(tp: Any, value: Any) -> bool:
    """Whether a YAML value is of the field's type as lmix train reads it (ints for floats; a scalar for a list)."""
    tp = _inner(tp)
    origin = typing.get_origin(tp)
    if origin is list:
        (item,) = typing.get_args(tp)
        return all(_accepts(item, v) for v in value) if isinstance(value, list) else _accepts(item, value)
    if origin is dict:
        return isinstance(value, dict)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, tp)


_ANY_TYPE = (
    st.text(min_size=1, max_size=8)
    | st.booleans()
    | st.integers(min_value=-3, max_value=3)
    | st.floats(min_value=-1e3, max_value=1e3).filter(lambda v: not v.is_integer())
    | st.lists(st.text(min_size=1, max_size=3), min_size=1, max_size=2)
    | st.dictionaries(st.text(min_size=1, max_size=3), st.integers(), min_size=1, max_size=2)
)


@pytest.fixture(scope="module")
def one_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("config") / "runs"
    make_run(root, method="lmix", seed=0)
    return root


@pytest.mark.parametrize("field", FIELDS)
@settings(FILE_SETTINGS, max_examples=max(3, EXAMPLES // 6))
@given(data=st.data())
def test_a_config_value_of_a_wrong_type_makes_the_run_unreadable_naming_it(one_run, field, data):
    value = data.draw(_ANY_TYPE.filter(lambda v: not _accepts(_FIELD_TYPES[field], v)), label=field)
    (run_dir,) = [p.parent for p in one_run.rglob("config.yaml")]
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    original = (run_dir / "config.yaml").read_bytes()
    try:
        (run_dir / "config.yaml").write_text(yaml.safe_dump({**config, field: value}, allow_unicode=True))
        (run,) = collect_runs(one_run).runs
    finally:
        (run_dir / "config.yaml").write_bytes(original)
    assert run.status == UNREADABLE and run.detail.startswith("config.yaml: "), (value, run.status)
    assert field in run.detail, run.detail


@pytest.mark.parametrize(
    "key, value, needle",
    [
        ("epochs", "abc", "config.yaml: config key 'epochs' must be of type int, got 'abc'"),
        ("lr", "abc", "config.yaml: config key 'lr' must be of type float, got 'abc'"),
        ("alpha", "lots", "config.yaml: config key 'alpha' must be of type float, got 'lots'"),
        ("lr", -1, "config.yaml: lr must be a number in (0, 100), got -1.0"),
    ],
)
def test_lmix_report_strict_names_the_bad_setting(finished, tmp_path, capsys, key, value, needle):
    root = _copy(finished, tmp_path)
    path = root / VICTIM / "config.yaml"
    path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), key: value}))
    out = tmp_path / "report"
    code, text, err = run_cli(capsys, ["report", str(root), "--strict", "--out", str(out)])
    assert code == 1 and "Traceback" not in err, err
    assert f"unreadable: {VICTIM}: {needle}" in text
    assert "1 unreadable" in err and (out / "report.md").is_file()
    data = json.loads((out / "report.json").read_text())
    assert [r["detail"] for r in data["runs"]["not_used"]] == [needle]


# -- a diverged loss --------------------------------------------------------------------------------
def _set_loss(run_dir: Path, epoch: int, key: str, value: float) -> None:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows[epoch - 1][key] = value
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.parametrize("finished_run", [True, False], ids=["with summary.json", "without"])
@pytest.mark.parametrize("value", [math.nan, math.inf, 1e10])
@pytest.mark.parametrize("key", LOSS_KEYS)
def test_a_diverged_loss_in_metrics_makes_the_run_failed_diverged(finished, tmp_path, key, value, finished_run):
    root = _copy(finished, tmp_path)
    _set_loss(root / VICTIM, 2, key, value)
    if not finished_run:
        (root / VICTIM / "summary.json").unlink()
    run = _status(root)
    assert run.status == FAILED and run.diverged and run.status_label == "failed (diverged)"
    assert run.detail.startswith(f"diverged in epoch 2 (metrics.jsonl): {key} ")
    assert f"{value:.3g}" in run.detail or str(value) in run.detail
    report = build_report(root, paper="off")
    assert VICTIM not in {r.dir for c in report.cells for r in c.runs}  # in no number


def test_a_loss_below_the_bound_is_no_divergence(finished, tmp_path):
    root = _copy(finished, tmp_path)
    _set_loss(root / VICTIM, 2, "test_loss", 0.99 * loss_bound(10))
    assert _status(root).status == USED


def test_a_diverged_run_the_trainer_marked_is_shown_diverged(finished, tmp_path, capsys):
    """lmix train writes failed.json (diverged, its loss may be NaN) and no summary.json."""
    root = _copy(finished, tmp_path)
    (root / VICTIM / "summary.json").unlink()
    failed = {"diverged": True, "error": "lmix train: training diverged in epoch 2 (train loss nan)", "loss": math.nan}
    (root / VICTIM / "failed.json").write_text(json.dumps(failed))
    code, out, err = run_cli(capsys, ["report", str(root), "--strict", "--out", str(tmp_path / "r")])
    assert code == 1 and "1 failed" in err
    assert f"failed (diverged): {VICTIM}: lmix train: training diverged in epoch 2 (train loss nan)" in out
    json.loads((tmp_path / "r" / "report.json").read_text(), parse_constant=pytest.fail)  # strict JSON


# -- --quiet ----------------------------------------------------------------------------------------
def test_quiet_keeps_the_account_of_the_runs(finished, tmp_path, capsys):
    root = _copy(finished, tmp_path)
    (root / VICTIM / "metrics.jsonl").unlink()
    code, out, _ = run_cli(capsys, ["report", str(root), "--quiet", "--out", str(tmp_path / "r")])
    assert code == 0
    assert out.splitlines()[0] == "4 runs: 3 finished and used, 1 unreadable (the runs asked for: sweep.json)"
    assert f"  unreadable: {VICTIM}: metrics.jsonl: is missing" in out
    assert "mean ± std" not in out  # the tables are what --quiet leaves out


# -- nothing half-written ---------------------------------------------------------------------------
def test_a_report_that_fails_leaves_no_report_folder_and_no_temporary(finished, tmp_path, monkeypatch):
    import lmix.experiments.report.render as render

    report = build_report(finished, paper="off")

    def broken(*args, **kwargs):
        raise RuntimeError("a figure that cannot be drawn")

    monkeypatch.setattr(render, "plot_curves", broken)
    parent = tmp_path / "reports"
    parent.mkdir()
    with pytest.raises(RuntimeError, match="cannot be drawn"):
        write_report(report, parent / "new")
    assert os.listdir(parent) == []  # neither a half-written folder nor a temporary one
    monkeypatch.undo()
    old = parent / "old"
    write_report(report, old)
    before = snapshot(parent)
    monkeypatch.setattr(render, "plot_curves", broken)
    with pytest.raises(RuntimeError, match="cannot be drawn"):
        write_report(report, old)
    assert snapshot(parent) == before  # the earlier report as it was


def test_a_report_over_an_older_one_removes_the_figures_it_no_longer_draws(finished, tmp_path):
    """Re-using a report folder: the older report's figures that the new one does not draw (here the
    FGSM figure, after the attacks' records went) are removed; files the older report.json does not
    list as its figures (a user's own, a name outside the folder) are left alone."""
    root = _copy(finished, tmp_path)
    out = tmp_path / "rep"
    first = write_report(build_report(root, paper="off"), out)
    fgsm_figures = [p.name for p in first if p.suffix == ".png" and "fgsm" in p.name]
    assert fgsm_figures, [p.name for p in first]
    (out / "mine.png").write_bytes(b"a user's own figure")
    (tmp_path / "outside.png").write_bytes(b"not in the report folder")
    listed = json.loads((out / "report.json").read_text())
    listed["figures"] += ["../outside.png", "/etc/hostname", "gone.png", "report.md", "mine.txt"]
    (out / "report.json").write_text(json.dumps(listed))
    (out / "mine.txt").write_text("notes")
    for fgsm in root.rglob("fgsm.json"):
        fgsm.unlink()
    second = write_report(build_report(root, paper="off"), out)
    figures = sorted(p.name for p in out.glob("*.png"))
    assert figures == sorted([p.name for p in second if p.suffix == ".png"] + ["mine.png"])
    assert not any(name in figures for name in fgsm_figures)
    assert (tmp_path / "outside.png").exists() and (out / "mine.txt").exists() and (out / "report.md").exists()
    assert json.loads((out / "report.json").read_text())["figures"] == [p.name for p in second if p.suffix == ".png"]


def test_a_report_over_an_unreadable_report_json_removes_nothing(finished, tmp_path):
    root = _copy(finished, tmp_path)
    out = tmp_path / "rep"
    out.mkdir()
    (out / "old.png").write_bytes(b"an older figure")
    for text in ("{not json", '{"figures": "old.png"}', '["old.png"]', '{"figures": [1, null]}'):
        (out / "report.json").write_text(text)
        write_report(build_report(root, paper="off"), out)
        assert (out / "old.png").exists(), text


def test_a_read_only_report_folder_is_one_line_and_nothing_is_written(finished, tmp_path):
    root = _copy(finished, tmp_path)
    out = tmp_path / "ro"
    out.mkdir()
    with read_only(out):
        code, _, err = run_lmix(["report", str(root), "--quiet", "--out", str(out)])
        assert os.listdir(out) == []
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"lmix report: cannot write '{out / 'report.md'}': Permission denied")


def test_permissions_are_really_enforced_for_root(tmp_path):
    """The read-only tests prove something only if the command really cannot write there (root can, by chmod alone)."""
    write = [sys.executable, "-c", "open('x', 'w')"]
    with read_only(tmp_path):
        code, _, err = run_unprivileged(write, cwd=tmp_path)
        assert code != 0 and "PermissionError" in err
        if os.geteuid() == 0:
            assert subprocess.run(write, cwd=tmp_path).returncode == 0  # what the tests must not rely on
