"""Grouping runs into cells and the statistics of a report.

Runs are grouped into cells by (data set, model, method, every other setting that differs
between runs, except the seed); a cell's numbers are the mean, sample standard deviation
(ddof 1), count and 95% confidence half-width (Student t) of its runs' ``final_acc`` and
``best_acc``. Significance: a declared analysis plan first (:mod:`lmix.experiments.report.planned`);
then, exploratory: per row, every cell against the row's no-augmentation cell (``none``) and
against its LMix reference, paired by seed wherever the two cells have the same seeds (else
Welch's unpaired test, labelled: :func:`lmix.experiments.report.analysis.versus`); the paired
tables with Holm's adjustment, and slopes against LMix's k (:mod:`lmix.experiments.report.analysis`).
Regime: whether the row's baseline fits its training set (``OVERFIT_THRESHOLD``).
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmix._checks import is_finite_real
from lmix.errors import LmixValueError
from lmix.experiments.io import read_yaml
from lmix.experiments.paper import PAPER_EPOCHS, PaperResult, paper_result
from lmix.experiments.report.accounting import attach_not_used, counts_text, group_key
from lmix.experiments.report.analysis import PairedTest, Trend, k_trends, paired_tests, versus
from lmix.experiments.report.cells import Cell, FgsmPoint, Stats
from lmix.experiments.report.collect import (
    FAILED,
    STATUSES,
    UNREADABLE,
    USED,
    Collection,
    DeclaredPlan,
    RunRecord,
    collect_runs,
    fgsm_curve,
)
from lmix.experiments.report.planned import PlannedAnalysis, planned_analysis
from lmix.experiments.report.settings import (
    grouping_settings,
    method_key,
    mixer_defaults,
    same_value,
    sort_value,
)

__all__ = [
    "Stats",
    "FgsmPoint",
    "Cell",
    "Report",
    "build_report",
    "load_paper_table",
    "run_conditions",
    "report_rows",
    "report_datasets",
    "row_regime",
    "cell_order",
    "CONDITION_KEYS",
    "OVERFIT_THRESHOLD",
]

OVERFIT_THRESHOLD = 99.0  # % clean training accuracy of the baseline at which we call it "overfits"


@dataclass
class Report:
    """Everything the report shows, computed once from the run folders.

    ``runs`` accounts for every run folder under ``root`` (and every run a ``sweep.json`` lists);
    ``records`` are the used ones, the runs in the numbers.
    """

    root: str
    records: list[RunRecord]
    cells: list[Cell]
    varying: list[str]
    notes: list[str]
    figures: list[str] = field(default_factory=list)
    runs: list[RunRecord] = field(default_factory=list)
    sweeps: list[str] = field(default_factory=list)  # the sweep.json files read: a group's expected runs are known
    problems: list[str] = field(default_factory=list)  # unreadable sweep.json files
    groups: dict[str, str] = field(default_factory=dict)  # group label of every run not used, by folder
    # Runs not used that belong to no cell, by group label.
    unattached: list[tuple[str, list[RunRecord]]] = field(default_factory=list)
    # Per (data set, row, model): seed-paired tests and slopes against k (lmix.experiments.report.analysis).
    paired: dict[tuple, list[PairedTest]] = field(default_factory=dict)
    trends: dict[tuple, list[Trend]] = field(default_factory=dict)
    # The declared analysis plans and their results (lmix.experiments.report.planned): the primary
    # analysis where a plan was written before the runs; every other test is exploratory.
    planned: list[PlannedAnalysis] = field(default_factory=list)

    @property
    def not_used(self) -> list[RunRecord]:
        """The runs not in the numbers, by status (failed, running, unfinished, unreadable), then folder."""
        return sorted((r for r in self.runs if r.status != USED), key=lambda r: (STATUSES.index(r.status), r.dir))

    @property
    def complete(self) -> bool:
        """Every run finished and used, and every sweep.json readable (``lmix report --strict``)."""
        return not self.problems and all(r.status == USED for r in self.runs)


def build_report(
    root: str | os.PathLike,
    *,
    paper: str | os.PathLike | None = "auto",
    records: list[RunRecord] | None = None,
    plans: list[DeclaredPlan] | None = None,
) -> Report:
    """Collect, group and test the runs under ``root``.

    Args:
        paper: ``"auto"`` (lmix.experiments.paper's numbers), ``"off"``/None, or a YAML file of reference
            numbers (see ``load_paper_table``).
        records: finished runs to report on instead of collecting those under ``root``.
        plans: analysis plans to compute instead of those the ``sweep.json`` files under ``root`` carry
            (``lmix report --plan SPEC``).

    Raises:
        LmixValueError: no finished runs under ``root``.
    """
    collection = collect_runs(root) if records is None else Collection(list(records))
    records = collection.used
    if not records:
        raise LmixValueError(
            f"lmix report: no finished runs (summary.json) under {str(root)!r}" + _what_there_is(collection)
        )
    lookup = _paper_lookup(paper)
    for r in records:
        r.settings = grouping_settings(r)
    keys = sorted({k for r in records for k in r.settings})
    varying = [k for k in keys if len({r.settings.get(k) for r in records}) > 1]
    cells = _cells(records, varying, lookup)
    _significance(cells)
    _robustness(cells)
    report = Report(str(root), records, cells, varying, _notes(cells), runs=collection.runs)
    report.sweeps, report.problems = collection.sweeps, collection.problems
    report.groups, report.unattached = attach_not_used(collection.runs, records, cells, varying)
    for key, row_cells in _by_row(cells).items():
        report.paired[key] = paired_tests(row_cells, _lmix_reference)
        report.trends[key] = k_trends(row_cells)
    report.planned = [planned_analysis(p, cells) for p in (collection.plans if plans is None else plans)]
    if report.not_used or report.problems:
        report.notes.insert(0, _accounting_note(report))
    return report


def _what_there_is(collection: Collection) -> str:
    """`` (2 failed, 1 unreadable; first, a: unreadable: summary.json: ...)``: the runs there are, and
    why the first failed or unreadable one is not used, for the no-finished-runs error."""
    parts = [counts_text(collection.runs)] if collection.runs else []
    # unreadable records first: those the user can mend
    why = [r for status in (UNREADABLE, FAILED) for r in collection.runs if r.status == status and r.detail]
    if why:
        parts[-1] += f"; {'first, ' if len(why) > 1 else ''}{why[0].dir}: {why[0].status_label}: {why[0].detail}"
    parts += collection.problems[:1]
    return f" ({'; '.join(parts)})" if parts else ""


def _accounting_note(report: Report) -> str:
    missing = report.not_used
    text = f"{len(missing)} of {len(report.runs)} runs are not in the numbers ({counts_text(missing)}); see Runs"
    return text if not report.problems else text + f"; unreadable: {'; '.join(report.problems)}"


def _cells(records: list[RunRecord], varying: list[str], lookup: Any) -> list[Cell]:
    """The runs grouped into cells with their statistics (and the paper's numbers), in report order."""
    groups: dict[tuple, list[RunRecord]] = defaultdict(list)
    for r in records:
        groups[group_key(r, varying)].append(r)
    cells = []
    for (dataset, row, model, method, variant), runs in groups.items():
        runs.sort(key=lambda r: (sort_value(r.seed), r.dir))
        cell = Cell(dataset, model, method, row, variant, runs)
        cell.final = Stats.of(cell.values("final_acc"))
        cell.best = Stats.of(cell.values("best_acc"))
        cell.clean_train = Stats.of(cell.values("final_clean_train_acc"))
        if not row and not variant:
            cell.paper = lookup(dataset, model, method)
        cells.append(cell)
    return sorted(
        cells,
        key=lambda c: (
            c.dataset,
            [sort_value(v) for _, v in c.row],
            c.model,
            method_key(c.method),
            [(k, sort_value(v)) for k, v in c.variant],
        ),
    )


def _by_row(cells: list[Cell]) -> dict[tuple, list[Cell]]:
    """The cells of each table row, by (data set, row settings, model)."""
    by_row: dict[tuple, list[Cell]] = defaultdict(list)
    for c in cells:
        by_row[(c.dataset, c.row, c.model)].append(c)
    return by_row


def _robustness(cells: list[Cell]) -> None:
    """Per cell and eps: FGSM accuracy statistics, and the test against the row's baseline (:func:`versus`)."""
    for c in cells:
        by_eps: dict[float, list[tuple[str, float]]] = defaultdict(list)
        for r in c.runs:
            for eps, acc in fgsm_curve(r).items():
                by_eps[eps].append((r.dir, acc))
        c.fgsm = [
            FgsmPoint(eps, [a for _, a in pts], [d for d, _ in pts], Stats.of([a for _, a in pts]))
            for eps, pts in sorted(by_eps.items())
        ]
    for row_cells in _by_row(cells).values():
        base = next((c for c in row_cells if c.method == "none" and not c.variant), None)
        if base is None or not base.fgsm:
            continue
        base_eps = {pt.eps_255 for pt in base.fgsm}
        for c in row_cells:
            if c is base:
                continue
            for pt in c.fgsm:
                if pt.eps_255 in base_eps:
                    pt.vs_none = versus(c, base, pt.eps_255)


def _lmix_reference(cell: Cell, candidates: list[Cell]) -> Cell | None:
    """The LMix cell to test ``cell`` against: same mixing settings where possible, else plain LMix."""
    others = [c for c in candidates if c is not cell]
    if not others:
        return None
    mine = dict(cell.variant)

    def score(c: Cell) -> tuple[int, int, int]:
        theirs = dict(c.variant)
        shared = set(mine) & set(theirs)
        disagree = sum(not same_value(mine[k], theirs[k]) for k in shared)
        matched = sum(same_value(mine[k], theirs[k]) for k in shared)
        extra = len(set(theirs) - set(mine))
        return (disagree, extra, -matched)

    return min(others, key=score)


def _significance(cells: list[Cell]) -> None:
    for row_cells in _by_row(cells).values():
        base = next((c for c in row_cells if c.method == "none" and not c.variant), None)
        lmix_cells = [c for c in row_cells if c.method == "lmix"]
        for c in row_cells:
            if base is not None and c is not base:
                c.vs_none = {k: versus(c, base, k) for k in ("final_acc", "best_acc")}
            if c.method == "lmix" and not c.variant:
                continue  # the reference itself
            ref = _lmix_reference(c, lmix_cells)
            if ref is not None:
                c.lmix_ref = ref.column_label
                c.vs_lmix = {k: versus(c, ref, k) for k in ("final_acc", "best_acc")}


def _notes(cells: list[Cell]) -> list[str]:
    notes = []
    for c in cells:
        seeds = Counter(r.seed for r in c.runs)
        dup = sorted(str(s) for s, n in seeds.items() if n > 1)
        if dup:
            notes.append(
                f"{c.dataset} {c.row_label} {c.column_label}: seed(s) {', '.join(dup)} appear in several runs "
                f"({', '.join(r.dir for r in c.runs if str(r.seed) in dup)}); each run counts as a sample"
            )
    shown = {(c.dataset, c.paper.table) for c in cells if c.paper is not None}
    for dataset, table in sorted(shown):
        epochs = sorted(
            {r.summary.get("epochs") for c in cells if c.dataset == dataset and c.paper for r in c.runs}, key=sort_value
        )
        paper_epochs = PAPER_EPOCHS.get(dataset)
        if paper_epochs is not None and any(e != paper_epochs for e in epochs):
            notes.append(
                f"{dataset}: the paper's numbers ({table}) come from {paper_epochs}-epoch runs; these runs have "
                f"{', '.join(str(e) for e in epochs)} epochs, so the comparison is not like for like"
            )
    return notes


# ---------------------------------------------------------------------------------------------
# paper numbers
# ---------------------------------------------------------------------------------------------
def load_paper_table(path: str | os.PathLike) -> dict[tuple[str, str, str], PaperResult]:
    """Reference numbers from YAML: a list of ``{dataset, model, method, acc}`` (optional ``final``,
    ``best``, ``table``) mappings."""
    path = Path(path)
    data = read_yaml(path, what="--paper file")
    if not isinstance(data, list):
        raise LmixValueError(f"--paper file {str(path)!r} must hold a list of {{dataset, model, method, acc}} mappings")
    out = {}
    for i, entry in enumerate(data):
        result = _paper_entry(entry, f"--paper file {str(path)!r}: entry {i}", path.name)
        out[(result.dataset, result.model, result.method)] = result
    return out


def _paper_entry(e: Any, where: str, default_table: str) -> PaperResult:
    """One entry of a --paper file, checked: names as text, accuracies as finite numbers."""
    need = {"dataset", "model", "method", "acc"}
    if not isinstance(e, dict) or not need <= set(e) or set(e) - need - {"final", "best", "table"}:
        shown = repr(e) if len(repr(e)) <= 120 else repr(e)[:117] + "..."
        raise LmixValueError(
            f"{where} must have keys dataset, model, method, acc (optional final, best, table), got {shown}"
        )
    for key in ("dataset", "model", "method", "table"):
        if key in e and (not isinstance(e[key], str) or not e[key]):
            raise LmixValueError(f"{where}: {key} must be a name (text), got {e[key]!r}")
    for key in ("acc", "final", "best"):
        if (key == "acc" or e.get(key) is not None) and not is_finite_real(e.get(key)):
            raise LmixValueError(f"{where}: {key} must be an accuracy in percent (a number), got {e.get(key)!r}")
    final, best = e.get("final"), e.get("best")
    return PaperResult(
        str(e.get("table", default_table)),
        e["dataset"],
        e["model"],
        e["method"],
        float(e["acc"]),
        None if final is None else float(final),
        None if best is None else float(best),
        "final+best" if final is not None or best is not None else "unspecified",
    )


def _paper_lookup(paper: str | os.PathLike | None):
    if paper is None or str(paper) in ("off", "none"):
        return lambda *key: None
    if str(paper) == "auto":
        return paper_result
    table = load_paper_table(paper)
    return lambda *key: table.get(tuple(key))


def report_rows(report: Report, dataset: str) -> list[tuple[tuple, str, list[Cell]]]:
    """The table rows of a data set: ``((row settings, model), row label, cells)``, in report order."""
    rows: dict[tuple, list[Cell]] = {}
    for c in report.cells:
        if c.dataset == dataset:
            rows.setdefault((c.row, c.model), []).append(c)
    return [(key, cs[0].row_label, cs) for key, cs in rows.items()]


def cell_order(c: Cell) -> tuple:
    """Sort key of the cells of one row: method (paper order), then mixing settings."""
    return (method_key(c.method), [(k, sort_value(v)) for k, v in c.variant])


def row_regime(cells: list[Cell]) -> tuple[str, float | None]:
    """A row's regime text and its baseline's mean clean training accuracy (see ``OVERFIT_THRESHOLD``)."""
    base = next((c for c in cells if c.method == "none" and not c.variant), None)
    if base is None:
        return "no baseline (none) run", None
    if base.clean_train is None:
        return "unknown (no clean training accuracy: eval_train = 0)", None
    acc = base.clean_train.mean
    if acc >= OVERFIT_THRESHOLD:
        return f"overfits (baseline clean train acc {acc:.1f}% >= {OVERFIT_THRESHOLD:g}%)", acc
    return f"underfits (baseline clean train acc {acc:.1f}% < {OVERFIT_THRESHOLD:g}%): mixing is expected to lose", acc


# Run conditions a table states: how the runs mixed, in which precision, on what, with which code.
CONDITION_KEYS = ("mix_mode", "amp", "device", "device_name", "lmix_version", "torch_version", "git_commit")


def run_conditions(runs: Sequence[RunRecord]) -> dict[str, dict[str, int]]:
    """Distinct values (with their run counts) of each of ``CONDITION_KEYS`` over ``runs``.

    ``mix_mode`` is the run's ``mix_mode`` setting, or its method's default mode (methods
    without one, e.g. ``none``, are left out); the other keys come from ``summary.json``
    (``amp``, ``device`` and the provenance fields), ``"not recorded"`` where a summary lacks one.
    Keys with no value at all (e.g. mix_mode over baseline runs only) are left out.
    """
    out: dict[str, dict[str, int]] = {}
    for key in CONDITION_KEYS:
        counts: Counter[str] = Counter()
        for r in runs:
            if key == "mix_mode":
                mode = r.config.get("mix_mode") or mixer_defaults(r.method).get("mode")
                if mode is not None:
                    counts[str(mode)] += 1
            else:
                value = r.summary.get(key)
                counts["not recorded" if value is None else str(value)] += 1
        if counts and set(counts) != {"not recorded"} or key in ("amp", "device"):
            out[key] = dict(sorted(counts.items()))
    return out


def report_datasets(report: Report) -> list[str]:
    """The report's data sets, sorted."""
    return sorted({c.dataset for c in report.cells})
