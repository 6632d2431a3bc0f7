"""Shards: disjoint, covering and balanced; ``i/N`` and Slurm job arrays (``auto``)."""

from __future__ import annotations

import pytest

from lmix.errors import LmixValueError
from lmix.experiments.sweep import expand, parse_shard, parse_spec, run_sweep, shard_runs

from .conftest import TINY_SPEC as SPEC


def _quiet(_line: str) -> None:
    pass


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7])
def test_shards_are_disjoint_and_cover_the_sweep(tmp_path, n):
    runs = expand(parse_spec(SPEC), tmp_path)
    parts = [shard_runs(runs, (i, n)) for i in range(1, n + 1)]
    names = [r.name for part in parts for r in part]
    assert sorted(names) == sorted(r.name for r in runs)  # covering, and no run twice
    assert max(map(len, parts)) - min(map(len, parts)) <= 1  # balanced


def test_sharded_sweeps_train_every_run_once(tmp_path, fake_train):
    spec = parse_spec(SPEC)
    for i in (1, 2, 3):
        run_sweep(spec, tmp_path, shard=(i, 3), log=_quiet)
    assert sorted(fake_train.completed) == sorted(str(r.dir) for r in expand(spec, tmp_path))
    assert len(set(fake_train.calls)) == len(fake_train.calls) == 6


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/0", "a/b", "3", "1/2/3", "-1/2"])
def test_bad_shard(text):
    with pytest.raises(LmixValueError, match="--shard must be i/N"):
        parse_shard(text)
    assert parse_shard("2/3") == (2, 3)


@pytest.mark.parametrize(
    "env, needle",
    [
        ({}, "SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT not set"),
        ({"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "2"}, "not an integer"),
        ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "2"}, "not one of the 2 array tasks"),
        ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_STEP": "0"}, "STEP must be"),
    ],
)
def test_bad_shard_auto(env, needle):
    with pytest.raises(LmixValueError, match="--shard auto") as err:
        parse_shard("auto", environ=env)
    assert needle in str(err.value)


@pytest.mark.parametrize(
    "env, shard",
    [
        ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "3"}, (1, 3)),
        ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "3"}, (3, 3)),
        ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "1"}, (1, 3)),
        (
            {
                "SLURM_ARRAY_TASK_ID": "8",
                "SLURM_ARRAY_TASK_COUNT": "4",
                "SLURM_ARRAY_TASK_MIN": "2",
                "SLURM_ARRAY_TASK_STEP": "2",
            },
            (4, 4),
        ),
    ],
)
def test_shard_auto_reads_the_job_array(env, shard):
    assert parse_shard("auto", environ=env) == shard
