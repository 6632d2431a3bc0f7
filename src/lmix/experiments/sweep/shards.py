"""Shards: disjoint, balanced parts of a sweep for separate machines or Slurm array tasks."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from lmix.errors import LmixValueError
from lmix.experiments.sweep.expand import Run

__all__ = ["SHARD_ENV", "parse_shard", "shard_runs"]

SHARD_ENV = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT")


def parse_shard(text: str, *, environ: Mapping[str, str] | None = None) -> tuple[int, int]:
    """``"i/N"`` (1-based, 1 <= i <= N) -> (i, N); ``"auto"``: from a Slurm job array; LmixValueError otherwise.

    ``auto`` reads ``SLURM_ARRAY_TASK_ID`` and ``SLURM_ARRAY_TASK_COUNT`` from ``environ``
    (default ``os.environ``). The task id is taken as 0-based; when Slurm also sets
    ``SLURM_ARRAY_TASK_MIN`` (and ``SLURM_ARRAY_TASK_STEP``), the index is
    ``(ID - MIN) // STEP``, so ``--array=1-8`` and ``--array=0-14:2`` work too. Task index ``t``
    runs shard ``t + 1`` of ``COUNT``.
    """
    if str(text).strip().lower() == "auto":
        return _shard_from_env(os.environ if environ is None else environ)
    parts = str(text).split("/")
    try:
        i, n = (int(p) for p in parts)
    except ValueError:
        raise LmixValueError(
            f"--shard must be i/N with integers 1 <= i <= N (e.g. 1/4) or auto (a Slurm job array), got {text!r}"
        ) from None
    if n < 1 or not 1 <= i <= n:
        raise LmixValueError(f"--shard must be i/N with 1 <= i <= N (shards are numbered from 1), got {text!r}")
    return i, n


def _shard_from_env(environ: Mapping[str, str]) -> tuple[int, int]:
    missing = [k for k in SHARD_ENV if not environ.get(k, "").strip()]
    if missing:
        raise LmixValueError(
            f"--shard auto needs a Slurm job array ({' and '.join(missing)} not set; submit with sbatch --array=0-N); "
            "elsewhere use --shard i/N"
        )
    values = {}
    for key in (*SHARD_ENV, "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_STEP"):
        raw = environ.get(key, "").strip()
        if not raw:
            continue
        try:
            values[key] = int(raw)
        except ValueError:
            raise LmixValueError(f"--shard auto: {key}={raw!r} is not an integer") from None
    task, count = values["SLURM_ARRAY_TASK_ID"], values["SLURM_ARRAY_TASK_COUNT"]
    low, step = values.get("SLURM_ARRAY_TASK_MIN", 0), values.get("SLURM_ARRAY_TASK_STEP", 1)
    if step < 1:
        raise LmixValueError(f"--shard auto: SLURM_ARRAY_TASK_STEP must be >= 1, got {step}")
    index, rest = divmod(task - low, step)
    if count < 1 or rest or not 0 <= index < count:
        raise LmixValueError(
            f"--shard auto: task id {task} is not one of the {count} array tasks "
            f"(SLURM_ARRAY_TASK_MIN {low}, step {step}); use --array=0-{max(count, 1) - 1}"
        )
    return index + 1, count


def shard_runs(runs: Sequence[Run], shard: tuple[int, int] | None) -> list[Run]:
    """The runs of shard ``(i, N)``: those whose index is ``i - 1`` modulo ``N``."""
    if shard is None:
        return list(runs)
    i, n = shard
    return [r for r in runs if r.index % n == i - 1]
