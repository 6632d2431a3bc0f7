"""Runs in job processes (``lmix sweep --jobs N``): N at once, spread over GPUs, stopped together.

Each job is a fresh ``python`` process (subprocess, not a multiprocessing pool): a run that
crashes the interpreter (out of memory, a segfault in a kernel) fails alone instead of breaking
a pool; thread counts are fixed through the environment before torch starts; no state (CUDA
caches, compiled graphs, global RNGs) carries from one run to the next; and each job sits in
its own session, so one Ctrl-C reaches the jobs exactly once, forwarded by the sweep.

The jobs' files (what to run, what happened, their stderr) live in a scratch folder inside the
sweep's output folder, ``.lmix-sweep-XXXX`` (never in the system's temporary folder): a sweep
that is killed (SIGKILL, a node that goes down) leaves nothing outside its output folder, and
``lmix report`` does not look inside it. The sweep removes it when it ends; a scratch folder
whose sweep was killed is removed by the next sweep into the same folder
(:func:`remove_stale_scratch`). Whether its sweep is alive is an exclusive ``flock`` on
``owner.lock`` inside it, taken by the sweep and inherited by its job processes, so the kernel
drops it only when the sweep and all its jobs are gone. A job whose sweep dies without stopping
it (SIGKILL, a crash) notices within a second (:func:`stop_when_orphaned`) and stops as on
SIGTERM: the trainer keeps its last checkpoint and releases the run's lock, and the next sweep
resumes the run instead of finding it held by a process nobody watches.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from lmix.errors import LmixValueError
from lmix.experiments.io import RunLock, atomic_write_json
from lmix.experiments.records import SUMMARY_JSON, SWEEP_SCRATCH_PREFIX
from lmix.experiments.sweep.expand import Run
from lmix.experiments.sweep.fgsm import AttackPlan, attack_plan
from lmix.experiments.sweep.one_run import RunOutcome, first_line, run_one
from lmix.experiments.sweep.status import FAILED_JSON, mark_failed
from lmix.experiments.train import config_from_sources

__all__ = ["SweepInterrupted", "resolve_gpus", "run_jobs", "child_main", "remove_stale_scratch"]

CHILD_CODE = "import sys; from lmix.experiments.sweep.jobs import child_main; sys.exit(child_main(sys.argv[1:]))"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# How a job stopped by a forwarded signal (or killed by a second one) exits.
STOPPED_EXIT_CODES = (128 + signal.SIGINT, 128 + signal.SIGTERM, -signal.SIGINT, -signal.SIGTERM, -signal.SIGKILL)
_OWNER = "owner.lock"  # in a scratch folder: locked while its sweep or any of its jobs lives
_UNLOCKED_GRACE_S = 60.0  # a scratch folder without its lock file yet: being made, unless older than this


class SweepInterrupted(Exception):
    """The sweep was stopped by SIGINT or SIGTERM; runs in flight stopped at their last checkpoint."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def resolve_gpus(
    text: str, *, environ: Mapping[str, str] | None = None, device_count: Callable[[], int] | None = None
) -> list[str]:
    """The GPUs ``lmix sweep --jobs N --gpus TEXT`` spreads its job processes over.

    Args:
        text: ``"auto"``: the visible GPUs (the entries of ``CUDA_VISIBLE_DEVICES`` when it is set,
            else ``0 .. torch.cuda.device_count() - 1``) when there are two or more, else none;
            ``"none"``: none (every job sees the caller's devices); or a comma-separated list of
            ids as ``CUDA_VISIBLE_DEVICES`` takes them (``"0,1,3"``, GPU UUIDs).
        environ: the environment to read (default ``os.environ``).
        device_count: counts the GPUs (default ``torch.cuda.device_count``, which does not
            create a CUDA context).

    Raises:
        LmixValueError: an empty or repeated id in a list.
    """
    text = text.strip()
    if text.lower() == "none":
        return []
    if text.lower() == "auto":
        env = os.environ if environ is None else environ
        visible = env.get("CUDA_VISIBLE_DEVICES")
        if visible is not None:
            ids = [v.strip() for v in visible.split(",") if v.strip()]
        else:
            ids = [str(i) for i in range((device_count or torch.cuda.device_count)())]
        return ids if len(ids) > 1 else []
    ids = [v.strip() for v in text.split(",")]
    if any(not v for v in ids) or len(set(ids)) != len(ids):
        raise LmixValueError(f"--gpus must be auto, none or a list of distinct GPU ids such as 0,1,3; got {text!r}")
    return ids


def may_place_on_gpu(run: Run) -> bool:
    """Whether the sweep may choose the run's GPU (its device is auto or plain cuda, not cpu or cuda:N)."""
    return str(run.config.device) in ("auto", "cuda")


def child_env(threads: int, gpu: str | None = None) -> dict[str, str]:
    """A job process's environment: its thread count, and the one GPU it sees (if given)."""
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[key] = str(threads)
    if gpu is not None:  # the job's "cuda" is this GPU
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


#: Seconds between a job's checks that its sweep is alive.
ORPHAN_CHECK_S = 0.5


def stop_when_orphaned(parent: int, *, interval: float = ORPHAN_CHECK_S) -> threading.Thread:
    """Send this process SIGTERM once its parent process ``parent`` is gone (a daemon thread polls).

    A job sits in its own session, so the terminal's Ctrl-C never reaches it: only its sweep
    stops it. When the sweep dies without doing so, the job is re-parented (``os.getppid()``
    changes) and stops itself the way a forwarded SIGTERM would stop it.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="lmix-sweep-parent-watch", daemon=True)
    thread.start()
    return thread


def child_main(argv: Sequence[str]) -> int:
    """Entry point of one job process: ``JOB.json OUTCOME.json`` (written by :func:`run_jobs`)."""
    job_path, outcome_path = argv
    job = json.loads(Path(job_path).read_text())
    stop_when_orphaned(int(job["parent"]))
    torch.set_num_threads(int(job["threads"]))
    run = Run(
        index=int(job["index"]),
        name=job["name"],
        settings=job["settings"],
        config=config_from_sources(job["config"]),
    )
    train_log = print if job["verbose"] else (lambda *a, **k: None)
    try:
        outcome = run_one(run, train_log, attack_plan(job["attack_eps"]))
    except KeyboardInterrupt as err:  # the trainer's TrainingInterrupted carries 130 or 143
        return int(getattr(err, "exit_code", 128 + signal.SIGINT))
    atomic_write_json(
        outcome_path,
        {
            "status": outcome.status,
            "seconds": outcome.seconds,
            "summary": outcome.summary,
            "error": outcome.error,
            "fgsm": outcome.fgsm,
            "attacked": outcome.attacked,
        },
    )
    return 0


@dataclass
class _Job:
    """A job process and the files it answers in."""

    run: Run
    proc: subprocess.Popen
    outcome_path: Path
    stderr_path: Path
    t0: float
    gpu: str | None = None


@dataclass
class _JobOptions:
    """What every job of a :func:`run_jobs` call shares."""

    threads: int
    plan: AttackPlan | None
    verbose: bool
    tmp: Path
    owner_fd: int  # the scratch folder's lock, inherited by every job


@contextlib.contextmanager
def _scratch(parent: Path) -> Iterator[tuple[Path, int]]:
    """A new scratch folder in ``parent`` and the descriptor of its lock (held); removed on exit."""
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=SWEEP_SCRATCH_PREFIX, dir=parent))
    try:
        fd = os.open(folder / _OWNER, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield folder, fd
        finally:
            os.close(fd)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def remove_stale_scratch(out_dir: str | os.PathLike) -> list[Path]:
    """Remove the scratch folders in ``out_dir`` whose sweep is gone (killed with its jobs); returns them.

    A folder whose lock is held (a sweep or a job of it still runs, on this machine or another
    sharing the folder) is left alone, and so is one without its lock file for less than a minute
    (a sweep making it right now).
    """
    removed = []
    try:
        entries = [p for p in Path(out_dir).iterdir() if p.name.startswith(SWEEP_SCRATCH_PREFIX) and p.is_dir()]
    except OSError:
        return removed
    for folder in entries:
        try:
            fd = os.open(folder / _OWNER, os.O_RDWR)
        except FileNotFoundError:
            with contextlib.suppress(OSError):
                if time.time() - folder.stat().st_mtime > _UNLOCKED_GRACE_S:
                    shutil.rmtree(folder)
                    removed.append(folder)
            continue
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: its sweep or a job of it is alive
            os.close(fd)
            continue
        try:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        finally:
            os.close(fd)
    return removed


def run_jobs(
    runs: Sequence[Run],
    *,
    jobs: int,
    threads: int,
    scratch_in: str | os.PathLike,
    gpus: Sequence[str] = (),
    plan: AttackPlan | None = None,
    verbose: bool = False,
    keep_going: bool = True,
    on_start: Callable[[Run, int, str | None], None] = lambda run, pid, gpu: None,
    on_done: Callable[[RunOutcome], None] = lambda outcome: None,
) -> None:
    """Train ``runs`` in up to ``jobs`` processes at once; ``on_done`` gets each outcome as it finishes.

    With ``gpus``, each job whose device the sweep may choose (:func:`may_place_on_gpu`) sees the
    GPU running the fewest jobs. With ``keep_going`` False no job starts after the first failure.
    The jobs' files go to a scratch folder in ``scratch_in``, the sweep's output folder, where
    :func:`remove_stale_scratch` looks for one a killed sweep left (see the module).

    Raises:
        SweepInterrupted: SIGINT or SIGTERM arrived; it was forwarded to the jobs, which stopped
            at their last checkpoint (a second signal kills them).
    """
    if not runs:
        return
    parent = Path(scratch_in)
    stops: list[int] = []  # signals received (handlers only record them)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, lambda signum, _frame: stops.append(signum)) for s in STOP_SIGNALS}
    try:
        with _scratch(parent) as (tmp, owner_fd):
            options = _JobOptions(threads=threads, plan=plan, verbose=verbose, tmp=tmp, owner_fd=owner_fd)
            _JobPool(options, list(gpus), stops).run(list(runs), jobs, keep_going, on_start, on_done)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if stops:
        raise SweepInterrupted(
            stops[0],
            f"lmix sweep: interrupted by {signal.Signals(stops[0]).name}; runs in flight stopped at their last "
            "checkpoint; re-run the same command to resume",
        )


class _JobPool:
    """The job processes of one :func:`run_jobs` call."""

    def __init__(self, options: _JobOptions, gpus: list[str], stops: list[int]) -> None:
        self.options = options
        self.gpus = gpus
        self.stops = stops
        self.forwarded = 0  # how many of ``stops`` the jobs were sent
        self.running: list[_Job] = []

    def run(
        self,
        queue: list[Run],
        jobs: int,
        keep_going: bool,
        on_start: Callable[[Run, int, str | None], None],
        on_done: Callable[[RunOutcome], None],
    ) -> None:
        failed = False
        try:
            while queue or self.running:
                while queue and len(self.running) < jobs and not self.stops and not failed:
                    job = self._start(queue.pop(0))
                    on_start(job.run, job.proc.pid, job.gpu)
                if not self.running:
                    break
                self._forward_stops()
                time.sleep(0.05)
                for outcome in self._reap():
                    on_done(outcome)
                    failed = failed or (outcome.status == "failed" and not keep_going)
        finally:
            for job in self.running:  # only on an unexpected error in this loop: leave no orphans
                _send_signal(job.proc, signal.SIGKILL)
                job.proc.wait()

    def _least_busy_gpu(self, run: Run) -> str | None:
        if not self.gpus or not may_place_on_gpu(run):
            return None
        load = {g: sum(j.gpu == g for j in self.running) for g in self.gpus}
        return min(self.gpus, key=lambda g: load[g])  # ties: the first listed

    def _start(self, run: Run) -> _Job:
        options, gpu = self.options, self._least_busy_gpu(run)
        stem = options.tmp / f"job{run.index}"
        job_path, outcome_path, stderr_path = (stem.with_suffix(s) for s in (".json", ".out.json", ".err"))
        job_path.write_text(
            json.dumps(
                {
                    "index": run.index,
                    "name": run.name,
                    "settings": run.settings,
                    "config": run.config.to_dict(),
                    "attack_eps": None if options.plan is None else list(options.plan.eps_255),
                    "threads": options.threads,
                    "verbose": options.verbose,
                    "parent": os.getpid(),
                }
            )
        )
        with open(stderr_path, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-c", CHILD_CODE, str(job_path), str(outcome_path)],
                env=child_env(options.threads, gpu),
                stdin=subprocess.DEVNULL,
                stdout=None if options.verbose else subprocess.DEVNULL,
                stderr=None if options.verbose else err,
                start_new_session=True,
                pass_fds=(options.owner_fd,),  # the scratch folder stays locked while the job lives
            )
        self.running.append(_Job(run, proc, outcome_path, stderr_path, time.perf_counter(), gpu))
        return self.running[-1]

    def _forward_stops(self) -> None:
        """The first signal is passed on (the jobs checkpoint and exit); a second one kills them."""
        if len(self.stops) > self.forwarded:
            sig = self.stops[self.forwarded] if self.forwarded == 0 else signal.SIGKILL
            self.forwarded = len(self.stops)
            for job in self.running:
                _send_signal(job.proc, sig)

    def _reap(self) -> list[RunOutcome]:
        """The outcomes of the jobs that ended since the last call."""
        ended = [j for j in self.running if j.proc.poll() is not None]
        for job in ended:
            self.running.remove(job)
        return [_job_outcome(job, stopping=bool(self.stops)) for job in ended]


def _send_signal(proc: subprocess.Popen, sig: int) -> None:
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass


def _job_outcome(job: _Job, *, stopping: bool) -> RunOutcome:
    """What the ended job answered, or, if it died without answering, why."""
    run, rc, seconds = job.run, job.proc.returncode, time.perf_counter() - job.t0
    try:
        data = json.loads(job.outcome_path.read_text())
    except (OSError, ValueError):
        data = None
    if data is not None:
        return RunOutcome(
            run,
            data["status"],
            seconds=float(data["seconds"]),
            summary=data["summary"],
            error=data["error"],
            fgsm=data["fgsm"],
            attacked=bool(data["attacked"]),
        )
    if stopping and rc in STOPPED_EXIT_CODES:
        return RunOutcome(run, "interrupted", seconds=seconds, error=f"exit code {rc}")
    # The process died without an outcome (killed, out of memory, a crash in native code).
    message = _last_line(job.stderr_path) or f"the job process exited with code {rc}"
    if rc is not None and rc < 0:
        message = f"the job process was killed by {signal.Signals(-rc).name}" + (f": {message}" if message else "")
    lock = RunLock(run.dir)
    try:
        if not (run.dir / SUMMARY_JSON).exists() and lock.acquire():
            try:
                mark_failed(run, None, message, seconds)
            finally:
                lock.release()
    except OSError as err:
        message += f" (and {FAILED_JSON} could not be written: {first_line(err)})"
    return RunOutcome(run, "failed", seconds=seconds, error=message)


def _last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""
