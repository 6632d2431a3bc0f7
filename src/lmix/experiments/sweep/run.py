"""``run_sweep``: expand a spec and train this shard's runs that are not done, one by one or in jobs."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmix._checks import is_integer
from lmix.data.cpus import available_cpus
from lmix.errors import LmixValueError
from lmix.experiments.io import RunLock, WriteError, atomic_write_json
from lmix.experiments.records import sweep_manifest_name
from lmix.experiments.sweep.expand import Run, expand
from lmix.experiments.sweep.fgsm import AttackPlan, attack_plan, needs_attack
from lmix.experiments.sweep.jobs import remove_stale_scratch, run_jobs
from lmix.experiments.sweep.one_run import RunOutcome, run_one
from lmix.experiments.sweep.shards import shard_runs
from lmix.experiments.sweep.spec import SweepSpec
from lmix.experiments.sweep.status import BLOCKED, FAILED_JSON, blocked_message, held_elsewhere, read_done, run_status

__all__ = ["SweepResult", "run_sweep", "sweep_manifest", "failed_line"]


@dataclass
class SweepResult:
    """Outcomes of one ``run_sweep`` call (this shard's runs only)."""

    outcomes: list[RunOutcome] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)


def sweep_manifest(spec: SweepSpec, runs: Sequence[Run]) -> dict[str, Any]:
    """The content of ``sweep.json``: deterministic, so concurrent shards write the same file."""
    manifest: dict[str, Any] = {
        "name": spec.name,
        "spec": spec.source,
        "num_runs": len(runs),
        "runs": [{"index": r.index, "name": r.name, "settings": r.settings} for r in runs],
    }
    if spec.attack_eps is not None:
        manifest["attack_eps"] = list(spec.attack_eps)
    if spec.analysis is not None:  # the plan travels with the runs: lmix report DIR computes it
        manifest["analysis"] = spec.analysis.to_dict()
    return manifest


def run_sweep(
    spec: SweepSpec,
    out_dir: str | os.PathLike,
    *,
    shard: tuple[int, int] | None = None,
    overrides: dict[str, Any] | None = None,
    dry_run: bool = False,
    keep_going: bool = True,
    jobs: int = 1,
    threads: int | None = None,
    gpus: Sequence[str] = (),
    log: Callable[[str], None] = print,
    train_log: Callable[..., None] | None = None,
) -> SweepResult:
    """Expand ``spec`` and train this shard's runs that are not done yet.

    Every run is validated before the first one starts. A run whose training raises (a
    diverged loss, a crash) is marked failed: ``RUN/failed.json`` holds the reason and the run
    has no ``summary.json``; the sweep goes on with the other runs (``keep_going=False``: no
    new run starts after the first failure). A later sweep retries failed runs, resuming from their
    last checkpoint. Runs locked by another process are skipped as busy. With the spec's
    ``attack_eps``, each finished run is attacked with FGSM and gets ``RUN/fgsm.json``.

    Args:
        jobs: runs trained at once, each in its own Python process (1: one after the other, in
            this process).
        threads: torch CPU threads of each job's process (default with ``jobs > 1``: the
            CPUs available divided by ``jobs``, at least 1; with ``jobs == 1`` the caller's
            setting is kept).
        gpus: with ``jobs > 1``, the GPUs (``CUDA_VISIBLE_DEVICES`` entries) to spread the job
            processes over: each job sees one of them, the one running the fewest jobs. Runs
            whose ``device`` is ``cpu`` or a fixed ``cuda:N`` keep their device. See
            :func:`lmix.experiments.sweep.resolve_gpus`. Empty (default): every job sees the
            caller's devices.
        train_log: the trainer's own log lines (default: dropped; the sweep prints one line per run).
            With ``jobs > 1`` any non-None value lets the job processes print their trainer output.

    Raises:
        SweepInterrupted: SIGINT or SIGTERM arrived while jobs ran (``jobs > 1``).
    """
    gpus = _checked_job_args(jobs, threads, gpus)
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    runs = expand(spec, out_dir, overrides=overrides)
    mine = shard_runs(runs, shard)
    shard_text = f"shard {shard[0]}/{shard[1]}" if shard else "all shards"
    if dry_run:
        _dry_run(spec, runs, mine, out_dir, shard_text, log)
        return SweepResult()
    _refuse_blocked(mine)
    _write_manifest(out_dir, spec, runs)
    remove_stale_scratch(out_dir)
    parallel = jobs > 1  # job processes even if this shard leaves one run: --threads applies to them
    jobs = min(jobs, max(1, len(mine)))
    job_text = f", {jobs} at once" if parallel else ""
    log(f"sweep {spec.name!r}: {len(mine)} of {len(runs)} runs ({shard_text}{job_text}) in {out_dir}")
    plan = attack_plan(spec.attack_eps)
    progress = _Progress(mine, log)
    if parallel:
        threads = max(1, available_cpus() // jobs) if threads is None else threads
        _run_in_jobs(
            mine,
            progress,
            plan,
            jobs=jobs,
            threads=threads,
            gpus=gpus,
            train_log=train_log,
            keep_going=keep_going,
            out_dir=out_dir,
        )
    else:
        _run_here(mine, progress, plan, train_log=train_log, keep_going=keep_going)
    result = progress.result
    result.seconds = time.perf_counter() - t_start
    log(
        f"sweep {spec.name!r} ({shard_text}): {result.count('trained')} trained, {result.count('skipped')} already done, "
        f"{result.count('busy')} busy, {result.count('failed')} failed"
        + (f", {sum(o.attacked for o in result.outcomes)} attacked (FGSM)" if plan is not None else "")
        + f" in {result.seconds:.1f}s"
    )
    return result


def _checked_job_args(jobs: Any, threads: Any, gpus: Sequence[str]) -> list[str]:
    """Check ``run_sweep``'s process arguments; returns the GPU ids as strings."""
    if not is_integer(jobs) or jobs < 1:
        raise LmixValueError(f"jobs must be an integer >= 1, got {jobs!r}")
    if threads is not None and (not is_integer(threads) or threads < 1):
        raise LmixValueError(f"threads must be an integer >= 1, got {threads!r}")
    ids = [str(g) for g in gpus]
    if any(not g.strip() or "," in g for g in ids) or len(set(ids)) != len(ids):
        raise LmixValueError(f"gpus must be distinct, non-empty device ids, got {ids!r}")
    if ids and jobs == 1:
        raise LmixValueError(
            "gpus spread job processes over GPUs and needs jobs > 1; to pin a sweep to one GPU set device=cuda:N"
        )
    return ids


def _dry_run(
    spec: SweepSpec,
    runs: Sequence[Run],
    mine: Sequence[Run],
    out_dir: Path,
    shard_text: str,
    log: Callable[[str], None],
) -> None:
    """List this shard's runs and their status; write nothing.

    Raises:
        LmixValueError: a run the real sweep would refuse (a conflict, an unreadable record): the
            same line as the real sweep's, after the listing.
    """
    log(f"sweep {spec.name!r}: {len(runs)} runs, {len(mine)} in {shard_text}; out dir {out_dir}")
    width = len(str(len(mine)))
    blocked = None
    for pos, run in enumerate(mine, 1):
        status, detail = run_status(run, attack_eps=spec.attack_eps)
        log(f"[{pos:>{width}}/{len(mine)}] {status:<7s} {run.name}" + (f"  ({detail})" if detail else ""))
        if status in BLOCKED and blocked is None:
            blocked = blocked_message(run, status, detail)
    if blocked is not None:
        raise LmixValueError(blocked)


def _refuse_blocked(runs: Sequence[Run]) -> None:
    """Stop before anything runs if a run's folder holds a different run or a record that cannot be used."""
    for run in runs:
        status, detail = run_status(run)
        if status in BLOCKED:
            raise LmixValueError(blocked_message(run, status, detail))


def _write_manifest(out_dir: Path, spec: SweepSpec, runs: Sequence[Run]) -> None:
    """Create the output folder and write the sweep's manifest: the sweep's first write.

    Raises:
        WriteError: the folder cannot be made or written (nothing was written).
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WriteError(out_dir, err) from None
    atomic_write_json(out_dir / sweep_manifest_name(out_dir, spec.name), sweep_manifest(spec, runs))


class _Progress:
    """Collects the outcomes and logs one line per run, numbered within this shard."""

    def __init__(self, runs: Sequence[Run], log: Callable[[str], None]) -> None:
        width = len(str(len(runs)))
        self.prefixes = {run.index: f"[{pos:>{width}}/{len(runs)}] {run.name}:" for pos, run in enumerate(runs, 1)}
        self.log = log
        self.result = SweepResult()

    def started(self, run: Run, pid: int, threads: int, gpu: str | None) -> None:
        on_gpu = "" if gpu is None else f", GPU {gpu}"
        self.log(f"{self.prefixes[run.index]} start (pid {pid}, {threads} thread(s){on_gpu})")

    def done(self, outcome: RunOutcome) -> None:
        self.result.outcomes.append(outcome)
        self.log(outcome_line(self.prefixes[outcome.run.index], outcome))


def _run_here(
    runs: Sequence[Run],
    progress: _Progress,
    plan: AttackPlan | None,
    *,
    train_log: Callable[..., None] | None,
    keep_going: bool,
) -> None:
    """One run after the other, in this process."""
    quiet = train_log or (lambda *a, **k: None)
    for run in runs:
        outcome = run_one(run, quiet, plan)
        progress.done(outcome)
        if outcome.status == "failed" and not keep_going:
            break


def _run_in_jobs(
    runs: Sequence[Run],
    progress: _Progress,
    plan: AttackPlan | None,
    *,
    jobs: int,
    threads: int,
    gpus: Sequence[str],
    train_log: Callable[..., None] | None,
    keep_going: bool,
    out_dir: Path,
) -> None:
    """Up to ``jobs`` runs at once, each in its own process; finished and busy runs start none.
    The jobs' scratch folder is in ``out_dir``, where the next sweep looks for one a killed sweep left."""
    todo = []
    for run in runs:
        done = read_done(run.dir)
        if done is not None and not needs_attack(run.dir, plan):
            progress.done(RunOutcome(run, "skipped", summary=done[0], error=done[1]))
        elif held_elsewhere(run.dir):
            progress.done(RunOutcome(run, "busy", error=RunLock(run.dir).holder()))
        else:
            todo.append(run)
    run_jobs(
        todo,
        jobs=jobs,
        threads=threads,
        gpus=gpus,
        plan=plan,
        verbose=train_log is not None,
        keep_going=keep_going,
        on_start=lambda run, pid, gpu: progress.started(run, pid, threads, gpu),
        on_done=progress.done,
        scratch_in=out_dir,
    )


def failed_line(result: SweepResult, *, limit: int = 8) -> str | None:
    """One line naming the failed runs of ``result`` and why (None when none failed)."""
    failed = [o for o in result.outcomes if o.status == "failed"]
    if not failed:
        return None
    shown = "; ".join(f"{o.run.name} ({_shorten(o.error or 'unknown error')})" for o in failed[:limit])
    more = f"; and {len(failed) - limit} more" if len(failed) > limit else ""
    return (
        f"{len(failed)} run{'s' if len(failed) > 1 else ''} failed: {shown}{more}. Each failed run's "
        f"{FAILED_JSON} says why; re-run the same command to retry them"
    )


def _shorten(text: str, n: int = 100) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _fgsm_text(fgsm: dict[str, Any] | None) -> str:
    if fgsm is None:
        return ""
    accuracies = ", ".join(f"{a:.1f}" for a in fgsm.get("acc", []))
    return f"; FGSM acc {accuracies} at eps {','.join(f'{e:g}' for e in fgsm.get('eps_255', []))}/255"


def outcome_line(prefix: str, outcome: RunOutcome) -> str:
    """The sweep's line for one run's outcome."""
    s = outcome.summary or {}
    if outcome.status == "skipped":
        if outcome.attacked:
            return f"{prefix} trained before, attacked in {outcome.seconds:.1f}s{_fgsm_text(outcome.fgsm)}"
        diverged = f"; {outcome.error}" if outcome.error else ""
        return f"{prefix} skip (done), final {s.get('final_acc', float('nan')):.2f}%{diverged}"
    if outcome.status == "busy":
        return f"{prefix} busy ({outcome.error}), left to it"
    if outcome.status == "trained":
        clean = s.get("final_clean_train_acc")
        return (
            f"{prefix} done in {outcome.seconds:.1f}s, final {s['final_acc']:.2f}%, best {s['best_acc']:.2f}%"
            + (f", clean train {clean:.1f}%" if clean is not None else "")
            + _fgsm_text(outcome.fgsm)
        )
    if outcome.status == "interrupted":
        return f"{prefix} interrupted after {outcome.seconds:.1f}s ({outcome.error}); resumes on the next sweep"
    return f"{prefix} FAILED after {outcome.seconds:.1f}s: {outcome.error}"
