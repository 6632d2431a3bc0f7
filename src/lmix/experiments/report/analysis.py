"""Seed-paired comparisons and the effect of LMix's ``k``: the analyses a k ablation needs.

In lmix a run's seed fixes everything that is not the method: the stratified training subset,
the model's initial weights and the order of the batches. Runs of two methods with the same
seed are therefore a matched pair, and a paired test (``scipy.stats.ttest_rel`` on the per-seed
differences) removes the seed-to-seed spread that an unpaired test has to carry.

``versus``: the report's one test of a cell against a reference (its p vs none, vs LMix, and per
FGSM eps): :func:`paired_test` wherever both cells' runs have the same seeds, one run per seed,
so that it is the p of the "Paired by seed" table; Welch's unpaired test (:func:`welch_p`) only
where they cannot be paired (the seeds differ, or a seed repeats within a cell), and labelled so.

``k_trends`` fits accuracy against ``k`` over the LMix cells of a row that differ only in
``k`` (FMix with the same other settings joins as k = 0, since FMix's masks are LMix's at
k = 0 bit for bit), with one intercept per seed where seeds repeat across k: the slope, its
95% interval and p, per metric (final accuracy and FGSM accuracy at every eps).
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from lmix.experiments.report.cells import Cell
from lmix.experiments.report.collect import fgsm_curve
from lmix.experiments.report.settings import mixer_defaults, same_value, sort_value

__all__ = [
    "PAIRED",
    "WELCH",
    "Versus",
    "versus",
    "welch_p",
    "PairedTest",
    "Trend",
    "metric_label",
    "paired_test",
    "paired_tests",
    "k_trend",
    "k_trends",
    "k_families",
    "holm",
    "values_by_seed",
]

FINAL = "final_acc"
PAIRED = "paired"
WELCH = "welch"


def metric_label(metric: str | float) -> str:
    """``"final"`` for final accuracy (``"best"`` for best), ``"FGSM eps 4"`` for FGSM accuracy at eps 4/255."""
    if isinstance(metric, str):
        return metric.removesuffix("_acc")
    return f"FGSM eps {float(metric):g}"


@dataclass(frozen=True)
class PairedTest:
    """``a`` minus ``b`` over the seeds both have, for one metric (accuracy points).

    Attributes:
        a, b: column labels of the two cells (``b`` is the reference: Baseline or an LMix cell).
        metric: ``"final_acc"`` or an FGSM eps in 1/255.
        seeds: the shared seeds, sorted.
        diff: mean of the per-seed differences.
        ci95: 95% t half-width of ``diff`` (nan for one pair).
        p: two-sided paired t-test p (None for fewer than 2 pairs).
        p_holm: Holm-adjusted p within the row's comparisons against the same reference kind
            and metric (None where not adjusted).
        family: the comparisons (``"a - b"``) of ``p_holm``'s Holm family, this one included.
    """

    a: str
    b: str
    metric: str | float
    seeds: tuple[Any, ...]
    diff: float
    ci95: float
    p: float | None
    p_holm: float | None = None
    family: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "metric": self.metric,
            "seeds": list(self.seeds),
            "diff": self.diff,
            "ci95": None if math.isnan(self.ci95) else self.ci95,
            "p": self.p,
            "p_holm": self.p_holm,
            "holm_family": {"size": len(self.family), "members": list(self.family)}
            if self.p_holm is not None
            else None,
        }


@dataclass(frozen=True)
class Trend:
    """Least-squares slope of a metric against k (accuracy points per unit k).

    Attributes:
        family: the column label of the k family's default-k cell (e.g. ``"LMix"``).
        metric: ``"final_acc"`` or an FGSM eps in 1/255.
        ks: the k values present (0 = FMix where it joined).
        n: runs in the fit.
        blocked: True when the fit has one intercept per seed (seeds repeated across k).
        slope: points per unit k.
        ci95: 95% t half-width of ``slope`` (nan when the fit has no residual degrees of freedom).
        p: two-sided p of slope = 0 (None without residual degrees of freedom).
        means: mean of the metric per k, in ``ks`` order.
    """

    family: str
    metric: str | float
    ks: tuple[float, ...]
    n: int
    blocked: bool
    slope: float
    ci95: float
    p: float | None
    means: tuple[float, ...]

    @property
    def span(self) -> float:
        """Width of the k range the fit covers."""
        return self.ks[-1] - self.ks[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "metric": self.metric,
            "ks": list(self.ks),
            "means": list(self.means),
            "n": self.n,
            "blocked": self.blocked,
            "slope": self.slope,
            "ci95": None if math.isnan(self.ci95) else self.ci95,
            "p": self.p,
            "change_over_range": self.slope * self.span,
            "change_over_range_ci95": None if math.isnan(self.ci95) else self.ci95 * self.span,
        }


def _value(run: Any, metric: str | float) -> float | None:
    """A run's value of ``metric``: a summary key (``final_acc``, ``best_acc``) or an FGSM eps in 1/255."""
    v = run.summary.get(metric) if isinstance(metric, str) else fgsm_curve(run).get(float(metric))
    return None if v is None or math.isnan(float(v)) else float(v)


def values_by_seed(cell: Cell, metric: str | float) -> dict[Any, float]:
    """A cell's value of ``metric`` per seed (the first run of a seed wins)."""
    out: dict[Any, float] = {}
    for r in cell.runs:
        if r.seed is None or r.seed in out:
            continue
        v = _value(r, metric)
        if v is not None:
            out[r.seed] = v
    return out


@dataclass(frozen=True)
class Versus:
    """The report's test of a cell against a reference on one metric (:func:`versus`).

    Attributes:
        p: two-sided p (None: too few runs or pairs, fewer than 2).
        test: :data:`PAIRED` (the paired t-test over the seeds, :func:`paired_test`) or :data:`WELCH`
            (Welch's unpaired t-test, :func:`welch_p`).
        why: why the test is unpaired (``"seeds differ"``, ``"a seed repeats"``); empty when paired.
    """

    p: float | None
    test: str
    why: str = ""

    @property
    def label(self) -> str:
        """``"paired t-test"`` or ``"Welch (unpaired: seeds differ)"``."""
        return "paired t-test" if self.test == PAIRED else f"Welch (unpaired: {self.why})"


def versus(a: Cell, b: Cell, metric: str | float) -> Versus:
    """``a`` against ``b`` on ``metric``: paired by seed where every run of each has a seed of its own and
    both have the same seeds (then ``p`` is :func:`paired_test`'s, the "Paired by seed" table's), else
    Welch's unpaired test over all their runs, with why it could not be paired."""
    runs = [[r for r in c.runs if _value(r, metric) is not None] for c in (a, b)]
    seeds = [[r.seed for r in rs] for rs in runs]
    if any(len(set(s)) < len(s) for s in seeds):
        why = "a seed repeats"
    elif None in seeds[0] + seeds[1] or set(seeds[0]) != set(seeds[1]):
        why = "seeds differ"
    else:
        t = paired_test(a, b, metric)
        return Versus(None if t is None else t.p, PAIRED)
    values = [[_value(r, metric) for r in rs] for rs in runs]
    return Versus(welch_p(values[0], values[1]), WELCH, why)  # type: ignore[arg-type]


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Welch's two-sided unpaired t-test p (``scipy.stats.ttest_ind(equal_var=False)``); None for fewer than
    2 values in either sample."""
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy import stats

    if len(set(a)) == 1 and len(set(b)) == 1:  # both constant: t is undefined
        return 1.0 if same_value(a[0], b[0]) else 0.0
    with warnings.catch_warnings():  # scipy warns about precision for near-constant samples
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return None if math.isnan(p) else p


def _metrics(cells: Sequence[Cell]) -> list[str | float]:
    eps = sorted({pt.eps_255 for c in cells for pt in c.fgsm if pt.eps_255 > 0})
    return [FINAL, *eps]


def _t(df: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, df))


def paired_test(a: Cell, b: Cell, metric: str | float) -> PairedTest | None:
    """``a`` minus ``b`` over the seeds both have (None: no shared seed); not adjusted."""
    va, vb = values_by_seed(a, metric), values_by_seed(b, metric)
    seeds = tuple(sorted(set(va) & set(vb), key=sort_value))
    if not seeds:
        return None
    d = [va[s] - vb[s] for s in seeds]
    n = len(d)
    mean = sum(d) / n
    if n < 2:
        return PairedTest(a.column_label, b.column_label, metric, seeds, mean, math.nan, None)
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    if sd == 0.0:
        p = 1.0 if mean == 0.0 else 0.0
    else:
        from scipy import stats

        with warnings.catch_warnings():  # scipy warns about precision for near-constant differences
            warnings.simplefilter("ignore", RuntimeWarning)
            p = float(stats.ttest_1samp(d, 0.0).pvalue)
    return PairedTest(a.column_label, b.column_label, metric, seeds, mean, _t(n - 1) * sd / math.sqrt(n), p)


def holm(ps: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (None stays None and is not counted)."""
    idx = sorted((i for i, p in enumerate(ps) if p is not None), key=lambda i: ps[i])  # type: ignore[arg-type,return-value]
    m = len(idx)
    out: list[float | None] = [None] * len(ps)
    running = 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * float(ps[i])))  # type: ignore[arg-type]
        out[i] = running
    return out


def paired_tests(cells: Sequence[Cell], lmix_reference: Callable[[Cell, list[Cell]], Cell | None]) -> list[PairedTest]:
    """Seed-paired tests of one row's cells: each against the baseline, each against its LMix reference.

    Args:
        cells: the cells of one (data set, row, model), in display order.
        lmix_reference: ``(cell, lmix_cells) -> Cell | None``, the LMix cell a cell is compared with.

    Returns:
        Against the baseline first (Holm-adjusted per metric), then against LMix (Holm-adjusted
        per metric among themselves); comparisons without a shared seed are left out.
    """
    base = next((c for c in cells if c.method == "none" and not c.variant), None)
    lmix_cells = [c for c in cells if c.method == "lmix"]
    out: list[PairedTest] = []
    for metric in _metrics(cells):
        for against_base in (True, False):
            tests = []
            for c in cells:
                if against_base:
                    ref = base if c is not base else None
                else:
                    ref = None if (c.method == "lmix" and not c.variant) or c is base else lmix_reference(c, lmix_cells)
                if ref is None:
                    continue
                t = paired_test(c, ref, metric)
                if t is not None:
                    tests.append(t)
            adjusted = holm([t.p for t in tests])
            family = tuple(f"{t.a} - {t.b}" for t in tests if t.p is not None)
            out += [replace(t, p_holm=q, family=family if q is not None else ()) for t, q in zip(tests, adjusted)]
    return out


def k_families(cells: Sequence[Cell]) -> list[tuple[str, list[tuple[float, Cell]]]]:
    """LMix cells that differ only in k (plus FMix at k = 0 with the same other settings), by family."""
    default_k = float(mixer_defaults("lmix").get("k", 1.0))
    families: dict[tuple, list[tuple[float, Cell]]] = defaultdict(list)
    for c in cells:
        if c.method != "lmix":
            continue
        variant = dict(c.variant)
        k = float(variant.pop("k", default_k))
        families[tuple(sorted(variant.items()))].append((k, c))
    out = []
    for key, members in families.items():
        fmix = next((c for c in cells if c.method == "fmix" and tuple(sorted(dict(c.variant).items())) == key), None)
        if fmix is not None and not any(k == 0.0 for k, _ in members):
            members.append((0.0, fmix))
        if len({k for k, _ in members}) < 2:
            continue
        members.sort(key=lambda m: m[0])
        label = next((c.column_label for k, c in members if k == default_k and c.method == "lmix"), None)
        out.append((label or members[0][1].column_label, members))
    return out


def _fit(points: list[tuple[Any, float, float]]) -> tuple[float, float, float | None, int, bool] | None:
    """Slope of y on k with one intercept per seed where seeds repeat, else one intercept.

    Args:
        points: (seed, k, y).

    Returns:
        (slope, 95% half-width, p, n, blocked), or None when k does not vary.
    """
    by_seed: dict[Any, list[tuple[float, float]]] = defaultdict(list)
    for s, k, y in points:
        by_seed[s].append((k, y))
    blocked = any(len(v) > 1 for v in by_seed.values())
    if blocked:  # seeds seen at one k only carry no within-seed information about the slope
        groups = [v for v in by_seed.values() if len(v) > 1]
    else:
        groups = [[(k, y) for _, k, y in points]]
    n = sum(len(g) for g in groups)
    sxx = sxy = 0.0
    centred = []
    for g in groups:
        mk = sum(k for k, _ in g) / len(g)
        my = sum(y for _, y in g) / len(g)
        for k, y in g:
            centred.append((k - mk, y - my))
            sxx += (k - mk) ** 2
            sxy += (k - mk) * (y - my)
    if sxx == 0.0:
        return None
    slope = sxy / sxx
    df = n - len(groups) - 1
    if df < 1:
        return slope, math.nan, None, n, blocked
    rss = sum((y - slope * k) ** 2 for k, y in centred)
    se = math.sqrt(rss / df / sxx)
    if se == 0.0:
        return slope, 0.0, (1.0 if slope == 0.0 else 0.0), n, blocked
    from scipy import stats

    p = float(2 * stats.t.sf(abs(slope / se), df))
    return slope, _t(df) * se, p, n, blocked


def k_trends(cells: Sequence[Cell]) -> list[Trend]:
    """The slope of every metric against k, per k family of one row (see the module docstring)."""
    out = []
    for label, members in k_families(cells):
        for metric in _metrics([c for _, c in members]):
            trend = k_trend(label, members, metric)
            if trend is not None:
                out.append(trend)
    return out


def k_trend(label: str, members: Sequence[tuple[float, Cell]], metric: str | float) -> Trend | None:
    """The slope of one metric against k over one k family's ``(k, cell)`` members (None: k does not vary)."""
    points = [(s, k, v) for k, c in members for s, v in values_by_seed(c, metric).items()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fit = _fit(points)
    if fit is None:
        return None
    slope, ci, p, n, blocked = fit
    ks = tuple(sorted({k for _, k, _ in points}))
    means = tuple(sum(v for _, kk, v in points if kk == k) / sum(1 for _, kk, _ in points if kk == k) for k in ks)
    return Trend(label, metric, ks, n, blocked, slope, ci, p, means)
