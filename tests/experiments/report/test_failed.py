"""lmix report: failed runs (failed.json, no summary.json) are left out of the numbers and listed per group."""

from __future__ import annotations

import json

import pytest

from lmix.experiments.cli import main
from lmix.experiments.report import build_report, render_latex, render_markdown, render_text_summary, write_report
from tests.cli_helpers import one_line_error

from .conftest import make_run


def _fail(run_dir, error="non-finite loss (nan) at epoch 2"):
    (run_dir / "summary.json").unlink()
    (run_dir / "failed.json").write_text(json.dumps({"status": "failed", "error": error}))
    return run_dir


def test_failed_runs_are_counted_per_group_and_left_out(runs_dir, tmp_path):
    for seed in range(3):
        make_run(runs_dir, method="none", seed=seed, final=90.0 + seed)
        make_run(runs_dir, method="lmix", seed=seed, final=92.0 + seed)
    bad = _fail(make_run(runs_dir, method="lmix", seed=3, final=10.0))  # joins the lmix cell, not its numbers
    _fail(make_run(runs_dir, method="lmix", seed=0, final=10.0, lr=99.0), error="boom\nsecond line")  # no such cell
    report = build_report(runs_dir)
    (lmix,) = [c for c in report.cells if c.method == "lmix"]
    assert len(lmix.runs) == 3 and [r.dir for r in lmix.failed] == [bad.relative_to(runs_dir).as_posix()]
    assert lmix.final.mean == pytest.approx(93.0)  # the failed run's 10% is not in the mean
    assert report.unfinished == []  # a failed run is not "unfinished"
    assert [(label, len(runs)) for label, runs in report.failed] == [
        ("digits, simple_cnn, LMix", 1),
        ("digits, simple_cnn, LMix (lr=99) [no finished run in this group]", 1),
    ]
    md = render_markdown(report)
    assert "93.00 ± 1.00 (n=3, 1 failed)" in md and "## Failed runs" in md
    assert "non-finite loss (nan) at epoch 2" in md and "boom" in md and "second line" not in md
    assert "(1 failed)" in render_latex(report)
    text = render_text_summary(report)
    assert "failed runs (not included): 2" in text and "digits, simple_cnn, LMix: 1 failed" in text
    write_report(report, tmp_path / "rep")
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert [len(f["runs"]) for f in data["failed"]] == [1, 1]
    (g,) = [g for g in data["groups"] if g["method"] == "lmix"]
    assert g["failed_runs"] == [bad.relative_to(runs_dir).as_posix()] and len(g["runs"]) == 3


def test_no_failed_section_without_failures(runs_dir):
    make_run(runs_dir, method="none", seed=0)
    report = build_report(runs_dir)
    assert report.failed == [] and "Failed runs" not in render_markdown(report)
    assert "failed" not in render_text_summary(report)


def test_only_failed_runs_is_a_one_line_error(capsys, runs_dir):
    _fail(make_run(runs_dir, method="none", seed=0))
    assert "1 failed run(s)" in one_line_error(capsys, ["report", str(runs_dir)])
    assert main(["report", str(runs_dir / "nope")]) == 2
