"""Rendering a report: Markdown, LaTeX (booktabs), the terminal summary and ``report.json``.

``write_report`` writes them all, with the figures of :mod:`lmix.experiments.report.plots`,
into a temporary folder that then takes the report folder's place: a report that fails leaves
nothing half-written.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmix.experiments.io import WriteError, atomic_write_json, atomic_write_text, write_folder
from lmix.experiments.report.accounting import cell_runs_text, counts_text
from lmix.experiments.report.analysis import PAIRED, WELCH, PairedTest, Trend, Versus, metric_label
from lmix.experiments.report.collect import STATUSES, RunRecord
from lmix.experiments.report.formats import eq_p as _eq_p
from lmix.experiments.report.formats import fmt_p as _fmt_p
from lmix.experiments.report.formats import signed_ci as _signed_ci
from lmix.experiments.report.plots import plot_accuracy, plot_alpha_sweep, plot_curves, plot_fgsm, plot_k
from lmix.experiments.report.render_planned import exploratory_note, planned_md, planned_text
from lmix.experiments.report.settings import format_setting, method_display, method_key, sort_value
from lmix.experiments.report.stats import (
    CONDITION_KEYS,
    OVERFIT_THRESHOLD,
    Cell,
    Report,
    Stats,
    cell_order,
    report_datasets,
    report_rows,
    row_regime,
    run_conditions,
)

__all__ = ["render_markdown", "render_latex", "render_text_summary", "render_runs_text", "report_json", "write_report"]


def _fmt_stats(s: Stats | None, *, tex: bool = False) -> str:
    if s is None:
        return "-"
    pm = r" \pm " if tex else " ± "
    body = f"{s.mean:.2f}" + (f"{pm}{s.std:.2f}" if not math.isnan(s.std) else "")
    return f"${body}$" if tex else body


@dataclass
class _Table:
    """A rendered-agnostic table: rows of cells under method columns."""

    title: str
    key: str  # "final" or "best"
    columns: list[str]
    rows: list[tuple[str, list[Cell | None], str | None]]  # (label, cells, regime or None)
    of: bool  # a sweep.json says how many runs each cell should have


def _tables(report: Report, dataset: str, key: str) -> list[_Table]:
    """The paper-layout table (plain methods) and, where mixing settings vary, a table by those settings."""
    title = "final test accuracy" if key == "final" else "best test accuracy (best epoch)"
    rows = report_rows(report, dataset)
    cells = [c for _, _, cs in rows for c in cs]
    tables = []
    plain_methods = sorted({c.method for c in cells if not c.variant}, key=method_key)
    if plain_methods:
        out_rows = []
        for _, label, cs in rows:
            by_method = {c.method: c for c in cs if not c.variant}
            out_rows.append((label, [by_method.get(m) for m in plain_methods], row_regime(cs)[0]))
        tables.append(_Table(title, key, [method_display(m) for m in plain_methods], out_rows, bool(report.sweeps)))
    varied_methods = sorted({c.method for c in cells if c.variant}, key=method_key)
    if varied_methods:
        keys = sorted({k for c in cells for k, _ in c.variant})
        out_rows = []
        for _, label, cs in rows:
            mine = [c for c in cs if c.method in varied_methods]
            variants = sorted({c.variant for c in mine}, key=lambda v: (len(v) > 0, [(k, sort_value(x)) for k, x in v]))
            for variant in variants:
                by_method = {c.method: c for c in mine if c.variant == variant}
                name = ", ".join(f"{k}={format_setting(v)}" for k, v in variant) or "defaults"
                out_rows.append((f"{label}, {name}", [by_method.get(m) for m in varied_methods], None))
        tables.append(
            _Table(
                f"{title} by {', '.join(keys)}",
                key,
                [method_display(m) for m in varied_methods],
                out_rows,
                bool(report.sweeps),
            )
        )
    return tables


def _cell_text(c: Cell | None, key: str, *, of: bool, n: bool = True, tex: bool = False) -> str:
    if c is None:
        return "--" if tex else ""
    stats = getattr(c, key)
    text = _fmt_stats(stats, tex=tex)
    # runs not in the numbers (failed, unfinished, ...) are named where the numbers are
    note = cell_runs_text(c, of=of, n=stats.n if n and stats is not None else None)
    if note:
        text += f" ({note})"
    if c.paper is not None:
        text += f" [{c.paper.value(key):.2f}]"
    return text


def _table_md(table: _Table, *, regime: bool = True) -> list[str]:
    regime = regime and any(r is not None for _, _, r in table.rows)
    lines = [
        "| model | " + " | ".join(table.columns) + (" | regime |" if regime else " |"),
        "|---|" + "---|" * len(table.columns) + ("---|" if regime else ""),
    ]
    for label, cells, reg in table.rows:
        lines.append(
            f"| {label} | "
            + " | ".join(_cell_text(c, table.key, of=table.of) for c in cells)
            + (f" | {reg or ''} |" if regime else " |")
        )
    return lines


def _p_text(v: Versus, ref: str = "") -> str:
    """``0.046 *`` (paired by seed); ``0.120, Welch (unpaired: seeds differ)`` where the groups cannot be paired."""
    return _fmt_p(v.p) + ref + ("" if v.test == PAIRED else f", {v.label}")


# What the p-values outside the paired and k tables are (report.md's closing note, the terminal).
P_NOTE = (
    "p vs none, p vs LMix and the FGSM tables' p: two-sided, the paired t-test over the seeds "
    "(scipy.stats.ttest_rel: the p of the Paired by seed table) where both groups' runs have the same seeds, "
    "one run each; otherwise Welch's unpaired t-test (scipy.stats.ttest_ind, equal_var=False), marked "
    '"Welch (unpaired: seeds differ)" or "(unpaired: a seed repeats)". * = p < 0.05, not corrected for '
    "multiple comparisons (the Paired by seed tables give Holm's adjustment); n/a where a group has fewer than "
    "2 runs (or pairs)."
)


def _stats_md(cells: list[Cell], *, of: bool) -> list[str]:
    lines = [
        "| method | n | final | final 95% CI | p vs none | p vs LMix | best | best 95% CI | p vs none | p vs LMix "
        "| clean train acc | runs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in sorted(cells, key=cell_order):
        parts = [c.column_label, cell_runs_text(c, of=of, n=len(c.runs)).removeprefix("n=")]
        for s, key in ((c.final, "final_acc"), (c.best, "best_acc")):
            ci = "-" if s is None or math.isnan(s.ci95) else f"[{s.mean - s.ci95:.2f}, {s.mean + s.ci95:.2f}]"
            ref = "" if c.lmix_ref == "LMix" else f" ({c.lmix_ref})"
            parts += [
                _fmt_stats(s),
                ci,
                _p_text(c.vs_none[key]) if c.vs_none else "-",
                _p_text(c.vs_lmix[key], ref) if c.vs_lmix else "-",
            ]
        parts.append(_fmt_stats(c.clean_train))
        parts.append(", ".join(f"seed {r.seed}" for r in c.runs))
        lines.append("| " + " | ".join(parts) + " |")
    return lines


def render_markdown(report: Report) -> str:
    """The whole report as Markdown (tables, statistics, regimes, notes, figure links)."""
    n_cells = len(report.cells)
    out = [
        f"# lmix report: {report.root}",
        "",
        f"{len(report.records)} finished runs in {n_cells} groups. Accuracy in %, mean ± standard deviation over "
        "seeds (n = number of runs); `[x]` = the paper's number for the same data set, model and method. "
        f"Settings that vary between groups: {', '.join(report.varying) or 'none besides data set, model, method'}.",
        "",
    ]
    paper_cells = [c for c in report.cells if c.paper is not None]
    if paper_cells:
        tables = sorted({(c.paper.table, c.paper.metric) for c in paper_cells})
        for table, metric in tables:
            what = (
                "final and best (MaxAcc) accuracies are both published"
                if metric == "final+best"
                else "one number per cell; the paper does not say whether it is the final or the best accuracy, "
                "so it is shown beside both"
            )
            out.append(f"- Paper {table}: {what}.")
        out.append("")
    out += planned_md(report)  # the declared analysis first; everything after it is exploratory
    for dataset in report_datasets(report):
        out += [f"## {dataset}", ""]
        for key in ("final", "best"):
            for table in _tables(report, dataset, key):
                out += [f"### {table.title[0].upper()}{table.title[1:]}", ""]
                out += _table_md(table)
                out += ["", _conditions_text(_table_runs(table)), ""]
        for _, label, cells in report_rows(report, dataset):
            out += [f"### Statistics (exploratory): {dataset}, {label}", ""]
            out += _stats_md(cells, of=bool(report.sweeps))
            out += ["", f"Regime: {row_regime(cells)[0]}.", ""]
            out += _significance_sentences(cells)
            out.append("")
        for _, label, cells in report_rows(report, dataset):
            fgsm_cells = [c for c in cells if c.fgsm]
            if not fgsm_cells:
                continue
            out += [f"### FGSM robustness (exploratory tests): {dataset}, {label}", ""]
            out += _fgsm_md(fgsm_cells)
            out += [
                "",
                "FGSM test accuracy (%) per eps (in 1/255), mean [95% CI] over the runs with fgsm.json; "
                "p: against the baseline (none) at the same eps, paired by seed (Welch's unpaired test where "
                "marked), * = p < 0.05.",
                "",
                _conditions_text([r for c in fgsm_cells for r in c.runs if r.fgsm]),
                "",
            ]
        for key, label, _ in report_rows(report, dataset):
            tests = report.paired.get((dataset, *key), [])
            if tests:
                out += [f"### Paired by seed (exploratory): {dataset}, {label}", ""]
                out += _paired_md(tests)
                out += ["", PAIRED_NOTE + " " + _paired_families(tests), ""]
        for key, label, _ in report_rows(report, dataset):
            trends = report.trends.get((dataset, *key), [])
            if trends:
                out += [f"### Effect of k (exploratory): {dataset}, {label}", ""]
                out += _trends_md(trends)
                out += ["", TREND_NOTE, ""]
    out += [
        P_NOTE + " 95% CI: mean ± "
        't(0.975, n-1) · std / sqrt(n). "overfits": the no-augmentation baseline\'s mean final clean training '
        f"accuracy is >= {OVERFIT_THRESHOLD:g}%, the regime where a regulariser such as mixing can help; "
        '"underfits": below that, where mixing methods are expected to lose.',
        "",
    ]
    out += _runs_md(report)
    if report.notes:
        out += ["## Notes", ""] + [f"- {n}" for n in report.notes] + [""]
    if report.figures:
        out += ["## Figures", ""] + [f"![{Path(f).stem}]({f})" for f in report.figures] + [""]
    out += ["Every number above is computed from the runs' summary.json files; report.json lists them per group.", ""]
    return "\n".join(out)


def _table_runs(table: _Table) -> list[RunRecord]:
    return [r for _, cells, _ in table.rows for c in cells if c is not None for r in c.runs]


def _counted(values: dict[str, int], *, short: bool = False) -> str:
    def show(v: str) -> str:
        return v[:12] if short and len(v) == 40 and v != "not recorded" else v

    if len(values) == 1:
        return show(next(iter(values)))
    return ", ".join(f"{show(v)} ({n} run{'' if n == 1 else 's'})" for v, n in values.items())


_CONDITION_NAMES = {
    "mix_mode": "mix mode",
    "amp": "precision (amp)",
    "device": "device",
    "device_name": "device name",
    "lmix_version": "lmix",
    "torch_version": "torch",
    "git_commit": "git commit",
}


def _conditions_text(
    runs: list[RunRecord], *, keys: tuple[str, ...] = CONDITION_KEYS, what: str = "Runs behind this table"
) -> str:
    """One line: the mix mode, precision, device and provenance of ``runs`` (distinct values)."""
    cond = run_conditions(runs)
    parts = [f"{_CONDITION_NAMES[k]} {_counted(cond[k], short=True)}" for k in keys if k in cond]
    return f"{what} ({len(runs)}): " + "; ".join(parts) + "."


def _fmt_ci(s: Stats | None) -> str:
    if s is None:
        return "-"
    if math.isnan(s.ci95):
        return f"{s.mean:.2f}"
    return f"{s.mean:.2f} [{s.mean - s.ci95:.2f}, {s.mean + s.ci95:.2f}]"


def _fgsm_eps(cells: list[Cell]) -> list[float]:
    return sorted({pt.eps_255 for c in cells for pt in c.fgsm})


def _fgsm_md(cells: list[Cell]) -> list[str]:
    eps = _fgsm_eps(cells)
    lines = [
        "| method | n | " + " | ".join(f"eps {e:g}" for e in eps) + " |",
        "|---|---|" + "---|" * len(eps),
    ]
    for c in sorted(cells, key=cell_order):
        at = {pt.eps_255: pt for pt in c.fgsm}
        vals = []
        for e in eps:
            pt = at.get(e)
            if pt is None:
                vals.append("")
                continue
            p = "" if pt.vs_none is None else _fmt_p(pt.vs_none.p)
            p = f", p{p}" if p.startswith("<") else f", p={p}" if p else ""
            welch = "" if pt.vs_none is None or pt.vs_none.test == PAIRED else f", {pt.vs_none.label}"
            vals.append(_fmt_ci(pt.stats) + p + welch)
        n = max(len(pt.values) for pt in c.fgsm)
        lines.append(f"| {c.column_label} | {n} | " + " | ".join(vals) + " |")
    return lines


PAIRED_NOTE = (
    "Differences a - b in accuracy points over the seeds both groups have (in lmix a seed fixes the training "
    "subset, the initial weights and the batch order, so equal seeds are matched pairs): mean [95% CI], the paired "
    "t-test's two-sided p (scipy.stats.ttest_rel) and, in brackets, Holm's adjustment over the row's comparisons "
    "with the same reference and metric. * = p < 0.05."
)
TREND_P = "The slopes' p-values are not adjusted for multiple comparisons."
TREND_NOTE = (
    "Least-squares slope of accuracy against k, in points per unit k, with one intercept per seed where seeds repeat "
    "across k (so seed-to-seed spread does not enter), its 95% CI and p; FMix joins as k = 0 (its masks are LMix's "
    'at k = 0). "over the range" is the slope times the width of the k range: the change the fit predicts from the '
    "smallest to the largest k, with its 95% CI. " + TREND_P
)


def _paired_families(tests: list[PairedTest]) -> str:
    """The Holm families of a paired table, named: their size and members, per reference and column."""
    families: dict[tuple[str, ...], list[str]] = {}
    for t in tests:
        if t.family:
            families.setdefault(t.family, []).append(metric_label(t.metric))
    parts = [
        f"{', '.join(members)} ({len(members)} test{'' if len(members) == 1 else 's'}, a family of its own in "
        f"{'the column' if len(columns) == 1 else 'each of the columns'} {', '.join(dict.fromkeys(columns))})"
        for members, columns in families.items()
    ]
    return "Holm families (one per column and reference): " + "; ".join(parts) + "." if parts else ""


def _paired_md(tests: list[PairedTest]) -> list[str]:
    metrics = list(dict.fromkeys(t.metric for t in tests))
    pairs = list(dict.fromkeys((t.a, t.b) for t in tests))
    at = {(t.a, t.b, t.metric): t for t in tests}
    lines = [
        "| a - b | pairs | " + " | ".join(metric_label(m) for m in metrics) + " |",
        "|---|---|" + "---|" * len(metrics),
    ]
    for a, b in pairs:
        vals = []
        for m in metrics:
            t = at.get((a, b, m))
            if t is None:
                vals.append("")
                continue
            p = "" if t.p is None else f", p{_eq_p(t.p)}" + ("" if t.p_holm is None else f" ({_fmt_p(t.p_holm)})")
            vals.append(_signed_ci(t.diff, t.ci95) + p)
        n = max(len(at[(a, b, m)].seeds) for m in metrics if (a, b, m) in at)
        lines.append(f"| {a} - {b} | {n} | " + " | ".join(vals) + " |")
    return lines


def _fmt_k(k: float) -> str:
    return f"{k:g}"


def _trends_md(trends: list[Trend]) -> list[str]:
    lines = [
        "| family | metric | k | mean per k | slope per unit k [95% CI] | p | over the range [95% CI] | runs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in trends:
        span = f"k {_fmt_k(t.ks[0])} to {_fmt_k(t.ks[-1])}: " + _signed_ci(t.slope * t.span, t.ci95 * t.span)
        lines.append(
            f"| {t.family} | {metric_label(t.metric)} | {', '.join(_fmt_k(k) for k in t.ks)} | "
            f"{', '.join(f'{m:.2f}' for m in t.means)} | {_signed_ci(t.slope, t.ci95)} | "
            f"{'-' if t.p is None else _fmt_p(t.p)} | {span} | {t.n}{', per-seed intercepts' if t.blocked else ''} |"
        )
    return lines


def _trend_sentence(t: Trend) -> str:
    p = "p n/a" if t.p is None else f"p = {t.p:.3g}"
    verdict = "significant" if t.p is not None and t.p < 0.05 else "not significant"
    return (
        f"{t.family}: {metric_label(t.metric)} accuracy changes {_signed_ci(t.slope, t.ci95)} points per unit k "
        f"(k {', '.join(_fmt_k(k) for k in t.ks)}; {verdict}, {p}; {t.n} runs)."
    )


def _runs_sentence(report: Report) -> str:
    """``12 runs: 9 finished and used, 1 failed, 2 unfinished``, and where the expected runs come from."""
    used = len(report.runs) - len(report.not_used)
    others = counts_text(report.runs)
    total = f"{len(report.runs)} run" + ("" if len(report.runs) == 1 else "s")
    text = f"{total}: {used} finished and used" + (f", {others}" if others else "")
    return text + (f" (the runs asked for: {', '.join(report.sweeps)})" if report.sweeps else "")


def _runs_md(report: Report) -> list[str]:
    """The Runs section: every run folder accounted for, each run not in the numbers with why."""
    out = ["## Runs", "", _runs_sentence(report) + ".", ""]
    if report.not_used:
        out += ["Runs not in the numbers above:", "", "| run | status | group | detail |", "|---|---|---|---|"]
        for r in report.not_used:
            cells = (r.dir, r.status_label, report.groups.get(r.dir, ""), r.detail)
            out.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
        out.append("")
    out += [f"- unreadable: {p}" for p in report.problems] + ([""] if report.problems else [])
    return out


def _significance_sentences(cells: list[Cell]) -> list[str]:
    lines = []
    base = next((c for c in cells if c.method == "none" and not c.variant), None)
    for c in cells:
        if c is base or c.vs_none is None or c.final is None or base is None or base.final is None:
            continue
        v = c.vs_none["final_acc"]
        # Rounded first, + 0.0: a difference of -1e-15 (summation order) reads +0.00, not -0.00.
        diff = round(c.final.mean - base.final.mean, 2) + 0.0
        if v.p is None:
            verdict = f"too few runs to test ({v.label})"
        else:
            verdict = f"{'significant' if v.p < 0.05 else 'not significant'} (p = {v.p:.3g}, {v.label})"
        lines.append(f"- {c.column_label} vs Baseline: {diff:+.2f} points final accuracy, {verdict}.")
    return lines


def _tex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#"), ("$", r"\$")):
        text = text.replace(a, b)
    return text


def render_latex(report: Report) -> str:
    """booktabs tables (final and best accuracy per data set); needs ``\\usepackage{booktabs}``."""
    out = ["% lmix report: tables in the paper's layout. Needs \\usepackage{booktabs}.", ""]
    for dataset in report_datasets(report):
        cells = [c for c in report.cells if c.dataset == dataset]
        ns = {len(c.runs) for c in cells}
        seeds_text = f"{next(iter(ns))} seeds" if len(ns) == 1 else "seeds (n per cell)"
        has_paper = any(c.paper is not None for c in cells)
        for key in ("final", "best"):
            for table in _tables(report, dataset, key):
                caption = (
                    f"{_tex_escape(dataset)}: {_tex_escape(table.title)} (\\%), mean $\\pm$ std over {seeds_text}"
                    + ("; the paper's number in brackets" if has_paper else "")
                    + ". "
                    + _tex_escape(_conditions_text(_table_runs(table), keys=_PRECISION_KEYS))
                )
                out += [
                    "% " + _conditions_text(_table_runs(table)),
                    "\\begin{table}[t]",
                    "\\centering",
                    f"\\caption{{{caption}}}",
                    "\\begin{tabular}{l" + "c" * len(table.columns) + "}",
                    "\\toprule",
                    "Model & " + " & ".join(_tex_escape(c) for c in table.columns) + " \\\\",
                    "\\midrule",
                ]
                for label, row_cells, _ in table.rows:
                    vals = [_cell_text(c, key, of=table.of, n=len(ns) > 1, tex=True) for c in row_cells]
                    out.append(_tex_escape(label) + " & " + " & ".join(vals) + " \\\\")
                out += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
        for _, label, row_cells in report_rows(report, dataset):
            fgsm_cells = sorted((c for c in row_cells if c.fgsm), key=cell_order)
            if fgsm_cells:
                out += _fgsm_latex(dataset, label, fgsm_cells)
        for key, label, _ in report_rows(report, dataset):
            trends = report.trends.get((dataset, *key), [])
            if trends:
                out += _trends_latex(dataset, label, trends)
    return "\n".join(out)


_PRECISION_KEYS = ("mix_mode", "amp", "device")


def _fgsm_latex(dataset: str, label: str, cells: list[Cell]) -> list[str]:
    eps = _fgsm_eps(cells)
    runs = [r for c in cells for r in c.runs if r.fgsm]
    welch = any(pt.vs_none is not None and pt.vs_none.test == WELCH for c in cells for pt in c.fgsm)
    caption = (
        f"{_tex_escape(dataset)}, {_tex_escape(label)}: FGSM test accuracy (\\%) per $\\epsilon$ (in 1/255), "
        "mean $\\pm$ 95\\% CI half-width; $^*$: $p < 0.05$ against the baseline (paired $t$-test over the seeds"
        + ("; $^\\dagger$: Welch's unpaired test, where the runs cannot be paired by seed" if welch else "")
        + "). "
        + _tex_escape(_conditions_text(runs, keys=_PRECISION_KEYS))
    )
    out = [
        "% " + _conditions_text(runs),
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{caption}}}",
        "\\begin{tabular}{l" + "c" * len(eps) + "}",
        "\\toprule",
        "Method & " + " & ".join(f"$\\epsilon={e:g}$" for e in eps) + " \\\\",
        "\\midrule",
    ]
    for c in cells:
        at = {pt.eps_255: pt for pt in c.fgsm}
        vals = []
        for e in eps:
            pt = at.get(e)
            if pt is None or pt.stats is None:
                vals.append("--")
                continue
            s = pt.stats
            body = f"{s.mean:.2f}" + ("" if math.isnan(s.ci95) else f" \\pm {s.ci95:.2f}")
            marks = "*" if pt.p_vs_none is not None and pt.p_vs_none < 0.05 else ""
            marks += "\\dagger" if pt.vs_none is not None and pt.vs_none.test == WELCH else ""
            star = f"^{{{marks}}}" if marks else ""
            vals.append(f"${body}{star}$")
        out.append(_tex_escape(c.column_label) + " & " + " & ".join(vals) + " \\\\")
    return out + ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]


def _trends_latex(dataset: str, label: str, trends: list[Trend]) -> list[str]:
    caption = (
        f"{_tex_escape(dataset)}, {_tex_escape(label)}: accuracy (\\%) against LMix's $k$ (FMix as $k = 0$): "
        "mean per $k$, and the least-squares slope per unit $k$ with one intercept per seed, "
        "with its 95\\% CI and $p$."
    )
    out = [
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{caption}}}",
        "\\begin{tabular}{llccc}",
        "\\toprule",
        "Family & Metric & Mean per $k$ & Slope [95\\% CI] & $p$ \\\\",
        "\\midrule",
    ]
    for t in trends:
        means = ", ".join(f"{_fmt_k(k)}: {m:.2f}" for k, m in zip(t.ks, t.means))
        ci = "" if math.isnan(t.ci95) else f" [{t.slope - t.ci95:+.2f}, {t.slope + t.ci95:+.2f}]"
        p = "--" if t.p is None else f"{t.p:.3g}"
        out.append(
            f"{_tex_escape(t.family)} & {_tex_escape(metric_label(t.metric))} & {means} & ${t.slope:+.2f}{ci}$ & {p} \\\\"
        )
    return out + ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]


def render_text_summary(report: Report) -> str:
    """A short terminal summary: the final-accuracy table(s), significance against the baseline, regimes."""
    out = planned_text(report)
    for dataset in report_datasets(report):
        for table in _tables(report, dataset, "final"):
            out.append(f"{dataset}: {table.title} (%), mean ± std over seeds (n runs)")
            out += _table_md(table, regime=False)
        for _, label, cells in report_rows(report, dataset):
            out.append(f"{label}: regime: {row_regime(cells)[0]}")
            tests = _significance_sentences(cells)
            out += ["  exploratory, uncorrected:"] if tests else []
            out += ["  " + s[2:] for s in tests]
        for _, label, cells in report_rows(report, dataset):
            fgsm_cells = [c for c in cells if c.fgsm]
            if fgsm_cells:
                out.append(
                    f"{dataset}, {label}: FGSM accuracy (%) per eps (1/255), mean [95% CI], p vs none "
                    "(exploratory, uncorrected: paired by seed unless marked Welch)"
                )
                out += _fgsm_md(fgsm_cells)
        for key, label, _ in report_rows(report, dataset):
            for t in report.trends.get((dataset, *key), []):
                out.append(f"{dataset}, {label}: " + _trend_sentence(t) + " (exploratory, uncorrected)")
        runs = [r for c in report.cells if c.dataset == dataset for r in c.runs]
        out.append(_conditions_text(runs, what=f"{dataset} runs"))
        out.append("")
    return "\n".join(out + _runs_text(report)).rstrip() + "\n"


_MAX_LISTED = 20  # runs not used listed in the terminal; report.md lists them all


def render_runs_text(report: Report) -> str:
    """The terminal's account of the runs alone (``lmix report --quiet``): how many runs are used,
    failed, unfinished, unreadable ..., and each run not in the numbers with why."""
    return "\n".join(_runs_text(report)) + "\n"


def _runs_text(report: Report) -> list[str]:
    """The terminal's account of the runs: counts, then each run not in the numbers with why."""
    out = [_runs_sentence(report)]
    out += [f"  {r.status_label}: {r.dir}: {r.detail}" for r in report.not_used[:_MAX_LISTED]]
    if len(report.not_used) > _MAX_LISTED:
        out.append(f"  ... and {len(report.not_used) - _MAX_LISTED} more (report.md lists them all)")
    return out + [f"  unreadable: {p}" for p in report.problems]


def report_json(report: Report) -> dict[str, Any]:
    """Per group: its settings, run folders, per-run values and the statistics computed from them."""
    cells = []
    for c in report.cells:
        cells.append(
            {
                "dataset": c.dataset,
                "model": c.model,
                "method": c.method,
                "row": {k: _jsonable(v) for k, v in c.row},
                "variant": {k: _jsonable(v) for k, v in c.variant},
                "row_label": c.row_label,
                "column_label": c.column_label,
                "runs": [
                    {
                        "dir": r.dir,
                        "seed": r.seed,
                        "final_acc": r.summary.get("final_acc"),
                        "best_acc": r.summary.get("best_acc"),
                        "best_epoch": r.summary.get("best_epoch"),
                        "final_clean_train_acc": r.summary.get("final_clean_train_acc"),
                        "epochs": r.summary.get("epochs"),
                    }
                    for r in c.runs
                ],
                "final_acc": c.final.to_dict() if c.final else None,
                "best_acc": c.best.to_dict() if c.best else None,
                "final_clean_train_acc": c.clean_train.to_dict() if c.clean_train else None,
                "regime": row_regime(
                    [x for x in report.cells if (x.dataset, x.row, x.model) == (c.dataset, c.row, c.model)]
                )[0],
                "paper": None
                if c.paper is None
                else {
                    "table": c.paper.table,
                    "final": c.paper.value("final"),
                    "best": c.paper.value("best"),
                    "metric": c.paper.metric,
                },
                "p_vs_none": c.p_vs_none,
                "test_vs_none": _tests_json(c.vs_none),
                "p_vs_lmix": c.p_vs_lmix,
                "test_vs_lmix": _tests_json(c.vs_lmix),
                "lmix_reference": c.lmix_ref,
                "expected_runs": len(c.runs) + len(c.not_used) if report.sweeps else None,
                "not_used_runs": [{"dir": r.dir, "status": r.status} for r in c.not_used],
                "fgsm": [
                    {
                        "eps_255": pt.eps_255,
                        "acc": pt.stats.to_dict() if pt.stats else None,
                        "p_vs_none": pt.p_vs_none,
                        "test_vs_none": None if pt.vs_none is None else pt.vs_none.label,
                        "runs": [{"dir": d, "acc": v} for d, v in zip(pt.dirs, pt.values)],
                    }
                    for pt in c.fgsm
                ],
                "conditions": run_conditions(c.runs),
            }
        )
    return {
        "root": report.root,
        "num_runs": len(report.records),
        "varying_settings": report.varying,
        "groups": cells,
        "conditions": {
            d: run_conditions([r for c in report.cells if c.dataset == d for r in c.runs])
            for d in report_datasets(report)
        },
        "runs": _runs_json(report),
        "paired": [
            {"dataset": d, "row": {k: _jsonable(v) for k, v in row}, "model": m, "tests": [t.to_dict() for t in tests]}
            for (d, row, m), tests in report.paired.items()
            if tests
        ],
        "k_trends": [
            {"dataset": d, "row": {k: _jsonable(v) for k, v in row}, "model": m, "trends": [t.to_dict() for t in ts]}
            for (d, row, m), ts in report.trends.items()
            if ts
        ],
        "analysis": {"plans": [pa.to_dict() for pa in report.planned], "note": exploratory_note(report)},
        "notes": report.notes,
        "figures": report.figures,
    }


def _tests_json(tests: dict[str, Versus] | None) -> dict[str, str] | None:
    """Per metric, which test gave the p beside it: ``"paired t-test"`` or ``"Welch (unpaired: seeds differ)"``."""
    return None if tests is None else {k: v.label for k, v in tests.items()}


def _runs_json(report: Report) -> dict[str, Any]:
    return {
        "total": len(report.runs),
        "counts": {status: sum(r.status == status for r in report.runs) for status in STATUSES},
        "complete": report.complete,
        "sweeps": report.sweeps,
        "unreadable_sweeps": report.problems,
        "not_used": [
            {
                "dir": r.dir,
                "status": r.status,
                "diverged": r.diverged,
                "detail": r.detail,
                "group": report.groups.get(r.dir),
                "seed": r.seed,
            }
            for r in report.not_used
        ],
    }


def _jsonable(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def write_report(report: Report, out_dir: str | os.PathLike) -> list[Path]:
    """Write figures, report.md, report.tex and report.json into ``out_dir``; return the paths.

    Everything is written into a temporary folder first (``io.write_folder``), which becomes
    ``out_dir`` by one rename, or whose files replace their namesakes in an existing ``out_dir``
    one rename each (``report.md``, which names the others, last). Then the figures that the
    report there before listed (its ``report.json``) and this one no longer draws are removed, so
    that no figure of older runs passes for a current one; other files there are left alone. A
    report that fails (a record it cannot draw, a full disk, a folder it may not write) leaves
    ``out_dir`` as it was and no temporary folder.

    Raises:
        WriteError: ``out_dir`` (or its parent) cannot be written; nothing was written.
    """
    out_dir = Path(out_dir)
    earlier = _earlier_figures(out_dir) if out_dir.is_dir() else []
    paths = write_folder(out_dir, lambda folder: _write_files(report, folder))
    written = {path.name for path in paths}
    for name in earlier:
        if name not in written:
            try:
                (out_dir / name).unlink(missing_ok=True)
            except OSError as err:
                raise WriteError(out_dir / name, err) from None
    return paths


def _write_files(report: Report, folder: Path) -> list[str]:
    """Every file of the report, written into ``folder``; their names (report.md first)."""
    report.figures = (
        plot_accuracy(report, folder)
        + plot_alpha_sweep(report, folder)
        + plot_curves(report, folder)
        + plot_fgsm(report, folder)
        + plot_k(report, folder)
    )
    atomic_write_text(folder / "report.md", render_markdown(report))
    atomic_write_text(folder / "report.tex", render_latex(report))
    atomic_write_json(folder / "report.json", report_json(report))
    return ["report.md", "report.tex", "report.json", *report.figures]


#: What an earlier report's figure may be called: a plain file name of ``plots``' form.
_FIGURE_NAME = re.compile(r"[^/\\\x00-\x1f]+\.png")


def _earlier_figures(out_dir: Path) -> list[str]:
    """The figures that the report in ``out_dir`` lists in its ``report.json`` (none if it has none,
    or one that cannot be read: a file this function cannot trace to a report is never removed)."""
    try:
        figures = json.loads((out_dir / "report.json").read_text(encoding="utf-8")).get("figures")
    except (OSError, ValueError, AttributeError):
        return []
    if not isinstance(figures, list):
        return []
    return [
        name
        for name in figures
        if isinstance(name, str)
        and _FIGURE_NAME.fullmatch(name)
        and not name.startswith(".")
        and (out_dir / name).is_file()
    ]
