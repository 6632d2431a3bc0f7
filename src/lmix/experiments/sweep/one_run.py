"""One run of a sweep: trained under its folder's lock unless done, then attacked if the spec asks."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lmix.experiments.io import RunLock, WriteError
from lmix.experiments.sweep.expand import Run
from lmix.experiments.sweep.fgsm import AttackPlan, attack, needs_attack
from lmix.experiments.sweep.status import FAILED_JSON, clear_failed, mark_failed, read_done
from lmix.experiments.train import config_from_sources, train

__all__ = ["RunOutcome", "run_one", "first_line"]


@dataclass
class RunOutcome:
    """What happened to a run.

    ``status``: "trained", "skipped" (trained before), "busy" (locked by another process), "failed"
    or "interrupted" (stopped by a signal at its last checkpoint). ``attacked``: FGSM ran this
    time and ``fgsm`` holds its record. ``error``: why a run failed, who holds a busy run's lock,
    or why a skipped run's metrics show that it diverged.
    """

    run: Run
    status: str
    seconds: float = 0.0
    summary: dict[str, Any] | None = None
    error: str | None = None
    exception: BaseException | None = field(default=None, repr=False)
    fgsm: dict[str, Any] | None = None
    attacked: bool = False


def first_line(err: BaseException) -> str:
    """The first line of an error's message (its type's name when it has none)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def run_one(run: Run, train_log: Callable[..., None], plan: AttackPlan | None = None) -> RunOutcome:
    """Train ``run`` unless it is done (or locked elsewhere), then attack it if ``plan`` asks for it.

    A training error becomes a "failed" outcome with ``RUN/failed.json``; an attack error a
    "failed" outcome without it (the trained run is valid; the next sweep retries the attack).
    """
    done = read_done(run.dir)
    if done is not None and not needs_attack(run.dir, plan):
        return RunOutcome(run, "skipped", summary=done[0], error=done[1])
    lock = RunLock(run.dir)
    try:
        if not lock.acquire():
            return RunOutcome(run, "busy", error=lock.holder())
    except OSError as err:  # a folder the sweep may not write: this run fails, the others go on
        return RunOutcome(run, "failed", error=str(WriteError(lock.path, err)), exception=err)
    t0 = time.perf_counter()
    try:
        outcome = _train_locked(run, train_log, t0)
        if outcome.status == "failed" or not needs_attack(run.dir, plan):
            return outcome
        assert plan is not None
        return _attack_trained(outcome, plan, t0)
    finally:
        lock.release()
        try:
            run.dir.rmdir()  # only succeeds if the run failed before writing anything
        except OSError:
            pass


def _train_locked(run: Run, train_log: Callable[..., None], t0: float) -> RunOutcome:
    """Train the run (its lock held) unless another process finished it while we waited for the lock."""
    done = read_done(run.dir)
    if done is not None:
        return RunOutcome(run, "skipped", seconds=time.perf_counter() - t0, summary=done[0], error=done[1])
    clear_failed(run.dir)  # a retry: it is not failed while it runs
    # train() takes a config it may modify (out); give it a copy so Run stays as expanded
    config = config_from_sources(run.config.to_dict())
    try:
        summary = train(config, log=train_log)
    except Exception as err:  # noqa: BLE001 - a failed run is recorded; the sweep goes on
        message = first_line(err)
        try:
            mark_failed(run, err, message, time.perf_counter() - t0)
        except OSError as write_err:  # e.g. the disk that stopped the run is still full
            message += f" (and {FAILED_JSON} could not be written: {first_line(write_err)})"
        return RunOutcome(run, "failed", seconds=time.perf_counter() - t0, error=message, exception=err)
    return RunOutcome(run, "trained", seconds=time.perf_counter() - t0, summary=summary)


def _attack_trained(trained: RunOutcome, plan: AttackPlan, t0: float) -> RunOutcome:
    """Attack a trained run; a failing attack fails the outcome but leaves the run trained."""
    run = trained.run
    try:
        record = attack(run, plan)
    except Exception as err:  # noqa: BLE001 - the run stays trained; a re-run retries the attack
        return RunOutcome(
            run,
            "failed",
            seconds=time.perf_counter() - t0,
            summary=trained.summary,
            error=f"FGSM attack after training: {first_line(err)}",
            exception=err,
        )
    return RunOutcome(
        run, trained.status, seconds=time.perf_counter() - t0, summary=trained.summary, fgsm=record, attacked=True
    )
