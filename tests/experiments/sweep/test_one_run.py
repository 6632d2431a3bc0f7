"""One run of a sweep: skipped when done, marked failed on a crash and retried, left alone when locked."""

from __future__ import annotations

import json

from lmix.experiments.sweep import expand, parse_spec, run_sweep
from tests.experiments.locks import held_by_another_thread

from .conftest import TINY_SPEC as SPEC
from .conftest import FakeTrain, use_trainer


def _quiet(_line: str) -> None:
    pass


def _dry_run_statuses(spec, out) -> list[str]:
    lines: list[str] = []
    run_sweep(spec, out, dry_run=True, log=lines.append)
    return [line.split("]")[1].split()[0] for line in lines[1:]]


def test_finished_runs_are_skipped(tmp_path, fake_train):
    spec = parse_spec(SPEC)
    lines: list[str] = []
    first = run_sweep(spec, tmp_path, log=lines.append)
    assert first.count("trained") == 6 and len(fake_train.calls) == 6
    assert any("done in" in line and "final 50.00%" in line for line in lines)
    second = run_sweep(spec, tmp_path, log=lines.append)
    assert second.count("skipped") == 6 and len(fake_train.calls) == 6
    assert sum("skip (done)" in line for line in lines) == 6


def test_a_crashed_sweep_restarted_finishes_every_run_once(tmp_path, monkeypatch):
    spec = parse_spec(SPEC)
    crashing = FakeTrain(fail_on={2})
    use_trainer(monkeypatch, crashing)
    result = run_sweep(spec, tmp_path, keep_going=False, log=_quiet)  # --fail-fast: nothing starts after it
    assert result.count("failed") == 1 and len(result.outcomes) == 2
    assert len(crashing.completed) == 1
    runs = expand(spec, tmp_path)
    assert not (runs[1].dir / "summary.json").exists() and (runs[1].dir / "metrics.jsonl").exists()
    assert not (runs[1].dir / ".lock").exists()  # released despite the crash
    failed = json.loads((runs[1].dir / "failed.json").read_text())
    assert failed["error"] == "simulated crash in the middle of a run" and failed["error_type"] == "RuntimeError"
    assert failed["run"] == runs[1].name and failed["epochs_done"] == 2 and failed["diverged"] is False

    statuses = _dry_run_statuses(spec, tmp_path)
    assert statuses[:3] == ["done", "failed", "todo"]

    restarted = FakeTrain()
    use_trainer(monkeypatch, restarted)
    run_sweep(spec, tmp_path, log=_quiet)
    # the failed run is retried (train() resumes it from its checkpoint); nothing else runs twice
    assert restarted.calls[0] == str(runs[1].dir)
    assert not (runs[1].dir / "failed.json").exists()
    done = crashing.completed + restarted.completed
    assert sorted(done) == sorted(str(r.dir) for r in runs)
    assert _dry_run_statuses(spec, tmp_path) == ["done"] * 6


def test_a_run_locked_by_another_process_is_left_alone(tmp_path, fake_train):
    spec = parse_spec(SPEC)
    runs = expand(spec, tmp_path)
    with held_by_another_thread(runs[0].dir):  # lmix train, or another sweep's job
        lines: list[str] = []
        result = run_sweep(spec, tmp_path, log=lines.append)
        assert result.count("busy") == 1 and str(runs[0].dir) not in fake_train.calls
        assert any("busy (pid" in line for line in lines)
        assert _dry_run_statuses(spec, tmp_path)[0] == "running"
    run_sweep(spec, tmp_path, log=_quiet)
    assert sorted(fake_train.completed) == sorted(str(r.dir) for r in runs)
