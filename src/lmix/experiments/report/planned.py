"""A declared analysis plan, computed: its tests, their intervals, and Holm's adjustment over its family.

A plan (:mod:`lmix.experiments.plan`) covers the table rows (data set, row settings, model) that
hold its sweep's runs. In each such row, every comparison is resolved to the row's cells among
those runs and tested on every primary metric: a difference ``a - b`` by the paired t-test over
the seeds both have (:func:`~lmix.experiments.report.analysis.paired_test`), ``{each: b}`` as one
difference per other group, ``{slope: k}`` as the seed-blocked slope over FMix (k = 0) and LMix
at every k (:func:`~lmix.experiments.report.analysis.k_trend`). Holm's adjustment runs over the
declared family: ``all`` (every test of the row) or ``per_metric`` (the tests of one metric). A
test that cannot be computed (a group without finished runs, fewer than two pairs) has no p but
still counts in its family's size, so that missing runs never make the adjustment milder.

A plan written before the runs (``written: before_runs``) is the report's primary analysis; one
written after them (``after_runs``) is computed the same way and labelled post hoc.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmix.errors import LmixValueError
from lmix.experiments.plan import Comparison, Group, metric_name
from lmix.experiments.report.analysis import holm, k_families, k_trend, metric_label, paired_test
from lmix.experiments.report.cells import Cell
from lmix.experiments.report.collect import DeclaredPlan
from lmix.experiments.report.settings import MIXER_SETTINGS, mixer_defaults, same_value

__all__ = ["PlannedTest", "Family", "PlannedRow", "PlannedAnalysis", "planned_analysis", "plans_from_specs"]


@dataclass(frozen=True)
class PlannedTest:
    """One test of a plan: a comparison on one primary metric.

    Attributes:
        comparison: ``"LMix - FMix"`` (groups by their column labels) or ``"slope in k"``.
        metric: ``"final_acc"`` or an FGSM eps in 1/255.
        estimate: the mean paired difference, or the slope per unit k (accuracy points; None: missing).
        ci95: its 95% t half-width (None: missing or no degrees of freedom).
        p: two-sided p (None: not computed).
        p_adjusted: Holm-adjusted p within the test's family (None where ``p`` is None).
        n: pairs of a difference, runs of a slope.
        ks: the k values of a slope (empty for a difference).
        missing: why there is no number ("" where there is one).
    """

    comparison: str
    metric: str | float
    estimate: float | None
    ci95: float | None
    p: float | None
    p_adjusted: float | None = None
    n: int = 0
    ks: tuple[float, ...] = ()
    missing: str = ""

    @property
    def label(self) -> str:
        """``LMix - FMix, FGSM eps 2``."""
        return f"{self.comparison}, {metric_label(self.metric)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "comparison": self.comparison,
            "metric": metric_name(self.metric),
            "estimate": self.estimate,
            "ci95": self.ci95,
            "p": self.p,
            "p_holm": self.p_adjusted,
            "n": self.n,
            "ks": list(self.ks),
            "missing": self.missing or None,
        }


@dataclass(frozen=True)
class Family:
    """The tests Holm's adjustment runs over together.

    Attributes:
        name: ``"all"`` or a metric's label (``per_metric``).
        tests: its tests, missing ones included (they count in its size).
    """

    name: str
    tests: tuple[PlannedTest, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": len(self.tests),
            "members": [t.label for t in self.tests],
            "tests": [t.to_dict() for t in self.tests],
        }


@dataclass(frozen=True)
class PlannedRow:
    """A plan computed on one table row."""

    dataset: str
    row_label: str
    families: tuple[Family, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "row": self.row_label, "families": [f.to_dict() for f in self.families]}


@dataclass(frozen=True)
class PlannedAnalysis:
    """A declared plan and its results, row by row (no row: none of its runs has finished)."""

    declared: DeclaredPlan
    rows: tuple[PlannedRow, ...]

    @property
    def status(self) -> str:
        """``"primary"`` (written before the runs) or ``"post hoc"``."""
        return "primary" if self.declared.plan.confirmatory else "post hoc"

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.declared.source,
            "status": self.status,
            "plan": self.declared.plan.to_dict(),
            "rows": [r.to_dict() for r in self.rows],
        }


def planned_analysis(declared: DeclaredPlan, cells: Sequence[Cell]) -> PlannedAnalysis:
    """Compute ``declared``'s plan over the report's cells (see the module docstring)."""
    rows: dict[tuple, list[Cell]] = {}
    for c in cells:
        if any(r.dir in declared.dirs for r in [*c.runs, *c.not_used]):
            rows.setdefault((c.dataset, c.row, c.model), []).append(c)
    out = []
    for row_cells in rows.values():
        tests = [t for comparison in declared.plan.comparisons for t in _tests(comparison, row_cells, declared)]
        out.append(PlannedRow(row_cells[0].dataset, row_cells[0].row_label, _families(tests, declared)))
    return PlannedAnalysis(declared, tuple(out))


def _families(tests: list[PlannedTest], declared: DeclaredPlan) -> tuple[Family, ...]:
    """The tests grouped into the plan's families, each Holm-adjusted over its whole size."""
    plan = declared.plan
    groups = {"all": tests} if plan.family == "all" else {metric_label(m): [] for m in plan.primary}
    if plan.family != "all":
        for t in tests:
            groups[metric_label(t.metric)].append(t)
    families = []
    for name, members in groups.items():
        # a test without a p counts as p = 1: missing runs must not shrink the family
        adjusted = holm([1.0 if t.p is None else t.p for t in members])
        members = [_adjusted(t, q) for t, q in zip(members, adjusted)]
        families.append(Family(name, tuple(members)))
    return tuple(families)


def _adjusted(t: PlannedTest, q: float | None) -> PlannedTest:
    return PlannedTest(
        t.comparison, t.metric, t.estimate, t.ci95, t.p, None if t.p is None else q, t.n, t.ks, t.missing
    )


def _tests(comparison: Comparison, cells: list[Cell], declared: DeclaredPlan) -> list[PlannedTest]:
    """Every test of one comparison in one row, metric by metric."""
    mine = [c for c in cells if any(r.dir in declared.dirs for r in c.runs)]
    metrics = declared.plan.primary
    if comparison.kind == "slope":
        return [_slope(mine, m) for m in metrics]
    ref = _find(comparison.b, mine)  # type: ignore[arg-type]
    if comparison.kind == "each":
        others = [c for c in mine if c is not ref] if ref is not None else []
        if not others:
            return [_missing(comparison.label, m, _why(comparison.b, ref)) for m in metrics]  # type: ignore[arg-type]
        return [_difference(c, ref, c.column_label, ref.column_label, m) for c in others for m in metrics]  # type: ignore[arg-type]
    a = _find(comparison.a, mine)  # type: ignore[arg-type]
    label_a = a.column_label if a is not None else comparison.a.label  # type: ignore[union-attr]
    label_b = ref.column_label if ref is not None else comparison.b.label  # type: ignore[union-attr]
    return [_difference(a, ref, label_a, label_b, m) for m in metrics]


def _difference(a: Cell | None, b: Cell | None, label_a: str, label_b: str, metric: str | float) -> PlannedTest:
    label = f"{label_a} - {label_b}"
    if a is None or b is None:
        return _missing(label, metric, f"no finished runs of {label_a if a is None else label_b}")
    t = paired_test(a, b, metric)
    if t is None or t.p is None:
        return _missing(label, metric, "fewer than two seeds shared")
    return PlannedTest(label, metric, t.diff, t.ci95, t.p, n=len(t.seeds))


def _slope(cells: list[Cell], metric: str | float) -> PlannedTest:
    label = "slope in k"
    family = next((m for _, m in k_families(cells) if all(set(dict(c.variant)) <= {"k"} for _, c in m)), None)
    trend = None if family is None else k_trend("LMix", family, metric)
    if trend is None or trend.p is None:
        return _missing(label, metric, "fewer than two k values with finished runs, or too few runs to fit")
    ci = None if math.isnan(trend.ci95) else trend.ci95
    return PlannedTest(label, metric, trend.slope, ci, trend.p, n=trend.n, ks=trend.ks)


def _missing(label: str, metric: str | float, why: str) -> PlannedTest:
    return PlannedTest(label, metric, None, None, None, missing=why)


def _why(group: Group, found: Cell | None) -> str:
    return f"no finished runs of {group.label}" if found is None else f"no finished group besides {group.label}"


def _find(group: Group, cells: list[Cell]) -> Cell | None:
    """The cell of ``group``: its method, its named settings, and no other setting off its default."""
    defaults = mixer_defaults(group.method)
    named = {}
    for key, value in group.settings:
        param = MIXER_SETTINGS.get(key, key)
        named[key] = None if param in defaults and same_value(value, defaults[param]) else value
    for c in cells:
        if c.method != group.method or set(dict(c.variant)) - set(named):
            continue
        if all(same_value(c.runs[0].settings.get(k), v) for k, v in named.items()):
            return c
    return None


def plans_from_specs(specs: Sequence[str], root: str | os.PathLike) -> list[DeclaredPlan]:
    """The plans the sweep specs ``specs`` declare, each over the spec's runs under ``root`` (``--plan``).

    For run folders without a ``sweep.json`` that carries the plan: records copied without it,
    or an out dir whose ``sweep.json`` another spec wrote last. The spec's runs are its expanded
    run folders with ``root`` as the out dir.

    Raises:
        LmixValueError: a spec that declares no analysis, or none of whose runs is under ``root``.
        FileNotFoundError: no such spec.
    """
    from lmix.experiments.catalog import resolve_config
    from lmix.experiments.sweep import expand, load_spec

    out = []
    for name in specs:
        spec = load_spec(resolve_config(name, kind="sweep"))
        if spec.analysis is None:
            raise LmixValueError(f"lmix report --plan {name}: the spec declares no analysis (no analysis: block)")
        dirs = frozenset(run.name for run in expand(spec, root))
        if not any((Path(root) / d).is_dir() for d in dirs):
            raise LmixValueError(
                f"lmix report --plan {name}: none of the spec's {len(dirs)} runs is under {str(root)!r} "
                f"(expected folders such as {sorted(dirs)[0]})"
            )
        out.append(DeclaredPlan(spec.analysis, f"--plan {name}", dirs))
    return out
