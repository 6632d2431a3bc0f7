"""What a run folder holds: done, running, failed, partial, to do, or another run (a conflict)."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from lmix.experiments.io import RunLock, atomic_write_json
from lmix.experiments.sweep.expand import Run
from lmix.experiments.sweep.fgsm import has_fgsm
from lmix.experiments.train.config import RUN_IDENTITY_EXCLUDE, run_identity

__all__ = [
    "FAILED_JSON",
    "SUMMARY_JSON",
    "conflict",
    "run_status",
    "read_summary",
    "read_failed",
    "mark_failed",
    "clear_failed",
    "held_elsewhere",
]

FAILED_JSON = "failed.json"
SUMMARY_JSON = "summary.json"


def held_elsewhere(run_dir: Path) -> bool:
    """Whether another process holds the run's lock right now."""
    try:
        return RunLock(run_dir).is_held_elsewhere()
    except OSError:  # the holder removed its lock file just now: free (the job process checks again)
        return False


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """A finished run's ``summary.json`` (None: not finished, or unreadable)."""
    try:
        return json.loads((run_dir / SUMMARY_JSON).read_text())
    except (OSError, ValueError):
        return None


def epochs_done(run_dir: Path) -> int:
    """Epochs the run has recorded in ``metrics.jsonl``."""
    try:
        return sum(1 for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip())
    except OSError:
        return 0


def conflict(run: Run) -> str | None:
    """How the run folder's saved ``config.yaml`` differs from ``run`` (None: no folder, or the same run).

    Two specs sharing an out dir must give different runs different folder names; a clash would
    otherwise only surface as train()'s error when the run's turn comes.
    """
    path = run.dir / "config.yaml"
    if not path.is_file():
        return None
    try:
        theirs = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        return "its config.yaml is unreadable"
    if not isinstance(theirs, dict):
        return "its config.yaml is not a mapping"
    # Compare identities, not raw dicts: a folder saved before a setting existed still matches.
    theirs, ours = run_identity(theirs), run_identity(run.config.to_dict())
    diff = sorted(k for k in set(theirs) | set(ours) if k not in RUN_IDENTITY_EXCLUDE and theirs.get(k) != ours.get(k))
    if not diff:
        return None
    return ", ".join(f"{k}: {theirs.get(k)!r} there, {ours.get(k)!r} here" for k in diff[:3])


def run_status(run: Run, *, attack_eps: Sequence[float] | None = None) -> tuple[str, str]:
    """(status, detail): status is "done", "running", "failed", "partial", "todo" or "conflict" (folder holds another run).

    ``attack_eps`` (1/255 units): a done run whose ``fgsm.json`` does not have these eps says so in its detail.
    """
    d = run.dir
    clash = conflict(run)
    if clash is not None:
        return "conflict", clash
    if (d / SUMMARY_JSON).is_file():
        pending = ", FGSM to do" if attack_eps and not has_fgsm(d, attack_eps) else ""
        try:
            s = json.loads((d / SUMMARY_JSON).read_text())
            return "done", f"final {s['final_acc']:.2f}%, best {s['best_acc']:.2f}%{pending}"
        except (ValueError, KeyError, TypeError):
            return "done", f"summary.json unreadable{pending}"
    lock = RunLock(d)
    try:
        if lock.is_held_elsewhere():
            return "running", lock.holder()
    except OSError:
        pass
    epochs = epochs_done(d)
    failed = read_failed(d)
    if failed is not None:
        return "failed", f"{failed.get('error', 'unknown error')} ({epochs}/{run.config.epochs} epochs)"
    if epochs or (d / "checkpoint.pt").exists():
        return "partial", f"{epochs}/{run.config.epochs} epochs"
    return "todo", ""


def read_failed(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """A run's ``failed.json`` (why its last attempt failed), or None if there is none."""
    try:
        record = json.loads((Path(run_dir) / FAILED_JSON).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"error": f"{FAILED_JSON} unreadable"}
    return record if isinstance(record, dict) else {"error": f"{FAILED_JSON} is not a mapping"}


def mark_failed(run: Run, err: BaseException | None, message: str, seconds: float) -> None:
    """Write ``RUN/failed.json`` (atomically): why the run failed, for the report, ``--dry-run`` and people."""
    atomic_write_json(
        run.dir / FAILED_JSON,
        {
            "run": run.name,
            "error": message,
            "error_type": type(err).__name__ if err is not None else None,
            "diverged": type(err).__name__ == "TrainingDiverged",
            "epochs_done": epochs_done(run.dir),
            "epochs": run.config.epochs,
            "seconds": round(seconds, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        },
    )


def clear_failed(run_dir: Path) -> None:
    """Remove a retried run's ``failed.json`` (it is not failed while it runs)."""
    try:
        (run_dir / FAILED_JSON).unlink()
    except FileNotFoundError:
        pass
