"""The declared analysis in the report: first, labelled primary or post hoc, with its Holm families named.

Markdown (:func:`planned_md`) and the terminal (:func:`planned_text`) show the same tables: one
per Holm family, each row a test (a comparison on one primary metric) with its effect and 95%
interval, n, p and Holm-adjusted p; the family's size and members are the table's rows.
"""

from __future__ import annotations

from lmix.experiments.report.analysis import metric_label
from lmix.experiments.report.formats import fmt_p, signed_ci
from lmix.experiments.report.planned import Family, PlannedAnalysis, PlannedTest
from lmix.experiments.report.stats import Report

__all__ = ["planned_md", "planned_text", "exploratory_note", "HEADINGS"]

HEADINGS = {
    "primary": "Primary analysis (declared in the spec before the runs)",
    "post hoc": "Post-hoc analysis (declared in the spec after the runs were seen: exploratory)",
}
_FAMILY_RULE = {
    "all": "one family for each data set and model: every comparison x every primary metric",
    "per_metric": "one family for each data set, model and primary metric: every comparison on that metric",
}


def exploratory_note(report: Report) -> str:
    """What the rest of the report is: exploratory, and why."""
    if any(pa.status == "primary" for pa in report.planned):
        return (
            "Every test outside the primary analysis above is exploratory: it was not declared in advance, "
            "and its p-values are either uncorrected or Holm-adjusted over the family named beside them."
        )
    if report.planned:
        return (
            "No primary analysis: the only analysis plans were written after the runs were seen, so every test "
            "in this report, theirs included, is exploratory."
        )
    return (
        "No analysis plan was declared (no sweep.json with an analysis block, no --plan), so every test in this "
        "report is exploratory."
    )


def _plan_sentence(pa: PlannedAnalysis) -> str:
    plan = pa.declared.plan
    written = "before the runs" if plan.confirmatory else "after the runs were seen"
    return (
        f"Declared in {pa.declared.source} ({plan.written}: written {written}). Primary metrics: "
        f"{', '.join(metric_label(m) for m in plan.primary)}. Comparisons: "
        f"{', '.join(c.label for c in plan.comparisons)}. Test: paired t-test over the seeds both groups have "
        f"(a slope: least squares with one intercept per seed). Correction: Holm, {_FAMILY_RULE[plan.family]}."
    )


def _effect(t: PlannedTest) -> str:
    if t.estimate is None:
        return f"not computed: {t.missing}"
    return signed_ci(t.estimate, t.ci95) + (" per unit k" if t.ks else "")


def _n(t: PlannedTest) -> str:
    if t.estimate is None:
        return "-"
    if t.ks:
        return f"{t.n} runs, k " + ", ".join(f"{k:g}" for k in t.ks)
    return f"{t.n} pairs"


def _family_lines(family: Family) -> list[str]:
    lines = [
        f"Holm family {family.name}: the {len(family.tests)} tests of this table.",
        "",
        "| test | effect [95% CI] | n | p | p Holm |",
        "|---|---|---|---|---|",
    ]
    for t in family.tests:
        lines.append(f"| {t.label} | {_effect(t)} | {_n(t)} | {fmt_p(t.p)} | {fmt_p(t.p_adjusted)} |")
    return lines + [""]


def planned_md(report: Report) -> list[str]:
    """The declared analyses as Markdown sections, then the note on what is exploratory."""
    out: list[str] = []
    for pa in report.planned:
        out += [f"## {HEADINGS[pa.status]}", "", _plan_sentence(pa), ""]
        if not pa.rows:
            out += ["None of the plan's runs has finished: nothing to compute yet.", ""]
        for row in pa.rows:
            out += [f"### {pa.status.capitalize()}: {row.dataset}, {row.row_label}", ""]
            for family in row.families:
                out += _family_lines(family)
    title = "## Exploratory analysis" if report.planned else "## Analysis plan"
    return out + [title, "", exploratory_note(report), ""]


def planned_text(report: Report) -> list[str]:
    """The declared analyses for the terminal: the same tables, then the note on what is exploratory."""
    out: list[str] = []
    for pa in report.planned:
        out += [HEADINGS[pa.status], _plan_sentence(pa)]
        if not pa.rows:
            out.append("None of the plan's runs has finished: nothing to compute yet.")
        for row in pa.rows:
            out.append(f"{row.dataset}, {row.row_label}:")
            for family in row.families:
                out += [line for line in _family_lines(family) if line]
        out.append("")
    return out + [exploratory_note(report), ""]
