"""Running sweeps: skip finished runs, resume after a crash, shards, locks, dry run, CLI errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from lmix.experiments.cli import main
from lmix.experiments.sweep import RunLock, expand, parse_shard, parse_spec, run_sweep, shard_runs
from tests.cli_helpers import one_line_error, run_cli

from .conftest import FakeTrain

SPEC = {
    "name": "tiny",
    "base": {"dataset": "digits", "model": "simple_cnn", "epochs": 2},
    "grid": {"method": ["none", "mixup", "lmix"], "seed": [0, 1]},
}


def _quiet(_line: str) -> None:
    pass


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7])
def test_shards_are_disjoint_and_cover_the_sweep(tmp_path, n):
    runs = expand(parse_spec(SPEC), tmp_path)
    parts = [shard_runs(runs, (i, n)) for i in range(1, n + 1)]
    names = [r.name for part in parts for r in part]
    assert sorted(names) == sorted(r.name for r in runs)  # covering, and no run twice
    assert max(map(len, parts)) - min(map(len, parts)) <= 1  # balanced


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/0", "a/b", "3", "1/2/3", "-1/2"])
def test_bad_shard_is_aone_line_error(capsys, tmp_path, write_spec, fake_train, text):
    line = one_line_error(capsys, ["sweep", str(write_spec(SPEC)), "--out", str(tmp_path / "o"), "--shard", text])
    assert "--shard" in line
    assert fake_train.calls == []
    assert parse_shard("2/3") == (2, 3)


def test_sharded_sweeps_train_every_run_once(tmp_path, fake_train):
    spec = parse_spec(SPEC)
    for i in (1, 2, 3):
        run_sweep(spec, tmp_path, shard=(i, 3), log=_quiet)
    assert sorted(fake_train.completed) == sorted(str(r.dir) for r in expand(spec, tmp_path))
    assert len(set(fake_train.calls)) == len(fake_train.calls) == 6


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
    monkeypatch.setattr("lmix.experiments.sweep.train", crashing)
    result = run_sweep(spec, tmp_path, keep_going=False, log=_quiet)  # --fail-fast: nothing starts after it
    assert result.count("failed") == 1 and len(result.outcomes) == 2
    assert len(crashing.completed) == 1
    runs = expand(spec, tmp_path)
    assert not (runs[1].dir / "summary.json").exists() and (runs[1].dir / "metrics.jsonl").exists()
    assert not (runs[1].dir / ".lock").exists()  # released despite the crash
    failed = json.loads((runs[1].dir / "failed.json").read_text())
    assert failed["error"] == "simulated crash in the middle of a run" and failed["error_type"] == "RuntimeError"
    assert failed["run"] == runs[1].name and failed["epochs_done"] == 1 and failed["diverged"] is False

    statuses = _dry_run_statuses(spec, tmp_path)
    assert statuses[:3] == ["done", "failed", "todo"]

    restarted = FakeTrain()
    monkeypatch.setattr("lmix.experiments.sweep.train", restarted)
    run_sweep(spec, tmp_path, log=_quiet)
    # the failed run is retried (train() resumes it from its checkpoint); nothing else runs twice
    assert restarted.calls[0] == str(runs[1].dir)
    assert not (runs[1].dir / "failed.json").exists()
    done = crashing.completed + restarted.completed
    assert sorted(done) == sorted(str(r.dir) for r in runs)
    assert _dry_run_statuses(spec, tmp_path) == ["done"] * 6


def test_a_failed_run_is_marked_and_the_sweep_goes_on(capsys, tmp_path, write_spec, monkeypatch):
    class TrainingDiverged(RuntimeError):  # the trainer's exception for a non-finite loss (by name)
        pass

    class Diverging(FakeTrain):
        def __call__(self, config, log=print):
            if config.method == "mixup" and config.seed == 1:
                self.calls.append(config.out)
                raise TrainingDiverged("loss is nan at epoch 1, step 3; the last good checkpoint is epoch 0")
            return super().__call__(config, log)

    fake = Diverging()
    monkeypatch.setattr("lmix.experiments.sweep.train", fake)
    out = tmp_path / "o"
    code, text, err = run_cli(capsys, ["sweep", str(write_spec(SPEC)), "--out", str(out)])
    assert code == 1 and len(fake.completed) == 5
    assert "5 trained" in text and "1 failed" in text and "FAILED after" in text
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    name = "dataset=digits/model=simple_cnn/method=mixup/seed=1"
    assert lines[0].startswith("lmix sweep: 1 run failed: " + name + " (loss is nan at epoch 1")
    assert "re-run the same command to retry" in lines[0]
    record = json.loads((out / name / "failed.json").read_text())
    assert record["diverged"] is True and record["error_type"] == "TrainingDiverged"
    assert not (out / name / "summary.json").exists()
    assert main(["sweep", str(write_spec(SPEC)), "--out", str(out), "--dry-run"]) == 0
    assert f"failed  {name}  (loss is nan" in capsys.readouterr().out


def test_fail_fast_and_keep_going_flags(capsys, tmp_path, write_spec, monkeypatch):
    fake = FakeTrain(fail_on={1})
    monkeypatch.setattr("lmix.experiments.sweep.train", fake)
    out = tmp_path / "o"
    code, _, err = run_cli(capsys, ["sweep", str(write_spec(SPEC)), "--out", str(out), "--fail-fast"])
    assert code == 1 and fake.calls == [str(expand(parse_spec(SPEC), out)[0].dir)]
    assert "1 run failed" in err
    line = one_line_error(capsys, ["sweep", str(write_spec(SPEC)), "--keep-going", "--fail-fast"])
    assert "contradict" in line
    assert main(["sweep", str(write_spec(SPEC)), "--out", str(out), "--keep-going"]) == 0  # retried, all pass now
    assert len(fake.completed) == 6


def _dry_run_statuses(spec, out) -> list[str]:
    lines: list[str] = []
    run_sweep(spec, out, dry_run=True, log=lines.append)
    return [line.split("]")[1].split()[0] for line in lines[1:]]


def test_dry_run_lists_runs_and_writes_nothing(capsys, tmp_path, write_spec, fake_train):
    out = tmp_path / "o"
    assert main(["sweep", str(write_spec(SPEC)), "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "6 runs" in text and text.count(" todo ") == 6
    assert "dataset=digits/model=simple_cnn/method=mixup/seed=1" in text
    assert not out.exists() and fake_train.calls == []


def test_cli_sweep_writes_manifest_and_shard_lines(capsys, tmp_path, write_spec, fake_train):
    out = tmp_path / "o"
    assert main(["sweep", str(write_spec(SPEC)), "--out", str(out), "--shard", "2/2", "--set", "lr=0.05"]) == 0
    text = capsys.readouterr().out
    assert "3 of 6 runs (shard 2/2)" in text and "3 trained" in text
    manifest = json.loads((out / "sweep.json").read_text())
    assert manifest["name"] == "tiny" and manifest["num_runs"] == 6
    assert [r["name"] for r in manifest["runs"]] == [r.name for r in expand(parse_spec(SPEC), out)]
    assert all(r["settings"]["lr"] == 0.05 for r in manifest["runs"])
    assert sorted(fake_train.calls) == sorted(str(out / r["name"]) for r in manifest["runs"][1::2])


@pytest.mark.parametrize(
    "content, needle",
    [
        ("grid: {method: [lmix], sed: [0]}\n", "unknown key(s) ['sed']; known keys:"),
        ("base: {epoch: 3}\ngrid: {seed: [0]}\n", "unknown config key(s) ['epoch']"),
        ("grid: [method: lmix\n", "not valid YAML"),
        ("base: {epochs: 3}\n", "defines no runs"),
        ("grid: {seed: []}\n", "empty list"),
        ("grid: {method: [lmix, supermix], seed: [0]}\n", "unknown mixer 'supermix'"),
    ],
)
def test_bad_spec_files_are_one_line_errors(capsys, tmp_path, write_spec, fake_train, content, needle):
    line = one_line_error(capsys, ["sweep", str(write_spec(content)), "--out", str(tmp_path / "o")])
    assert needle in line
    assert fake_train.calls == [] and not (tmp_path / "o" / "sweep.json").exists()


def test_missing_spec_and_bad_set(capsys, tmp_path, write_spec, fake_train):
    assert "does not exist" in one_line_error(capsys, ["sweep", str(tmp_path / "nope.yaml")])
    line = one_line_error(capsys, ["sweep", str(write_spec(SPEC)), "--set", "lr"])
    assert "KEY=VALUE" in line
    line = one_line_error(capsys, ["sweep", str(write_spec(SPEC)), "--set", "method=lmix"])
    assert "varies" in line


def test_a_folder_holding_another_run_stops_the_sweep_before_it_starts(capsys, tmp_path, write_spec, fake_train):
    out = tmp_path / "o"
    other = expand(parse_spec(SPEC), out)[3]
    other.dir.mkdir(parents=True)
    (other.dir / "config.yaml").write_text(other.config.to_yaml().replace("epochs: 2", "epochs: 5"))
    line = one_line_error(capsys, ["sweep", str(write_spec(SPEC)), "--out", str(out)])
    assert "holds a different run (epochs: 5 there, 2 here)" in line
    assert fake_train.calls == []
    assert main(["sweep", str(write_spec(SPEC)), "--out", str(out), "--dry-run"]) == 0
    assert "conflict" in capsys.readouterr().out


def test_lock_is_exclusive_and_released(tmp_path):
    a, b = RunLock(tmp_path / "run"), RunLock(tmp_path / "run")
    assert a.acquire()
    assert not b.acquire()
    assert b.is_held_elsewhere()
    assert f"pid {os.getpid()}" in b.holder()
    a.release()
    assert not (tmp_path / "run" / ".lock").exists()
    assert b.acquire() and not a.acquire()
    b.release()


def test_a_run_locked_by_another_process_is_left_alone(tmp_path, fake_train):
    spec = parse_spec(SPEC)
    runs = expand(spec, tmp_path)
    holder = RunLock(runs[0].dir)
    assert holder.acquire()
    try:
        lines: list[str] = []
        result = run_sweep(spec, tmp_path, log=lines.append)
        assert result.count("busy") == 1 and str(runs[0].dir) not in fake_train.calls
        assert any("busy (pid" in line for line in lines)
        assert _dry_run_statuses(spec, tmp_path)[0] == "running"
    finally:
        holder.release()
    run_sweep(spec, tmp_path, log=_quiet)
    assert sorted(fake_train.completed) == sorted(str(r.dir) for r in runs)


def test_lock_of_a_killed_process_is_taken_over(tmp_path):
    run_dir = tmp_path / "run"
    code = (
        "import sys, time; from lmix.experiments.sweep import RunLock; "
        f"lock = RunLock({str(run_dir)!r}); assert lock.acquire(); print('locked', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        assert not RunLock(run_dir).acquire()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (run_dir / ".lock").exists()  # a stale lock file with a dead pid ...
    lock = RunLock(run_dir)
    assert lock.acquire()  # ... is simply taken
    assert f"pid {os.getpid()}" in lock.holder()
    lock.release()


def test_a_folder_saved_before_new_settings_existed_is_the_same_run(tmp_path):
    """A config.yaml without settings added later (crop/flip, method_params, ...) is no conflict."""
    import yaml

    from lmix.experiments.sweep import conflict

    run = expand(parse_spec(SPEC), tmp_path)[0]
    run.dir.mkdir(parents=True)
    old = run.config.to_dict()
    for key in ("crop_padding", "flip", "method_params", "test_batch_size", "checkpoint_every", "compile_mode"):
        old.pop(key, None)
    (run.dir / "config.yaml").write_text(yaml.safe_dump(old))
    assert conflict(run) is None
    old["epochs"] = 7
    (run.dir / "config.yaml").write_text(yaml.safe_dump(old))
    assert "epochs: 7 there, 2 here" in conflict(run)
