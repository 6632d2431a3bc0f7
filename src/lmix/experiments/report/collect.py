"""Finding runs and reading their records: the first step of a report.

Every run folder under the report's root is accounted for (a folder is a run folder when it
holds any of :data:`lmix.experiments.records.RUN_FILES`), with one status:

* ``used``: finished (a ``summary.json``), every record a finished run needs is there and
  readable (``summary.json``, ``config.yaml``, ``metrics.jsonl``; ``fgsm.json`` where there is
  one; see :func:`lmix.experiments.records.read_finished`), and its training did not diverge; it
  is in the numbers.
* ``failed``: ``failed.json`` (a sweep's run that raised; a run that diverged) and no
  ``summary.json``; or a run whose ``metrics.jsonl`` shows a diverged loss
  (:func:`lmix.experiments.records.divergence`, the trainer's own rule), finished or not. A
  diverged run is shown as ``failed (diverged)``, its reason naming the epoch and the loss.
* ``running``: no ``summary.json`` and another process holds the run's lock (``.lock``).
* ``unfinished``: none of these (an interrupted run, a run not started yet); also every run a
  sweep's ``sweep.json`` lists whose folder does not exist.
* ``unreadable``: a record is there but cannot be used, or a finished run lacks one it needs
  (which file, what is wrong: ``config.yaml: config key 'epochs' must be of type int, got 'abc'``,
  ``metrics.jsonl: is missing ...``). A ``config.yaml`` is unusable where ``lmix train`` would
  refuse it (an unknown key, a combination it refuses before training) and, in a finished run,
  where it contradicts a setting its ``summary.json`` records (``config.yaml: max_soft is 0.3 but
  summary.json records 0.0``): the records of :mod:`lmix.experiments.records`, which ``lmix sweep``
  reads too, so the sweep refuses to train over the same folders.

A sweep's scratch folder (``.lmix-sweep-*``, left by a killed sweep) is not searched.

The runs that are not used keep what is known of their identity and settings (their
``config.yaml``, else the sweep's settings for their folder), so that the report can say which
group they are missing from. How runs are grouped is :mod:`~lmix.experiments.report.settings`'.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmix._checks import is_integer
from lmix.errors import LmixValueError
from lmix.experiments.io import RunLock, not_a_folder
from lmix.experiments.plan import AnalysisPlan
from lmix.experiments.records import (
    CHECKPOINT,
    METRICS_JSONL,
    RUN_FILES,
    SUMMARY_JSON,
    SWEEP_JSON,
    SWEEP_SCRATCH_PREFIX,
    RecordError,
    divergence,
    is_sweep_manifest,
    load_config,
    load_failed,
    load_metrics,
    load_summary,
    load_sweep,
    load_sweep_plan,
    read_finished,
)

__all__ = [
    "USED",
    "FAILED",
    "RUNNING",
    "UNFINISHED",
    "UNREADABLE",
    "STATUSES",
    "RunRecord",
    "DeclaredPlan",
    "Collection",
    "collect_runs",
    "fgsm_curve",
    "status_counts",
]

USED, FAILED, RUNNING, UNFINISHED, UNREADABLE = "used", "failed", "running", "unfinished", "unreadable"
STATUSES = (USED, FAILED, RUNNING, UNFINISHED, UNREADABLE)
_IDENTITY = ("dataset", "model", "method", "seed")


@dataclass
class RunRecord:
    """One run folder (or one run of a sweep that has no folder yet).

    Attributes:
        dir: the run folder, relative to the report's root.
        summary: ``summary.json`` of a used run; for the others, the identity that is known
            (data set, model, method, seed).
        config: ``config.yaml`` (for a run without a readable one: the sweep's settings for its
            folder, or empty: identity then comes from ``summary``).
        metrics: rows of ``metrics.jsonl`` (empty if missing).
        fgsm: ``fgsm.json`` (None if missing).
        settings: the grouping settings (normalised; excludes data set, model, method, seed).
        failure: ``failed.json`` of a failed run (None otherwise).
        status: one of :data:`STATUSES`.
        detail: why a run is not used: the reason it failed, how far it got, which file is
            unreadable and what is wrong ("" for a used run).
        settings_known: whether ``config`` holds the run's settings (False: only its identity is known).
    """

    dir: str
    summary: dict[str, Any]
    config: dict[str, Any]
    metrics: list[dict[str, Any]]
    fgsm: dict[str, Any] | None
    settings: dict[str, Any] = field(default_factory=dict)
    failure: dict[str, Any] | None = None
    status: str = USED
    detail: str = ""
    settings_known: bool = True

    def _identity(self, key: str) -> Any:
        value = self.summary.get(key)
        return self.config.get(key) if value is None else value

    @property
    def dataset(self) -> str:
        return str(self._identity("dataset"))

    @property
    def model(self) -> str:
        return str(self._identity("model"))

    @property
    def method(self) -> str:
        return str(self._identity("method"))

    @property
    def seed(self) -> Any:
        return self._identity("seed")

    @property
    def diverged(self) -> bool:
        """A failed run whose training diverged (non-finite loss or weights)."""
        return bool((self.failure or {}).get("diverged"))

    @property
    def status_label(self) -> str:
        """The status as the report prints it (``failed (diverged)`` for a diverged run)."""
        return f"{self.status} (diverged)" if self.diverged else self.status


@dataclass(frozen=True)
class DeclaredPlan:
    """An analysis plan and the runs it is about.

    Attributes:
        plan: the plan (:mod:`lmix.experiments.plan`).
        source: where it was declared (``sweep.json`` relative to the root, or ``--plan SPEC``).
        dirs: the folders (relative to the root) of the sweep's runs: the plan covers the table
            rows that hold them, and its ``each`` means the groups among them.
    """

    plan: AnalysisPlan
    source: str
    dirs: frozenset[str]


@dataclass
class Collection:
    """Every run under a report's root.

    Attributes:
        runs: every run folder, and every run a ``sweep.json`` lists that has none, by folder.
        sweeps: the ``sweep.json`` files read (relative to the root): with one, a group's
            expected number of runs is known.
        problems: unreadable ``sweep.json`` files ("``a/sweep.json: not valid JSON ...``").
        plans: the analysis plans the ``sweep.json`` files carry.
    """

    runs: list[RunRecord]
    sweeps: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    plans: list[DeclaredPlan] = field(default_factory=list)

    @property
    def used(self) -> list[RunRecord]:
        return [r for r in self.runs if r.status == USED]

    @property
    def not_used(self) -> list[RunRecord]:
        return [r for r in self.runs if r.status != USED]


def status_counts(runs: list[RunRecord]) -> dict[str, int]:
    """Runs per status, in :data:`STATUSES` order, statuses with no run left out."""
    counts = Counter(r.status for r in runs)
    return {s: counts[s] for s in STATUSES if counts[s]}


def _check_root(root: str | os.PathLike) -> Path:
    root = Path(root)
    problem = not_a_folder(root, name="DIR", hint="give the folder that holds the run folders")
    if problem is not None:
        raise LmixValueError(f"lmix report: {problem}")
    if not root.is_dir():
        raise LmixValueError(
            f"lmix report: DIR {str(root)!r} does not exist; give the folder that holds the run folders"
        )
    return root


def _run_folders(root: Path) -> tuple[list[Path], list[Path]]:
    """Folders under ``root`` (itself included) holding a run file, and every sweep manifest
    (``sweep.json``, ``sweep-NAME.json``) under it."""
    runs, sweeps = [], []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(SWEEP_SCRATCH_PREFIX))
        if RUN_FILES.intersection(files):
            runs.append(Path(folder))
        sweeps += [Path(folder) / name for name in sorted(files) if is_sweep_manifest(name)]
    return runs, sweeps


def collect_runs(root: str | os.PathLike) -> Collection:
    """Every run under ``root``, each with its status (see the module docstring); reads, never writes."""
    root = _check_root(root)
    folders, sweep_folders = _run_folders(root)
    planned, collection = _sweep_runs(root, sweep_folders)
    for folder in folders:
        rel = _rel(folder, root)
        collection.runs.append(_run(folder, rel, planned.pop(rel, None)))
    for rel, settings in planned.items():  # listed by a sweep, no folder yet
        collection.runs.append(
            _not_used(rel, dict(settings), UNFINISHED, f"not started (listed in {SWEEP_JSON}, nothing recorded)")
        )
    collection.runs.sort(key=lambda r: r.dir)
    return collection


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() or "."


def _sweep_runs(root: Path, manifests: list[Path]) -> tuple[dict[str, dict[str, Any]], Collection]:
    """The runs the sweeps under ``root`` list (folder relative to ``root`` -> settings), and a collection to fill."""
    planned: dict[str, dict[str, Any]] = {}
    collection = Collection([])
    for manifest in manifests:
        try:
            runs = load_sweep(manifest) or []
            plan = load_sweep_plan(manifest)
        except RecordError as err:
            collection.problems.append(f"{_rel(err.path, root)}: {err.problem}")
            continue
        source = _rel(manifest, root)
        collection.sweeps.append(source)
        dirs = [_rel(manifest.parent / name, root) for name, _ in runs]
        planned.update(zip(dirs, (settings for _, settings in runs)))
        if plan is not None:
            collection.plans.append(DeclaredPlan(plan, source, frozenset(dirs)))
    return planned, collection


def _run(folder: Path, rel: str, planned: dict[str, Any] | None) -> RunRecord:
    """The record of one run folder, with its status."""
    if (folder / SUMMARY_JSON).exists():
        try:
            finished = read_finished(folder)
        except RecordError as err:
            return _unusable(folder, rel, planned, UNREADABLE, f"{err.file}: {err.problem}")
        why = divergence(finished.metrics, finished.dataset)
        if why is not None:
            return _diverged(folder, rel, planned, why)
        return RunRecord(rel, finished.summary, finished.config, finished.metrics, finished.fgsm)
    if _held_elsewhere(folder):
        return _unusable(
            folder, rel, planned, RUNNING, f"{RunLock(folder).holder()} holds its lock; {_progress(folder)}"
        )
    try:
        failure = load_failed(folder)
        load_config(folder)  # the settings of a run not finished are read too: damage is said, not guessed around
    except RecordError as err:
        return _unusable(folder, rel, planned, UNREADABLE, f"{err.file}: {err.problem}")
    if failure is not None:
        return _failed(folder, rel, planned, failure)
    why = _unfinished_divergence(folder)
    if why is not None:
        return _diverged(folder, rel, planned, why)
    return _unusable(folder, rel, planned, UNFINISHED, _progress(folder))


def _failed(folder: Path, rel: str, planned: dict[str, Any] | None, failure: dict[str, Any]) -> RunRecord:
    record = _unusable(folder, rel, planned, FAILED, _reason(failure))
    record.failure = failure
    record.summary = {k: failure[k] for k in _IDENTITY if failure.get(k) is not None} | record.summary
    return record


def _diverged(folder: Path, rel: str, planned: dict[str, Any] | None, why: str) -> RunRecord:
    """A run whose metrics.jsonl shows a diverged loss: failed (diverged), whatever else it holds."""
    return _failed(folder, rel, planned, {"diverged": True, "error": why})


def _unfinished_divergence(folder: Path) -> str | None:
    """Why an unfinished run's metrics.jsonl shows that it diverged (None: it does not, or it cannot be read)."""
    try:
        metrics = load_metrics(folder)
        dataset = (load_config(folder) or {}).get("dataset")
    except RecordError:
        return None
    return divergence(metrics, str(dataset)) if metrics and dataset is not None else None


def _unusable(folder: Path, rel: str, planned: dict[str, Any] | None, status: str, detail: str) -> RunRecord:
    """A run folder that is not in the numbers, with what is known of its identity and settings."""
    try:
        config = load_config(folder)
    except RecordError:
        config = None
    record = _not_used(rel, config if config is not None else dict(planned or {}), status, detail)
    record.settings_known = config is not None or planned is not None
    record.summary = _summary_identity(folder)
    return record


def _not_used(rel: str, config: dict[str, Any], status: str, detail: str) -> RunRecord:
    return RunRecord(rel, {}, config, [], None, status=status, detail=detail)


def _summary_identity(folder: Path) -> dict[str, Any]:
    """Identity from an unusable run's summary.json, as far as it is a mapping (a damaged run may still name itself)."""
    try:
        summary = load_summary(folder)
    except RecordError:
        return {}
    return {k: summary[k] for k in _IDENTITY if summary and summary.get(k) is not None}


def _held_elsewhere(folder: Path) -> bool:
    try:
        return RunLock(folder).is_held_elsewhere()
    except OSError:  # released just now, or a folder we may not open for writing: nobody we can see
        return False


def _progress(folder: Path) -> str:
    """How far an unfinished run got: epochs recorded, and whether it left a checkpoint."""
    try:
        lines = (folder / METRICS_JSONL).read_bytes().splitlines()
    except OSError:
        lines = []
    epochs = sum(1 for line in lines if line.strip())
    try:
        total = (load_config(folder) or {}).get("epochs")
    except RecordError:
        total = None
    text = f"{epochs} of {total}" if total is not None else str(epochs)
    text += " epoch recorded" if epochs == 1 and total is None else " epochs recorded"
    text += f", {CHECKPOINT} kept" if (folder / CHECKPOINT).is_file() else ""
    # every epoch recorded and still no summary: the file the report needs is what is missing
    return text + (f", no {SUMMARY_JSON}" if is_integer(total) and epochs >= total else "")


def _reason(failure: dict[str, Any]) -> str:
    """One line saying why a failed run failed (its failed.json's error, reason or message)."""
    for key in ("error", "reason", "message"):
        value = failure.get(key)
        if isinstance(value, str) and value.strip():
            line = value.strip().splitlines()[0]
            return line if len(line) <= 160 else line[:157] + "..."
    return "no reason recorded"


def fgsm_curve(record: RunRecord) -> dict[float, float]:
    """A run's FGSM accuracy (%) by eps in 1/255 units ({} without fgsm.json).

    eps is read from ``eps_255`` (as recorded by ``lmix attack``), else from ``eps`` (fractions
    of the pixel range) times 255; rounded to 1e-6 so that ``8/255 * 255`` and ``8`` meet.
    """
    if record.fgsm is None:
        return {}
    eps, scale = (record.fgsm["eps_255"], 1.0) if "eps_255" in record.fgsm else (record.fgsm["eps"], 255.0)
    return {round(float(e) * scale, 6): float(a) for e, a in zip(eps, record.fgsm["acc"])}
