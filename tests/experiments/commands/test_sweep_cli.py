"""``lmix sweep``: its options, and every user error as one line on stderr with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmix.experiments.cli import main
from lmix.experiments.sweep import expand, parse_spec
from lmix.experiments.train import TrainingDiverged
from tests.cli_helpers import one_line_error, run_cli
from tests.experiments.sweep.conftest import TINY_SPEC as SPEC
from tests.experiments.sweep.conftest import FakeTrain, use_trainer


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/0", "a/b", "3", "1/2/3", "-1/2"])
def test_bad_shard_is_a_one_line_error(capsys, tmp_path, write_spec, fake_train, text):
    line = one_line_error(capsys, ["sweep", str(write_spec(SPEC)), "--out", str(tmp_path / "o"), "--shard", text])
    assert "--shard" in line
    assert fake_train.calls == []


@pytest.mark.parametrize("value", ["0", "-1", "x"])
def test_bad_jobs_is_a_one_line_error(capsys, tmp_path, write_spec, fake_train, value):
    line = one_line_error(capsys, ["sweep", str(write_spec(SPEC)), "--out", str(tmp_path / "o"), "--jobs", value])
    assert "--jobs" in line
    assert fake_train.calls == [] and not (tmp_path / "o").exists()


def test_shard_auto_from_the_environment_and_its_errors(capsys, tmp_path, write_spec, fake_train, monkeypatch):
    for key in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_STEP"):
        monkeypatch.delenv(key, raising=False)
    argv = ["sweep", str(write_spec(SPEC)), "--out", str(tmp_path / "o"), "--shard", "auto"]
    line = one_line_error(capsys, argv, "--shard auto", "SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT not set")
    assert "--shard i/N" in line
    for task, count, needle in [
        ("x", "2", "not an integer"),
        ("2", "2", "not one of the 2 array tasks"),
        ("-1", "2", "not one of"),
    ]:
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", task)
        monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", count)
        one_line_error(capsys, argv, "--shard auto", needle)
    assert fake_train.calls == []

    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    assert main(argv) == 0
    assert "3 of 6 runs (shard 2/2)" in capsys.readouterr().out
    runs = expand(parse_spec(SPEC), tmp_path / "o")
    assert sorted(fake_train.calls) == sorted(str(r.dir) for r in runs[1::2])
    assert all(Path(c).is_dir() for c in fake_train.calls)


def test_gpus_usage_errors(capsys, tmp_path, write_spec):
    spec = str(write_spec(SPEC))
    out = str(tmp_path / "o")
    one_line_error(capsys, ["sweep", spec, "--out", out, "--jobs", "2", "--gpus", "0,0"], "distinct GPU ids")
    one_line_error(capsys, ["sweep", spec, "--out", out, "--gpus", "0,1"], "needs --jobs N > 1", "device=cuda:N")
    assert not (tmp_path / "o").exists()


def test_a_failed_run_is_marked_and_the_sweep_goes_on(capsys, tmp_path, write_spec, monkeypatch):
    class Diverging(FakeTrain):
        def __call__(self, config, log=print):
            if config.method == "mixup" and config.seed == 1:
                self.calls.append(config.out)
                message = "loss is nan at epoch 1, step 3; the last good checkpoint is epoch 0"
                raise TrainingDiverged(message, out=config.out, epoch=1, saved_epoch=0)
            return super().__call__(config, log)

    fake = Diverging()
    use_trainer(monkeypatch, fake)
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
    use_trainer(monkeypatch, fake)
    out = tmp_path / "o"
    code, _, err = run_cli(capsys, ["sweep", str(write_spec(SPEC)), "--out", str(out), "--fail-fast"])
    assert code == 1 and fake.calls == [str(expand(parse_spec(SPEC), out)[0].dir)]
    assert "1 run failed" in err
    line = one_line_error(capsys, ["sweep", str(write_spec(SPEC)), "--keep-going", "--fail-fast"])
    assert "contradict" in line
    assert main(["sweep", str(write_spec(SPEC)), "--out", str(out), "--keep-going"]) == 0  # retried, all pass now
    assert len(fake.completed) == 6


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
    # the dry run lists the run as a conflict and ends with the real sweep's line: they agree
    code, text, err = run_cli(capsys, ["sweep", str(write_spec(SPEC)), "--out", str(out), "--dry-run"])
    assert code == 2 and err.strip() == line and "conflict dataset=digits/model=simple_cnn/method=none/seed=1" in text


@pytest.mark.parametrize(
    "value, needle",
    [
        ("[]", "attack_eps must be a non-empty list"),
        ("[-1, 2]", "must be a finite number >= 0"),
        ("[0, 300]", "exceed the pixel range"),
        ("[true]", "attack_eps must be a non-empty list"),
        ("'0,x'", "is not a number"),
    ],
)
def test_bad_attack_eps_is_a_one_line_error(capsys, tmp_path, write_spec, fake_train, value, needle):
    spec = write_spec(f"attack_eps: {value}\nbase: {{dataset: digits, model: simple_cnn}}\ngrid: {{seed: [0]}}\n")
    line = one_line_error(capsys, ["sweep", str(spec), "--out", str(tmp_path / "o")], "attack_eps")
    assert needle in line and fake_train.calls == []
