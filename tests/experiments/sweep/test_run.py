"""``run_sweep``: its argument checks, the dry run, the conflict scan, the manifest and its lines."""

from __future__ import annotations

import fcntl
import json
import os

import pytest

from lmix.errors import LmixValueError
from lmix.experiments.sweep import expand, parse_spec, run_sweep

from .conftest import TINY_SPEC as SPEC


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"jobs": 0}, "jobs must be an integer >= 1"),
        ({"jobs": True}, "jobs must be an integer >= 1"),
        ({"jobs": 2, "threads": 0}, "threads must be an integer >= 1"),
        ({"jobs": 2, "gpus": ["0", "0"]}, "gpus must be distinct"),
        ({"jobs": 2, "gpus": ["0,1"]}, "gpus must be distinct"),
        ({"gpus": ["0"]}, "needs jobs > 1"),
    ],
)
def test_process_arguments_are_checked_before_anything_runs(tmp_path, fake_train, kwargs, needle):
    with pytest.raises(LmixValueError, match=needle):
        run_sweep(parse_spec(SPEC), tmp_path / "o", log=lambda line: None, **kwargs)
    assert not (tmp_path / "o").exists() and fake_train.calls == []


def test_dry_run_lists_runs_and_writes_nothing(tmp_path, fake_train):
    out = tmp_path / "o"
    lines: list[str] = []
    result = run_sweep(parse_spec(SPEC), out, dry_run=True, shard=(1, 2), log=lines.append)
    assert result.outcomes == []
    assert lines[0] == f"sweep 'tiny': 6 runs, 3 in shard 1/2; out dir {out}"
    assert lines[1:] == [
        "[1/3] todo    dataset=digits/model=simple_cnn/method=none/seed=0",
        "[2/3] todo    dataset=digits/model=simple_cnn/method=lmix/seed=0",
        "[3/3] todo    dataset=digits/model=simple_cnn/method=mixup/seed=1",
    ]
    assert not out.exists() and fake_train.calls == []


def test_a_folder_holding_another_run_stops_the_sweep_before_it_starts(tmp_path, fake_train):
    out = tmp_path / "o"
    other = expand(parse_spec(SPEC), out)[3]
    other.dir.mkdir(parents=True)
    (other.dir / "config.yaml").write_text(other.config.to_yaml().replace("epochs: 2", "epochs: 5"))
    with pytest.raises(LmixValueError, match=r"holds a different run \(epochs: 5 there, 2 here\)"):
        run_sweep(parse_spec(SPEC), out, log=lambda line: None)
    assert fake_train.calls == [] and not (out / "sweep.json").exists()


def test_manifest_lines_and_counts(tmp_path, fake_train):
    out = tmp_path / "o"
    lines: list[str] = []
    result = run_sweep(parse_spec(SPEC), out, overrides={"lr": 0.05}, log=lines.append)
    manifest = json.loads((out / "sweep.json").read_text())
    assert manifest["name"] == "tiny" and manifest["num_runs"] == 6 and "attack_eps" not in manifest
    assert [r["name"] for r in manifest["runs"]] == [r.name for r in expand(parse_spec(SPEC), out)]
    assert all(r["settings"]["lr"] == 0.05 for r in manifest["runs"])
    assert lines[0] == f"sweep 'tiny': 6 of 6 runs (all shards) in {out}"
    assert lines[1].startswith("[1/6] dataset=digits/model=simple_cnn/method=none/seed=0: done in ")
    assert lines[1].endswith("final 50.00%, best 60.00%, clean train 99.5%")
    assert lines[-1].startswith("sweep 'tiny' (all shards): 6 trained, 0 already done, 0 busy, 0 failed in ")
    assert result.count("trained") == 6 and result.seconds > 0


def test_a_sweep_removes_the_scratch_folder_a_killed_sweep_left_but_not_a_live_one(tmp_path, fake_train):
    out = tmp_path / "o"
    stale, live = out / ".lmix-sweep-stale", out / ".lmix-sweep-live"
    for folder in (stale, live):
        folder.mkdir(parents=True)
        (folder / "owner.lock").touch()
        (folder / "job0.json").write_text("{}")
    fd = os.open(live / "owner.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a sweep (or a job of it) that is alive
        run_sweep(parse_spec(SPEC), out, log=lambda line: None)
        assert not stale.exists() and (live / "job0.json").exists()
    finally:
        os.close(fd)
    assert len(fake_train.calls) == 6
