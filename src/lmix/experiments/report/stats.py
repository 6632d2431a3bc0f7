"""Grouping runs into cells and the statistics of a report.

Runs are grouped into cells by (data set, model, method, every other setting that differs
between runs, except the seed); a cell's numbers are the mean, sample standard deviation
(ddof 1), count and 95% confidence half-width (Student t) of its runs' ``final_acc`` and
``best_acc``. Significance: per row, Welch's two-sided t-test of every cell against the row's
no-augmentation cell (``none``) and against its LMix reference; the same comparisons paired by
seed, and slopes against LMix's k (:mod:`lmix.experiments.report.analysis`). Regime: whether the
row's baseline fits its training set (``OVERFIT_THRESHOLD``).
"""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmix.errors import LmixValueError
from lmix.experiments.io import read_yaml
from lmix.experiments.paper import PAPER_EPOCHS, PaperResult, paper_result
from lmix.experiments.report.analysis import PairedTest, Trend, k_trends, paired_tests
from lmix.experiments.report.collect import RunRecord, collect_failed, collect_runs, fgsm_curve
from lmix.experiments.report.settings import (
    MIXER_SETTINGS,
    format_setting,
    grouping_settings,
    method_display,
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
    "regimes",
    "run_conditions",
    "report_rows",
    "report_datasets",
    "row_regime",
    "cell_order",
    "CONDITION_KEYS",
    "OVERFIT_THRESHOLD",
]

OVERFIT_THRESHOLD = 99.0  # % clean training accuracy of the baseline at which we call it "overfits"


@dataclass(frozen=True)
class Stats:
    """mean, sample std (ddof 1; nan for n = 1), n, and the 95% CI half-width (t; nan for n = 1)."""

    mean: float
    std: float
    n: int
    ci95: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats | None:
        vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
        if not vals:
            return None
        n = len(vals)
        mean = sum(vals) / n
        if n < 2:
            return cls(mean, math.nan, n, math.nan)
        from scipy import stats

        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
        return cls(mean, std, n, float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n))

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": _nan_to_none(self.std), "n": self.n, "ci95": _nan_to_none(self.ci95)}


@dataclass
class FgsmPoint:
    """FGSM accuracy of a cell's runs at one eps (from their ``fgsm.json``).

    Attributes:
        eps_255: the perturbation size in 1/255 units.
        values: accuracy (%) per run attacked at this eps, in the cell's run order.
        dirs: those runs' folders.
        stats: mean, std, n and 95% CI half-width of ``values``.
        p_vs_none: Welch's two-sided p against the row's baseline (``none``) at the same eps.
    """

    eps_255: float
    values: list[float]
    dirs: list[str]
    stats: Stats | None
    p_vs_none: float | None = None


@dataclass
class Cell:
    """The runs of one (data set, row settings, model, method, column settings) group."""

    dataset: str
    model: str
    method: str
    row: tuple[tuple[str, Any], ...]  # varying non-mixing settings, e.g. (("train_subset", 500),)
    variant: tuple[tuple[str, Any], ...]  # varying mixing settings, e.g. (("alpha", 0.2),)
    runs: list[RunRecord]
    final: Stats | None = None
    best: Stats | None = None
    clean_train: Stats | None = None
    paper: PaperResult | None = None
    p_vs_none: dict[str, float | None] | None = None
    p_vs_lmix: dict[str, float | None] | None = None
    lmix_ref: str | None = None
    failed: list[RunRecord] = field(default_factory=list)  # failed runs of this group (not in the statistics)
    fgsm: list[FgsmPoint] = field(default_factory=list)  # FGSM accuracy per eps (runs with fgsm.json), eps order

    @property
    def row_label(self) -> str:
        return self.model + (
            " (" + ", ".join(f"{k}={format_setting(v)}" for k, v in self.row) + ")" if self.row else ""
        )

    @property
    def column_label(self) -> str:
        return method_display(self.method) + (
            " " + ", ".join(f"{k}={format_setting(v)}" for k, v in self.variant) if self.variant else ""
        )

    def values(self, key: str) -> list[float]:
        return [r.summary[key] for r in self.runs if r.summary.get(key) is not None]


@dataclass
class Report:
    """Everything the report shows, computed once from the run folders."""

    root: str
    records: list[RunRecord]
    cells: list[Cell]
    varying: list[str]
    unfinished: list[str]
    notes: list[str]
    figures: list[str] = field(default_factory=list)
    # Failed runs (failed.json, no summary) per group label, in report order; none are in the statistics.
    failed: list[tuple[str, list[RunRecord]]] = field(default_factory=list)
    # Per (data set, row, model): seed-paired tests and slopes against k (lmix.experiments.report.analysis).
    paired: dict[tuple, list[PairedTest]] = field(default_factory=dict)
    trends: dict[tuple, list[Trend]] = field(default_factory=dict)


def build_report(
    root: str | os.PathLike, *, paper: str | os.PathLike | None = "auto", records: list[RunRecord] | None = None
) -> Report:
    """Collect, group and test the runs under ``root``.

    Args:
        paper: ``"auto"`` (lmix.experiments.paper's numbers), ``"off"``/None, or a YAML file of reference
            numbers (see ``load_paper_table``).

    Raises:
        ValueError: no finished runs under ``root``.
    """
    unfinished: list[str] = []
    failed: list[RunRecord] = []
    if records is None:
        records, unfinished = collect_runs(root)
        failed = collect_failed(root)
    if not records:
        also = f" ({len(failed)} failed run(s) with failed.json)" if failed else ""
        raise LmixValueError(f"lmix report: no finished runs (summary.json) under {str(root)!r}{also}")
    lookup = _paper_lookup(paper)
    for r in records:
        r.settings = grouping_settings(r)
    keys = sorted({k for r in records for k in r.settings})
    varying = [k for k in keys if len({r.settings.get(k) for r in records}) > 1]

    groups: dict[tuple, list[RunRecord]] = defaultdict(list)
    for r in records:
        groups[_group_key(r, varying)].append(r)

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
    cells.sort(
        key=lambda c: (
            c.dataset,
            [sort_value(v) for _, v in c.row],
            c.model,
            method_key(c.method),
            [(k, sort_value(v)) for k, v in c.variant],
        )
    )
    _significance(cells)
    _robustness(cells)
    notes = _notes(records, cells, unfinished)
    report = Report(str(root), records, cells, varying, unfinished, notes)
    report.failed = _group_failed(failed, records, cells, varying)
    by_row: dict[tuple, list[Cell]] = defaultdict(list)
    for c in cells:
        by_row[(c.dataset, c.row, c.model)].append(c)
    for key, row_cells in by_row.items():
        report.paired[key] = paired_tests(row_cells, _lmix_reference)
        report.trends[key] = k_trends(row_cells)
    if report.failed:
        n = sum(len(runs) for _, runs in report.failed)
        notes.insert(0, f"{n} failed run(s) (failed.json, no summary.json) are not included; see Failed runs")
    return report


def _group_key(r: RunRecord, varying: list[str]) -> tuple:
    """(data set, row, model, method, variant) of a run: its cell."""
    row = tuple((k, r.settings.get(k)) for k in varying if k not in MIXER_SETTINGS and r.settings.get(k) is not None)
    variant = tuple((k, r.settings.get(k)) for k in varying if k in MIXER_SETTINGS and r.settings.get(k) is not None)
    return (r.dataset, row, r.model, r.method, variant)


def _group_failed(
    failed: list[RunRecord], records: list[RunRecord], cells: list[Cell], varying: list[str]
) -> list[tuple[str, list[RunRecord]]]:
    """Attach failed runs to the cell they would have been in; list the others under their own label.

    A failed run joins a cell only if it also agrees with the finished runs on every setting they
    share (a failed ``lr: 99`` run is not counted against the ``lr: 0.1`` cell).
    """
    if not failed:
        return []
    common: dict[str, Any] = {}
    for k in {k for r in records for k in r.settings} - set(varying):
        common[k] = next((r.settings[k] for r in records if k in r.settings), None)
    by_key = {(c.dataset, c.row, c.model, c.method, c.variant): c for c in cells}
    unmatched: dict[str, list[RunRecord]] = {}
    for r in failed:
        r.settings = grouping_settings(r)
        key = _group_key(r, varying)
        other = [
            (k, v)
            for k, v in sorted(r.settings.items())
            if k not in varying and v is not None and not same_value(v, common.get(k))
        ]
        cell = by_key.get(key) if not other else None
        if cell is not None:
            cell.failed.append(r)
            continue
        extra = list(key[1] + key[4]) + other
        label = (
            f"{r.dataset}, {r.model}, {method_display(r.method)}"
            + (" (" + ", ".join(f"{k}={format_setting(v)}" for k, v in extra) + ")" if extra else "")
            + " [no finished run in this group]"
        )
        unmatched.setdefault(label, []).append(r)
    matched = [(f"{c.dataset}, {c.row_label}, {c.column_label}", c.failed) for c in cells if c.failed]
    return matched + sorted(unmatched.items())


def _welch(a: Sequence[float], b: Sequence[float]) -> float | None:
    if len(a) < 2 or len(b) < 2:
        return None
    import warnings

    from scipy import stats

    if len(set(a)) == 1 and len(set(b)) == 1:  # both constant: t is undefined
        return 1.0 if same_value(a[0], b[0]) else 0.0
    with warnings.catch_warnings():  # scipy warns about precision for near-constant samples
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return None if math.isnan(p) else p


def _robustness(cells: list[Cell]) -> None:
    """Per cell and eps: FGSM accuracy statistics, and Welch's test against the row's baseline."""
    for c in cells:
        by_eps: dict[float, list[tuple[str, float]]] = defaultdict(list)
        for r in c.runs:
            for eps, acc in fgsm_curve(r).items():
                by_eps[eps].append((r.dir, acc))
        c.fgsm = [
            FgsmPoint(eps, [a for _, a in pts], [d for d, _ in pts], Stats.of([a for _, a in pts]))
            for eps, pts in sorted(by_eps.items())
        ]
    by_row: dict[tuple, list[Cell]] = defaultdict(list)
    for c in cells:
        by_row[(c.dataset, c.row, c.model)].append(c)
    for row_cells in by_row.values():
        base = next((c for c in row_cells if c.method == "none" and not c.variant), None)
        if base is None or not base.fgsm:
            continue
        base_at = {pt.eps_255: pt.values for pt in base.fgsm}
        for c in row_cells:
            if c is base:
                continue
            for pt in c.fgsm:
                if pt.eps_255 in base_at:
                    pt.p_vs_none = _welch(pt.values, base_at[pt.eps_255])


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
    by_row: dict[tuple, list[Cell]] = defaultdict(list)
    for c in cells:
        by_row[(c.dataset, c.row, c.model)].append(c)
    for row_cells in by_row.values():
        base = next((c for c in row_cells if c.method == "none" and not c.variant), None)
        lmix_cells = [c for c in row_cells if c.method == "lmix"]
        for c in row_cells:
            if base is not None and c is not base:
                c.p_vs_none = {k: _welch(c.values(k), base.values(k)) for k in ("final_acc", "best_acc")}
            if c.method == "lmix" and not c.variant:
                continue  # the reference itself
            ref = _lmix_reference(c, lmix_cells)
            if ref is not None:
                c.lmix_ref = ref.column_label
                c.p_vs_lmix = {k: _welch(c.values(k), ref.values(k)) for k in ("final_acc", "best_acc")}


def _notes(records: list[RunRecord], cells: list[Cell], unfinished: list[str]) -> list[str]:
    notes = []
    if unfinished:
        notes.append(
            f"{len(unfinished)} unfinished run(s) without summary.json are not included: {', '.join(unfinished[:5])}"
            + (" ..." if len(unfinished) > 5 else "")
        )
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
        epochs = sorted({r.summary.get("epochs") for c in cells if c.dataset == dataset and c.paper for r in c.runs})
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
    for i, e in enumerate(data):
        need = {"dataset", "model", "method", "acc"}
        if not isinstance(e, dict) or not need <= set(e) or set(e) - need - {"final", "best", "table"}:
            raise LmixValueError(
                f"--paper file {str(path)!r}: entry {i} must have keys dataset, model, method, acc "
                f"(optional final, best, table), got {e!r}"
            )
        final, best = e.get("final"), e.get("best")
        out[(e["dataset"], e["model"], e["method"])] = PaperResult(
            str(e.get("table", path.name)),
            e["dataset"],
            e["model"],
            e["method"],
            float(e["acc"]),
            None if final is None else float(final),
            None if best is None else float(best),
            "final+best" if final is not None or best is not None else "unspecified",
        )
    return out


def _paper_lookup(paper: str | os.PathLike | None):
    if paper is None or str(paper) in ("off", "none"):
        return lambda *key: None
    if str(paper) == "auto":
        return paper_result
    table = load_paper_table(paper)
    return lambda *key: table.get(tuple(key))


def _nan_to_none(x: float) -> float | None:
    return None if x is None or math.isnan(x) else x


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


def regimes(report: Report) -> list[tuple[str, str, str]]:
    """(data set, row label, regime text) for every table row."""
    out = []
    for dataset in report_datasets(report):
        for _, label, cells in report_rows(report, dataset):
            out.append((dataset, label, row_regime(cells)[0]))
    return out


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
