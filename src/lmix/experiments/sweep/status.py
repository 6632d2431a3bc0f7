"""What a run folder holds: done, running, failed, partial, to do, another run (a conflict), or unreadable.

The records are read with the checked readers of :mod:`lmix.experiments.records`, the ones
``lmix report`` uses, so the sweep and the report judge a run folder alike. A folder whose record
cannot be used is ``unreadable``: a damaged ``config.yaml``, ``failed.json`` or record of a
finished run (``summary.json``, ``metrics.jsonl``, ``fgsm.json``), or a finished run without its
``config.yaml`` or ``metrics.jsonl``. The sweep never trains over such a folder: the records there
may be the user's only copy of a result, and training would overwrite them. ``run_sweep`` stops
before anything runs, naming the folder, the file and what is wrong, and its dry run lists the
run as ``unreadable`` and ends with the same line (:func:`blocked_message`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lmix._checks import is_finite_real
from lmix.experiments.io import RunLock
from lmix.experiments.records import (
    CHECKPOINT,
    FAILED_JSON,
    SUMMARY_JSON,
    RecordError,
    divergence,
    load_config,
    load_failed,
    read_finished,
)
from lmix.experiments.sweep.expand import Run
from lmix.experiments.sweep.fgsm import has_fgsm
from lmix.experiments.train.config import identity_difference
from lmix.experiments.train.failures import (  # the writers, shared with the trainer
    clear_failed,
    epochs_done,
    mark_failed,
)

__all__ = [
    "FAILED_JSON",
    "SUMMARY_JSON",
    "BLOCKED",
    "conflict",
    "run_status",
    "blocked_message",
    "read_done",
    "read_failed",
    "mark_failed",
    "clear_failed",
    "held_elsewhere",
]

# The statuses that stop a sweep before anything runs (and end its dry run with the same line).
BLOCKED = ("conflict", "unreadable")


def held_elsewhere(run_dir: Path) -> bool:
    """Whether another process holds the run's lock right now."""
    try:
        return RunLock(run_dir).is_held_elsewhere()
    except OSError:  # the holder removed its lock file just now: free (the job process checks again)
        return False


def read_done(run_dir: Path) -> tuple[dict[str, Any], str | None] | None:
    """A finished run's ``summary.json`` and, where its ``metrics.jsonl`` shows a diverged loss, why
    (:func:`lmix.experiments.records.divergence`); None when the run has no summary (not finished).

    Raises:
        RecordError: a record of the finished run is missing or cannot be used.
    """
    if not (run_dir / SUMMARY_JSON).exists():
        return None
    finished = read_finished(run_dir)
    return finished.summary, divergence(finished.metrics, finished.dataset)


def conflict(run: Run) -> str | None:
    """How the run folder's saved ``config.yaml`` differs from ``run`` (None: no folder, or the same run).

    Two specs sharing an out dir must give different runs different folder names; a clash would
    otherwise only surface as train()'s error when the run's turn comes.

    Raises:
        RecordError: the folder's ``config.yaml`` cannot be used.
    """
    theirs = load_config(run.dir)
    if theirs is None:
        return None
    # Compare identities, not raw dicts: a folder saved before a setting existed still matches.
    return identity_difference(theirs, run.config.to_dict())


def run_status(run: Run, *, attack_eps: Sequence[float] | None = None) -> tuple[str, str]:
    """(status, detail): "done", "running", "failed", "partial", "todo", "conflict" (the folder holds
    another run) or "unreadable" (detail: ``"summary.json: final_acc must be ..."``; see the module).

    ``attack_eps`` (1/255 units): a done run whose ``fgsm.json`` does not have these eps says so in its detail.
    """
    try:
        return _status(run, attack_eps)
    except RecordError as err:
        return "unreadable", f"{err.file}: {err.problem}"


def _status(run: Run, attack_eps: Sequence[float] | None) -> tuple[str, str]:
    d = run.dir
    clash = conflict(run)
    if clash is not None:
        return "conflict", clash
    done = read_done(d)
    if done is not None:
        summary, diverged = done
        pending = ", FGSM to do" if attack_eps and not has_fgsm(d, attack_eps) else ""
        return "done", _result_text(summary) + pending + (f"; {diverged}" if diverged else "")
    lock = RunLock(d)
    try:
        if lock.is_held_elsewhere():
            return "running", lock.holder()
    except OSError:
        pass
    epochs = epochs_done(d)
    failed = load_failed(d)
    if failed is not None:
        return "failed", f"{failed.get('error') or 'no reason recorded'} ({epochs}/{run.config.epochs} epochs)"
    if epochs or (d / CHECKPOINT).exists():
        return "partial", f"{epochs}/{run.config.epochs} epochs"
    return "todo", ""


def _result_text(summary: dict[str, Any]) -> str:
    """``final 51.00%, best 52.50%`` of a checked summary (best where it has one)."""
    best = summary.get("best_acc")
    return f"final {summary['final_acc']:.2f}%" + (f", best {best:.2f}%" if is_finite_real(best) else "")


def blocked_message(run: Run, status: str, detail: str) -> str:
    """The one line that stops a sweep (and ends its dry run) over a run folder it must not train in."""
    if status == "conflict":
        return (
            f"lmix sweep: run folder {str(run.dir)!r} holds a different run ({detail}); use another --out, or vary that "
            "setting in the spec's grid so that the folder names differ"
        )
    fix = (
        "restore that file, or move the folder away"
        if ": is missing" in detail
        else "repair that file, or move it (or the folder) away"
    )
    return (
        f"lmix sweep: run folder {str(run.dir)!r} has an unreadable record: {detail}; lmix sweep does not train over a "
        f"run's records: {fix}, and re-run (the run is then trained, or resumed from its checkpoint)"
    )


def read_failed(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """A run's ``failed.json`` (why its last attempt failed), or None if there is none.

    Raises:
        RecordError: it cannot be used.
    """
    return load_failed(run_dir)
