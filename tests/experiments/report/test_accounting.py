"""lmix report accounts for every run folder: used, failed, running, unfinished, unreadable; --strict."""

from __future__ import annotations

import json

import pytest

from lmix.experiments.cli import main
from lmix.experiments.report import build_report, render_latex, render_markdown, render_text_summary, write_report
from tests.cli_helpers import one_line_error, run_cli
from tests.experiments.locks import held_by_another_thread

from .conftest import make_run, write_sweep


def _fail(run_dir, error="non-finite loss (nan) at epoch 2", **extra):
    (run_dir / "summary.json").unlink()
    (run_dir / "failed.json").write_text(json.dumps({"status": "failed", "error": error, **extra}))
    return run_dir


def _interrupt(run_dir, epochs_done=2):
    """The folder of a run stopped after ``epochs_done`` epochs: metrics so far and a checkpoint, no summary."""
    (run_dir / "summary.json").unlink()
    rows = (run_dir / "metrics.jsonl").read_text().splitlines()[:epochs_done]
    (run_dir / "metrics.jsonl").write_text("".join(r + "\n" for r in rows))
    (run_dir / "checkpoint.pt").write_bytes(b"not read by the report")
    return run_dir


def _rel(run_dir, root):
    return run_dir.relative_to(root).as_posix()


@pytest.fixture
def mixed(runs_dir):
    """Two finished runs, a corrupt summary, a diverged run and an interrupted one, all of one group."""
    runs = [make_run(runs_dir, method="none", seed=s, final=90.0 + s) for s in range(5)]
    (runs[2] / "summary.json").write_text('{"final_acc": 9')  # truncated
    _fail(runs[3], error="lmix train: training diverged in epoch 2 (loss nan)", diverged=True)
    _interrupt(runs[4])
    return runs


def test_a_corrupt_a_diverged_and_an_unfinished_run_are_named_in_all_three_outputs(capsys, runs_dir, mixed, tmp_path):
    out = tmp_path / "rep"
    code, text, err = run_cli(capsys, ["report", str(runs_dir), "--out", str(out)])
    assert code == 0, err
    corrupt, diverged, unfinished = (_rel(r, runs_dir) for r in mixed[2:])
    assert "90.50 ± 0.71 (n=2, 1 failed, 1 unfinished, 1 unreadable)" in text
    assert "5 runs: 2 finished and used, 1 failed, 1 unfinished, 1 unreadable" in text
    assert f"failed (diverged): {diverged}: lmix train: training diverged in epoch 2" in text
    assert f"unfinished: {unfinished}: 2 of 4 epochs recorded, checkpoint.pt kept" in text
    assert f"unreadable: {corrupt}: summary.json: is not valid JSON" in text

    md = (out / "report.md").read_text()
    assert "## Runs" in md and "5 runs: 2 finished and used, 1 failed, 1 unfinished, 1 unreadable." in md
    for run, status in ((diverged, "failed (diverged)"), (unfinished, "unfinished"), (corrupt, "unreadable")):
        (row,) = [line for line in md.splitlines() if line.startswith(f"| {run} |")]
        assert f"| {status} | digits, simple_cnn, Baseline |" in row
    assert "3 of 5 runs are not in the numbers (1 failed, 1 unfinished, 1 unreadable); see Runs" in md

    runs = json.loads((out / "report.json").read_text())["runs"]
    assert runs["counts"] == {"used": 2, "failed": 1, "running": 0, "unfinished": 1, "unreadable": 1}
    assert runs["complete"] is False and runs["sweeps"] == []
    by_dir = {r["dir"]: r for r in runs["not_used"]}
    assert by_dir[diverged]["status"] == "failed" and by_dir[diverged]["diverged"] is True
    assert by_dir[corrupt]["status"] == "unreadable" and by_dir[corrupt]["detail"].startswith("summary.json: ")
    assert by_dir[unfinished]["status"] == "unfinished" and by_dir[unfinished]["seed"] == 4
    assert {r["group"] for r in runs["not_used"]} == {"digits, simple_cnn, Baseline"}


def test_strict_exits_1_unless_every_run_is_used(capsys, runs_dir, mixed, tmp_path):
    code, _, err = run_cli(capsys, ["report", str(runs_dir), "--strict", "--quiet", "--out", str(tmp_path / "a")])
    assert code == 1 and (tmp_path / "a" / "report.md").is_file()  # written anyway
    (line,) = err.splitlines()
    assert "--strict: 3 of 5 runs are not finished and used (1 failed, 1 unfinished, 1 unreadable)" in line

    clean = tmp_path / "clean"
    make_run(clean, method="none", seed=0)
    code, _, err = run_cli(capsys, ["report", str(clean), "--strict", "--quiet"])
    assert code == 0 and err == ""
    assert main(["report", str(runs_dir), "--quiet", "--out", str(tmp_path / "b")]) == 0  # not strict: 0


def test_sweep_json_gives_the_runs_asked_for(capsys, runs_dir, tmp_path):
    runs = [make_run(runs_dir, method=m, seed=s, final=90.0 + s) for m in ("none", "lmix") for s in range(3)]
    _fail(runs[5])
    never = {"dataset": "digits", "model": "simple_cnn", "method": "lmix", "seed": 3, "epochs": 4}
    write_sweep(runs_dir, runs, not_started=[never])
    report = build_report(runs_dir)
    (lmix,) = [c for c in report.cells if c.method == "lmix"]
    assert [r.status for r in lmix.not_used] == ["failed", "unfinished"]
    md = render_markdown(report)
    assert "(n=2 of 4, 1 failed, 1 unfinished)" in md and "| LMix | 2 of 4, 1 failed, 1 unfinished |" in md
    assert "91.00 ± 1.00 (n=3) |" in md  # a complete cell says n only
    assert "(the runs asked for: sweep.json)" in md
    (row,) = [line for line in md.splitlines() if "not started" in line]
    assert row.startswith("| dataset=digits/model=simple_cnn/method=lmix/seed=3/epochs=4 | unfinished | digits, ")
    assert "| not started (listed in sweep.json, nothing recorded) |" in row
    write_report(report, tmp_path / "rep")
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert {g["method"]: g["expected_runs"] for g in data["groups"]} == {"none": 3, "lmix": 4}


def test_a_run_whose_lock_is_held_is_running(runs_dir):
    make_run(runs_dir, method="none", seed=0)
    busy = _interrupt(make_run(runs_dir, method="none", seed=1), epochs_done=1)
    with held_by_another_thread(busy):
        report = build_report(runs_dir)
    (run,) = report.not_used
    assert run.status == "running" and "holds its lock; 1 of 4 epochs recorded" in run.detail
    assert "(n=1, 1 running)" in render_text_summary(report)
    assert [r.status for r in build_report(runs_dir).not_used] == ["unfinished"]  # released: not running


@pytest.mark.parametrize(
    "name, content, problem",
    [
        ("metrics.jsonl", lambda t: t[:-10], "metrics.jsonl: line 4 is not valid JSON"),
        ("metrics.jsonl", lambda t: "".join(t.splitlines(True)[:2]), "metrics.jsonl: has 2 epoch rows for a 4-epoch"),
        ("metrics.jsonl", lambda t: t.split("\n", 1)[1], "metrics.jsonl: row 1 is for epoch 2"),
        ("fgsm.json", lambda t: '{"eps": [0.0], "acc": [NaN]}', "fgsm.json: acc 0 must be an accuracy"),
        ("summary.json", lambda t: t.replace('"best_acc": 91.0', '"best_acc": NaN'), "summary.json: best_acc must"),
        ("summary.json", lambda t: t.replace('"final_acc": 91.0', '"final_acc": "91"'), "summary.json: final_acc"),
    ],
)
def test_a_damaged_record_makes_its_run_unreadable_not_a_wrong_number(runs_dir, name, content, problem):
    make_run(runs_dir, method="none", seed=0, final=90.0, fgsm={"eps": [0.0], "acc": [90.0]})
    bad = make_run(runs_dir, method="none", seed=1, final=91.0, fgsm={"eps": [0.0], "acc": [91.0]})
    (bad / name).write_text(content((bad / name).read_text()))
    report = build_report(runs_dir)
    ((cell,), (run,)) = report.cells, report.not_used
    assert [r.seed for r in cell.runs] == [0] and cell.final.mean == 90.0 and cell.fgsm[0].values == [90.0]
    assert run.status == "unreadable" and run.detail.startswith(problem), run.detail
    assert run in cell.not_used  # its config (or its summary and sweep) still says which group it is missing from


def test_failed_runs_join_their_group_only_where_their_settings_agree(runs_dir, tmp_path):
    for seed in range(3):
        make_run(runs_dir, method="none", seed=seed, final=90.0 + seed)
        make_run(runs_dir, method="lmix", seed=seed, final=92.0 + seed)
    bad = _fail(make_run(runs_dir, method="lmix", seed=3, final=10.0))  # joins the lmix cell, not its numbers
    _fail(make_run(runs_dir, method="lmix", seed=0, final=10.0, lr=99.0), error="boom\nsecond line")  # no such cell
    report = build_report(runs_dir)
    (lmix,) = [c for c in report.cells if c.method == "lmix"]
    assert len(lmix.runs) == 3 and [r.dir for r in lmix.not_used] == [_rel(bad, runs_dir)]
    assert lmix.final.mean == pytest.approx(93.0)  # the failed run's 10% is not in the mean
    assert [(label, len(runs)) for label, runs in report.unattached] == [
        ("digits, simple_cnn, LMix (lr=99) [no finished run in this group]", 1)
    ]
    md = render_markdown(report)
    assert "93.00 ± 1.00 (n=3, 1 failed)" in md and "## Runs" in md
    assert "non-finite loss (nan) at epoch 2" in md and "boom" in md and "second line" not in md
    assert "(1 failed)" in render_latex(report)
    write_report(report, tmp_path / "rep")
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    (g,) = [g for g in data["groups"] if g["method"] == "lmix"]
    assert g["not_used_runs"] == [{"dir": _rel(bad, runs_dir), "status": "failed"}] and len(g["runs"]) == 3
    assert g["expected_runs"] is None  # no sweep.json: the runs asked for are not known


def test_a_run_without_readable_settings_joins_no_group(runs_dir):
    make_run(runs_dir, method="lmix", seed=0, k=2.0)
    make_run(runs_dir, method="lmix", seed=0)
    lost = make_run(runs_dir, method="lmix", seed=1, k=2.0)
    (lost / "config.yaml").write_bytes(b"\xff\xfe")
    report = build_report(runs_dir)
    assert all(not c.not_used for c in report.cells)
    assert report.unattached == [("digits, simple_cnn, LMix [settings unknown]", report.not_used)]
    assert report.not_used[0].detail == "config.yaml: is not text (UTF-8)"


def test_all_used_says_so(runs_dir):
    make_run(runs_dir, method="none", seed=0)
    report = build_report(runs_dir)
    assert report.complete and "1 run: 1 finished and used" in render_text_summary(report)
    assert "Runs not in the numbers" not in render_markdown(report)


def test_no_finished_run_is_a_one_line_error_that_says_what_there_is(capsys, runs_dir):
    _fail(make_run(runs_dir, method="none", seed=0))
    (make_run(runs_dir, method="none", seed=1) / "summary.json").write_text("[]")
    line = one_line_error(capsys, ["report", str(runs_dir)], "no finished runs")
    assert "1 failed, 1 unreadable" in line and "summary.json: must hold a mapping, got list" in line
    assert main(["report", str(runs_dir / "nope")]) == 2


def test_no_finished_run_names_why_the_failed_one_failed(capsys, runs_dir):
    _fail(make_run(runs_dir, method="none", seed=0))
    line = one_line_error(capsys, ["report", str(runs_dir)], "no finished runs")
    assert "(1 failed; digits/simple_cnn/none/seed=0: failed: " in line and "non-finite loss" in line
