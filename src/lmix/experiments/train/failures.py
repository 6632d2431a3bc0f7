"""How a run fails safely: divergence, signals and a lock on the run folder.

- :class:`TrainingDiverged`: the loss or the weights stopped being finite; raised at the end of
  the epoch, before that epoch's checkpoint is written, so the last checkpoint on disk is good.
- :class:`TrainingInterrupted`: SIGINT or SIGTERM arrived; the step in flight finishes, the
  epoch is abandoned (a resume replays it exactly) and no half-written checkpoint is left.
- The run folder's lock is :class:`lmix.experiments.io.RunLock` (one ``lmix train`` or sweep job
  per run folder).
- ``failed.json`` (:func:`write_failed`): why a run's last attempt failed, left in its folder by
  the trainer when training diverged and by ``lmix sweep`` for any failure; ``lmix report`` lists
  the run as failed (diverged). A later attempt that finishes removes it (:func:`clear_failed`).

Under DDP (torchrun) every rank gets torchrun's SIGTERM and stops at its next step boundary;
a rank that stops while another waits in a collective is ended by torchrun. Only rank 0 writes
files, always atomically, so no interleaving leaves a torn checkpoint.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from lmix.experiments.io import FAILED_JSON, atomic_write_json

__all__ = [
    "FAILED_JSON",
    "TrainingDiverged",
    "TrainingInterrupted",
    "StopOnSignal",
    "resume_hint",
    "epochs_done",
    "write_failed",
    "mark_failed",
    "clear_failed",
]


class TrainingDiverged(RuntimeError):
    """The training loss (or a weight) is no longer finite; the run stopped without a summary.

    Attributes:
        out: the run folder; its checkpoint (if any) is from the last good epoch.
        epoch: the epoch (1-based) in which the non-finite value appeared.
        saved_epoch: the epoch of the checkpoint left on disk (0: none).
    """

    def __init__(self, message: str, *, out: str | os.PathLike, epoch: int, saved_epoch: int) -> None:
        super().__init__(message)
        self.out = str(out)
        self.epoch = epoch
        self.saved_epoch = saved_epoch


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped the run between two steps (a ``KeyboardInterrupt``, so that
    code catching ``Exception`` to mark a run failed lets it through).

    Attributes:
        signum: the signal number; the conventional exit code is ``128 + signum`` (130, 143).
        out: the run folder (None if the run had not opened it yet).
        saved_epoch: the epoch of the checkpoint on disk (0: none yet).
    """

    def __init__(self, signum: int, *, out: str | None = None, saved_epoch: int = 0) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.out = out
        self.saved_epoch = saved_epoch

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        name = signal.Signals(self.signum).name
        if self.out is None:
            return f"lmix train: stopped by {name} before the run started"
        kept = f"checkpoint after epoch {self.saved_epoch} kept" if self.saved_epoch else "no epoch finished yet"
        return f"lmix train: stopped by {name} ({kept}); {resume_hint(self.out)}"


def resume_hint(out: str | os.PathLike) -> str:
    return f"resume with: lmix train --resume --out {out} (or re-run the same command)"


def epochs_done(run_dir: str | os.PathLike) -> int:
    """Epochs a run has recorded in ``metrics.jsonl`` (its non-blank rows; 0 without the file)."""
    try:
        return sum(1 for line in (Path(run_dir) / "metrics.jsonl").read_bytes().splitlines() if line.strip())
    except OSError:
        return 0


def write_failed(
    run_dir: str | os.PathLike,
    *,
    name: str,
    err: BaseException | None,
    message: str,
    epochs: int,
    seconds: float,
    identity: Mapping[str, Any] | None = None,
) -> None:
    """Write ``RUN/failed.json`` (atomically): why the run's last attempt failed.

    Args:
        run_dir: the run folder.
        name: the run's name (its folder, or its place in a sweep).
        err: the exception (None: the job process died without one); ``diverged`` is whether it
            is a :class:`TrainingDiverged`.
        message: one line saying why (``error``).
        epochs: the epochs the run was to train.
        seconds: how long the attempt ran.
        identity: the run's ``dataset``, ``model``, ``method`` and ``seed`` (a config mapping;
            other keys are ignored), for a reader without its ``config.yaml``.

    Raises:
        lmix.experiments.io.WriteError: the file could not be written (no earlier one is torn).
    """
    record: dict[str, Any] = {
        "run": name,
        "error": message,
        "error_type": type(err).__name__ if err is not None else None,
        "diverged": isinstance(err, TrainingDiverged),
        "epochs_done": epochs_done(run_dir),
        "epochs": epochs,
        "seconds": round(seconds, 3),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    for key in ("dataset", "model", "method", "seed"):
        if identity is not None and identity.get(key) is not None:
            record[key] = identity[key]
    atomic_write_json(Path(run_dir) / FAILED_JSON, record)


def mark_failed(run: Any, err: BaseException | None, message: str, seconds: float) -> None:
    """:func:`write_failed` for a sweep's run (a ``lmix.experiments.sweep.expand.Run``: its ``dir``,
    ``name`` and ``config``), for the report, ``lmix sweep --dry-run`` and people."""
    config = run.config
    write_failed(
        run.dir,
        name=run.name,
        err=err,
        message=message,
        epochs=config.epochs,
        seconds=seconds,
        identity=config.to_dict(),
    )


def clear_failed(run_dir: str | os.PathLike) -> None:
    """Remove a run's ``failed.json`` (a retry is not failed while it runs; a finished run never is)."""
    try:
        (Path(run_dir) / FAILED_JSON).unlink()
    except FileNotFoundError:
        pass


class StopOnSignal:
    """Context manager: the first SIGINT/SIGTERM sets a flag that :meth:`check` turns into
    :class:`TrainingInterrupted` at the next safe point; a second one interrupts at once.

    The handlers are installed only in the main thread (elsewhere ``signal`` cannot) and the
    previous ones are restored on exit.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:  # asked twice: do not wait for the step to end
            raise TrainingInterrupted(signum)
        self.signum = signum

    def check(self) -> None:
        """Raise :class:`TrainingInterrupted` if a signal arrived (a Python attribute read: no device sync)."""
        if self.signum is not None:
            raise TrainingInterrupted(self.signum)

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        installed = bool(self._previous)
        self._previous.clear()
        if installed and exc_type is None and self.signum is not None:
            # The signal came while the run was finishing (its files are complete): act on it
            # now as the process would have, instead of swallowing it.
            signal.raise_signal(self.signum)
