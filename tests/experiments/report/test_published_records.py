"""docs/results-cpu.md against the published run records in results/cpu-study*/: every number on the page.

Tables: each table after a marker line ``<!-- records: ROOT, dataset: NAME -->`` is checked cell
by cell against ``build_report(ROOT)`` for NAME, with the study's analysis plan (its packaged
spec's post-hoc ``analysis`` block, ``--plan``): accuracy per setting, FGSM accuracy per eps, the
paired differences with their p and Holm-adjusted p over the plan's family, and the slopes in k.
The page shows every test of each family and every group of the records.

Prose: every paragraph (or list item) of the page is scanned for numbers. Each number must be a
design setting named as such (``eps 8``, ``k = 4``, ``5 seeds``, ``8/255``, ``Table 1``,
``finding 3``, a list item's number; numbers in code spans, link targets, version strings and
commit names are not prose) or lie inside the literal of a check comment in the same paragraph::

    LMix k = 1 keeps +0.48 [+0.33, +0.63] points more than FMix at eps 8 (Holm 0.028).
    <!-- check "+0.48 [+0.33, +0.63]" = diff(FM, "LMix - FMix", 8)
    check "(Holm 0.028)" = holm(FM, "LMix - FMix", 8) -->

The expression (the helpers of :class:`Checks`) gives the number(s) the literal shows, in
order, and each must read the same at the precision printed (``<0.001`` and ``>= 0.478`` are
bounds). A number that the records cannot give (a pilot, a wall-clock time) is declared with
``external("why")``. The values come from the report's own functions, so a changed digit on
the page, or a drift of the report, fails here. Skipped where the records or the page are not
there (an installed wheel has neither).
"""

from __future__ import annotations

import functools
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lmix.experiments.report import Cell, Report, build_report
from lmix.experiments.report.analysis import k_families, k_trend, metric_label, welch_p
from lmix.experiments.report.planned import PlannedTest, plans_from_specs

ROOT = Path(__file__).resolve().parents[3]
PAGE = ROOT / "docs" / "results-cpu.md"
# The published records and the packaged specs whose (post-hoc) analysis plans name the families.
STUDIES = {
    "results/cpu-study": ["cpu_study_fmnist", "cpu_study_cifar10"],
    "results/cpu-study-resnet": ["cpu_study_resnet_cifar10"],
    "results/cpu-study-timeseries": ["cpu_study_osuleaf"],
    "results/cpu-study-timeseries-long": ["cpu_study_osuleaf_long"],
}

pytestmark = pytest.mark.skipif(
    not (all((ROOT / r).is_dir() for r in STUDIES) and PAGE.is_file()),
    reason="results/cpu-study* or docs/results-cpu.md not present",
)

NUM = r"[-+]?\d+(?:\.\d+)?"
CLASSES = {"fashion_mnist": 10, "cifar10": 10, "osuleaf": 6}


@functools.cache
def _report(root: str) -> Report:
    return build_report(ROOT / root, paper=None, plans=plans_from_specs(STUDIES[root], ROOT / root))


@dataclass(frozen=True)
class Study:
    """One data set of one records folder: its cells and its plan's family."""

    root: str
    dataset: str

    @property
    def report(self) -> Report:
        return _report(self.root)

    @functools.cached_property
    def cells(self) -> list[Cell]:
        return [c for c in self.report.cells if c.dataset == self.dataset]

    @functools.cached_property
    def family(self) -> dict[str, PlannedTest]:
        """The plan's tests by label (``LMix - FMix, FGSM eps 8``); the plans' family is ``all``: one per row."""
        (row,) = [r for pa in self.report.planned for r in pa.rows if r.dataset == self.dataset]
        (family,) = row.families
        return {t.label: t for t in family.tests}

    def cell(self, label: str) -> Cell:
        found = [c for c in self.cells if c.column_label == label]
        assert len(found) == 1, f"{self.root} {self.dataset}: {len(found)} groups labelled {label!r}"
        return found[0]

    def test(self, comparison: str, metric: Any) -> PlannedTest:
        label = f"{comparison}, {metric_label(_metric(metric))}"
        assert label in self.family, f"{self.root} {self.dataset}: {label!r} is not in the plan's family"
        return self.family[label]

    def runs(self) -> list[Any]:
        return [r for c in self.cells for r in c.runs]


def _metric(metric: Any) -> str | float:
    """``"final"`` or ``"final_acc"`` -> ``"final_acc"``; an eps as a float."""
    return "final_acc" if metric in ("final", "final_acc") else float(metric)


FM = Study("results/cpu-study", "fashion_mnist")
C10 = Study("results/cpu-study", "cifar10")
RN = Study("results/cpu-study-resnet", "cifar10")
TS = Study("results/cpu-study-timeseries", "osuleaf")
TSL = Study("results/cpu-study-timeseries-long", "osuleaf")
BY_MARKER = {(s.root, s.dataset): s for s in (FM, C10, RN, TS, TSL)}


# ---------------------------------------------------------------------------------------------
# reading what the page shows
# ---------------------------------------------------------------------------------------------
def _close(shown: str, value: float, what: str) -> None:
    """``value`` printed at the precision of ``shown`` reads ``shown``; ``<x`` and ``>= x`` are bounds."""
    shown = shown.strip().replace(",", "")
    bound = re.match(r"(<|>=)\s*", shown)
    number = shown[bound.end() :] if bound else shown
    mantissa, _, exponent = number.partition("e")
    assert re.fullmatch(NUM, mantissa) and re.fullmatch(r"([-+]?\d+)?", exponent), f"{what}: cannot read {shown!r}"
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    half = 0.5 * 10 ** (int(exponent or 0) - decimals) + 1e-12
    if bound and bound.group(1) == "<":
        assert value < float(number), f"{what}: page says {shown}, records give {value}"
    elif bound:
        assert value >= float(number) - half, f"{what}: page says {shown}, records give {value}"
    else:
        assert abs(value - float(number)) <= half, f"{what}: page says {shown}, records give {value}"


def _cells_of(line: str) -> list[str]:
    return [c.strip().replace("**", "") for c in line.strip().strip("|").split("|")]


def _read_table(lines: list[str], i: int) -> tuple[list[str], list[list[str]]]:
    """The Markdown table whose header is ``lines[i]``: (header, body rows)."""
    header, j, rows = _cells_of(lines[i]), i + 2, []
    while j < len(lines) and lines[j].startswith("|"):
        rows.append(_cells_of(lines[j]))
        j += 1
    return header, rows


MARKER = re.compile(r"<!-- records: (\S+), dataset: (\w+) -->")


def _marked_tables(text: str) -> list[tuple[Study, list[str], list[list[str]]]]:
    """(study, header, body rows) of every table right after a marker."""
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        m = MARKER.fullmatch(line.strip())
        if not m:
            continue
        assert lines[i + 1].startswith("|") and lines[i + 2].startswith("|---"), f"no table after {line}"
        assert (m.group(1), m.group(2)) in BY_MARKER, f"{line}: not a published study"
        out.append((BY_MARKER[(m.group(1), m.group(2))], *_read_table(lines, i + 1)))
    return out


# Setting labels on the page -> the report's column labels.
PAGE_LABELS = {"none": "Baseline", "FMix (= LMix k = 0)": "FMix", "LMix k = 1 (default)": "LMix", "LMix k = 1": "LMix"}


def _label(shown: str) -> str:
    return PAGE_LABELS.get(shown, shown.replace(" = ", "="))


def _check_ci(shown: str, values: tuple[float, float, float], what: str) -> None:
    """``x [lo, hi]`` against (x, lo, hi)."""
    m = re.fullmatch(rf"({NUM}) \[({NUM}), ({NUM})\]", shown)
    assert m, f"{what}: cannot read {shown!r}"
    for part, value, name in zip(m.groups(), values, ("value", "CI low", "CI high"), strict=True):
        _close(part, value, f"{what} {name}")


def _check_p_holm(shown: str, t: PlannedTest, what: str) -> None:
    m = re.fullmatch(r"(<?[\d.]+) \((<?[\d.]+)\)", shown)
    assert m, f"{what}: cannot read {shown!r}"
    _close(m.group(1), t.p, f"{what} p")
    _close(m.group(2), t.p_adjusted, f"{what} Holm p")


def _interval(estimate: float, half: float) -> tuple[float, float, float]:
    return estimate, estimate - half, estimate + half


def _check_setting_row(study: Study, row: list[str], what: str) -> Cell:
    cell = study.cell(_label(row[0]))
    mean, std = re.fullmatch(rf"({NUM}) ± ({NUM})", row[1]).groups()
    _close(mean, cell.final.mean, f"{what} mean")
    _close(std, cell.final.std, f"{what} std")
    _check_ci(f"{mean} {row[2]}", _interval(cell.final.mean, cell.final.ci95), f"{what} 95% CI")
    _close(row[3], cell.clean_train.mean, f"{what} clean train")
    return cell


def _check_fgsm_row(study: Study, header: list[str], row: list[str], what: str) -> None:
    at = {pt.eps_255: pt.stats for pt in study.cell(_label(row[0])).fgsm}
    for col, shown in zip(header[1:], row[1:], strict=True):
        s = at[float(col.removeprefix("eps "))]
        _check_ci(shown, _interval(s.mean, s.ci95), f"{what} {col}")


def _check_paired_row(study: Study, header: list[str], row: list[str], what: str) -> set[str]:
    a, b = (_label(x) for x in row[0].split(" - "))
    shown_tests = set()
    for col, shown in zip(header[1:], row[1:], strict=True):
        t = study.test(f"{a} - {b}", col.removeprefix("eps "))
        ci, ps = shown.split(", p=")
        _check_ci(ci, _interval(t.estimate, t.ci95), f"{what} {col}")
        _check_p_holm(ps, t, f"{what} {col}")
        shown_tests.add(t.label)
    return shown_tests


def _check_slope_row(study: Study, row: list[str], what: str) -> str:
    t = study.test("slope in k", row[0].removeprefix("FGSM eps "))
    (members,) = [m for _, m in k_families(study.cells) if all(set(dict(c.variant)) <= {"k"} for _, c in m)]
    trend = k_trend("LMix", members, _metric(row[0].removeprefix("FGSM eps ")))
    for shown, mean in zip(row[1].split(", "), trend.means, strict=True):
        _close(shown, mean, f"{what} mean")
    _check_ci(row[2], _interval(t.estimate, t.ci95), f"{what} slope")
    _check_p_holm(row[3], t, what)
    _check_ci(row[4], _interval(t.estimate * trend.span, t.ci95 * trend.span), f"{what} range")
    return t.label


def test_marked_tables_match_their_records() -> None:
    tables = _marked_tables(PAGE.read_text(encoding="utf-8"))
    shown_cells: dict[Study, set[str]] = {s: set() for s in BY_MARKER.values()}
    shown_tests: dict[Study, set[str]] = {s: set() for s in BY_MARKER.values()}
    for study, header, rows in tables:
        kind = header[0]
        for row in rows:
            what = f"{study.root} {study.dataset} {kind} {row[0]!r}"
            if kind == "setting":
                shown_cells[study].add(_check_setting_row(study, row, what).column_label)
            elif kind == "FGSM: setting":
                _check_fgsm_row(study, header, row, what)
            elif kind == "paired: comparison":
                shown_tests[study] |= _check_paired_row(study, header, row, what)
            elif kind == "k slope: metric":
                shown_tests[study].add(_check_slope_row(study, row, what))
            else:
                raise AssertionError(f"unknown marked table {kind!r}")
    for study in BY_MARKER.values():
        assert shown_cells[study] == {c.column_label for c in study.cells}, f"{study}: groups not on the page"
        assert shown_tests[study] == set(study.family), f"{study}: tests of the plan's family not on the page"


def test_page_names_the_records_code_version() -> None:
    text = PAGE.read_text(encoding="utf-8")
    report = _report("results/cpu-study")
    assert len(report.records) == 70 and report.complete  # every run folder finished and used
    assert all(r.fgsm for r in report.records), "every published run carries its fgsm.json"
    for key, shorten in (("git_commit", 7), ("lmix_version", None), ("torch_version", None)):
        values = {str(r.summary[key])[:shorten] for r in report.records}
        for value in values:  # a sweep records the HEAD at each run's start: every commit is named
            assert f"`{value}`" in text or value in text, f"{key} {value} of the records is not on the page"


# ---------------------------------------------------------------------------------------------
# the prose
# ---------------------------------------------------------------------------------------------
class Checks:
    """The functions a check comment's expression may call; each returns the number(s) a literal shows.

    ``S`` is a study (``FM``, ``C10``, ``RN``, ``TS``, ``TSL``); a setting is a report column label (``"LMix k=2"``,
    ``"Baseline"``); a metric ``"final"``, ``"clean"`` (clean training accuracy) or an eps.
    """

    @staticmethod
    def mean(study: Study, setting: str, metric: Any) -> float:
        return Checks.ci(study, setting, metric)[0]

    @staticmethod
    def ci(study: Study, setting: str, metric: Any) -> tuple[float, float, float]:
        cell = study.cell(setting)
        if metric == "clean":
            s = cell.clean_train
        elif metric == "final":
            s = cell.final
        else:
            (s,) = [pt.stats for pt in cell.fgsm if pt.eps_255 == float(metric)]
        return _interval(s.mean, s.ci95)

    @staticmethod
    def means(study: Study, settings: list[str], metrics: list[Any]) -> list[float]:
        return [Checks.mean(study, s, m) for s in settings for m in metrics]

    @staticmethod
    def diff(study: Study, comparison: str, metric: Any) -> tuple[float, float, float]:
        t = study.test(comparison, metric)
        return _interval(t.estimate, t.ci95)

    @staticmethod
    def p(study: Study, comparison: str, metric: Any) -> float:
        return study.test(comparison, metric).p

    @staticmethod
    def holm(study: Study, comparison: str, metric: Any) -> float:
        return study.test(comparison, metric).p_adjusted

    @staticmethod
    def family(study: Study) -> int:
        return len(study.family)

    @staticmethod
    def slope(study: Study, metric: Any, ks: tuple[float, ...] | None = None) -> tuple[float, float, float]:
        t = Checks._trend(study, metric, ks)
        return _interval(t.slope, t.ci95)

    @staticmethod
    def slope_p(study: Study, metric: Any, ks: tuple[float, ...] | None = None) -> float:
        return Checks._trend(study, metric, ks).p

    @staticmethod
    def over_range(study: Study, metric: Any) -> tuple[float, float, float]:
        t = Checks._trend(study, metric, None)
        return _interval(t.slope * t.span, t.ci95 * t.span)

    @staticmethod
    def slope_runs(study: Study, metric: Any) -> int:
        return Checks._trend(study, metric, None).n

    @staticmethod
    def _trend(study: Study, metric: Any, ks: tuple[float, ...] | None) -> Any:
        (members,) = [m for _, m in k_families(study.cells) if all(set(dict(c.variant)) <= {"k"} for _, c in m)]
        if ks is not None:
            members = [(k, c) for k, c in members if k in ks]
        return k_trend("LMix", members, _metric(metric))

    @staticmethod
    def span(values: list[float]) -> tuple[float, float]:
        return min(values), max(values)

    @staticmethod
    def largest(values: list[float]) -> float:
        return max(values)

    @staticmethod
    def smallest(values: list[float]) -> float:
        return min(values)

    @staticmethod
    def chance(study: Study) -> float:
        return 100.0 / CLASSES[study.dataset]

    @staticmethod
    def config(study: Study, key: str) -> float:
        (value,) = {r.config[key] for r in study.runs()}
        return value

    @staticmethod
    def summary(study: Study, key: str, how: str) -> Any:
        values = [float(r.summary[key]) for r in study.runs()]
        return {"sum": sum(values), "median": statistics.median(values), "span": (min(values), max(values))}[how]

    @staticmethod
    def runs(study: Study, commit: str = "") -> int:
        return sum(str(r.summary["git_commit"]).startswith(commit) for r in study.runs())

    @staticmethod
    def seed_span(study: Study, setting: str, metric: str) -> tuple[float, float]:
        """The lowest and highest seed's value of ``"final"`` or ``"clean"`` accuracy."""
        values = study.cell(setting).values("final_acc" if metric == "final" else "final_clean_train_acc")
        return min(values), max(values)

    @staticmethod
    def welch(study: Study, a: str, b: str, metric: Any) -> float:
        """Welch's unpaired p of two settings' runs (the report pairs them by seed; the page may contrast the two)."""

        def values(setting: str) -> list[float]:
            cell = study.cell(setting)
            if metric == "final":
                return cell.values("final_acc")
            (pt,) = [pt for pt in cell.fgsm if pt.eps_255 == float(metric)]
            return pt.values

        return welch_p(values(a), values(b))

    @staticmethod
    def external(why: str) -> None:
        assert len(why) > 10, "external(...) needs the reason the records cannot give this number"
        return None


# The expressions' names: the helpers, the studies, and the few builtins arithmetic needs.
NAMES = {
    **{name: getattr(Checks, name) for name in dir(Checks) if not name.startswith("_")},
    "FM": FM,
    "C10": C10,
    "RN": RN,
    "TS": TS,
    "TSL": TSL,
    "abs": abs,
    "min": min,
    "max": max,
}
# One check per line of a paragraph's check comment: ``<!-- check "L" = E``, ``check "L" = E``, ..., `` -->``.
CHECK = re.compile(r'^\s*(?:<!-- )?check "([^"]+)" = (.+?)(?: -->)?\s*$')
# A number (thousands with commas, a decimal or exponent part) written in prose; one glued to a
# letter, a dot or another digit (an identifier, a version, 0.1M) or joined to a word by a hyphen
# (CIFAR-10, 2-core) is a name, not a number.
_NUMBER = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:e[-+]?\d+)?"
NUMBER = re.compile(rf"(?<![\w.])(?<![A-Za-z]-){_NUMBER}(?![\w.]*\w)(?!-[A-Za-z])")
_N = r"\d+(?:\.\d+)?"
# Design settings, not results: eps, k and the other mixing settings, seeds, tables, findings,
# the numbers of numbered list items (``1. **...``) and the 95% of a confidence interval.
SETTING = re.compile(
    rf"(?:\beps|\bk\s*=|\bimage_k\s*=|\balpha\s*=|\bdecay\s*=|\bseeds?|\bTables?|\bFigures?|\bfindings?)\s*{_N}"
    rf"(?:(?:\s*,\s*|\s+and\s+|\s+or\s+|\s+to\s+|-){_N})*(?:/255)?|{_N}/255|{_N}\s+seeds\b"
    r"|(?:^|(?<= ))\d+\.(?= \*\*)|\b95%(?= (?:t-)?intervals?\b| CI\b)"
)
NOT_PROSE = re.compile(r"`[^`]*`|\]\([^)]*\)")


def _paragraphs(text: str) -> list[tuple[int, str, list[tuple[str, str]]]]:
    """(first line number, prose, checks) of every paragraph or list block outside code, tables and headings."""
    out: list[tuple[int, str, list[tuple[str, str]]]] = []
    block: list[tuple[int, str]] = []
    fenced = False
    for number, line in enumerate([*text.splitlines(), ""], start=1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue
        if line.strip():
            block.append((number, line))
            continue
        skip = not block or block[0][1].lstrip().startswith(("|", "#", "![", "<!-- records"))
        if not skip:
            out.append(_paragraph(block))
        block = []
    return out


def _paragraph(block: list[tuple[int, str]]) -> tuple[int, str, list[tuple[str, str]]]:
    """A paragraph's first line, its prose (line breaks and indents as single spaces) and its checks.

    Its check comment is one HTML comment (several would end a Markdown list), a check per line.
    """
    prose, checks, in_comment = [], [], False
    for number, line in block:
        in_comment = in_comment or line.lstrip().startswith("<!-- check")
        if in_comment:
            m = CHECK.match(line)
            assert m, f"docs/results-cpu.md:{number}: not a check line: {line.strip()!r}"
            checks.append(m.groups())
            in_comment = not line.rstrip().endswith("-->")
        else:
            prose.append(line.strip())
    return block[0][0], " ".join(prose), checks


def _blank(text: str, spans: list[tuple[int, int]]) -> str:
    chars = list(text)
    for a, b in spans:
        chars[a:b] = " " * (b - a)
    return "".join(chars)


def _check_literal(literal: str, expression: str, where: str) -> None:
    value = eval(expression, {"__builtins__": {}, **NAMES})  # noqa: S307 - the page's own check expressions
    if value is None:  # external(...)
        return
    values = list(value) if isinstance(value, (tuple, list)) else [value]
    # the literal's numbers, with a '<' or '>=' bound; a '-' right after a digit is a range's dash
    shown = re.findall(rf"(?:<\s*|>=\s*)?(?:(?<!\d)[-+])?{_NUMBER}", literal)
    assert len(shown) == len(values), (
        f"{where}: {literal!r} shows {len(shown)} numbers, {expression} gives {len(values)}"
    )
    for s, v in zip(shown, values, strict=True):
        _close(s, float(v), f"{where}: {literal!r} = {expression}")


def _unchecked(prose: str, covered: list[tuple[int, int]]) -> list[str]:
    """The numbers of ``prose`` outside ``covered`` spans, settings, code spans and link targets."""
    text = _blank(prose, [m.span() for m in NOT_PROSE.finditer(prose)])  # same length: spans stay valid
    free = [m.span() for m in SETTING.finditer(text)] + covered
    return [m.group() for m in NUMBER.finditer(text) if not any(a <= m.start() and m.end() <= b for a, b in free)]


def _covered(prose: str, checks: list[tuple[str, str]], where: str) -> list[tuple[int, int]]:
    """The span of each check's literal in ``prose``, each a new occurrence; fails on a literal not there."""
    spans: list[tuple[int, int]] = []
    for literal, _ in checks:
        # the literal as it stands, not inside a longer number ("2" is not the 2 of "12")
        found = [m.span() for m in re.finditer(rf"(?<![\d.]){re.escape(literal)}(?!\d)", prose)]
        free = [(a, b) for a, b in found if not any(x < b and a < y for x, y in spans)]
        assert free, f"{where}: the check's literal {literal!r} is not in its paragraph (or each place is taken)"
        spans.append(free[0])
    return spans


def test_every_number_in_the_prose_is_checked_against_the_records() -> None:
    paragraphs = _paragraphs(PAGE.read_text(encoding="utf-8"))
    assert sum(len(c) for _, _, c in paragraphs) > 100, "the page's check comments are missing"
    problems = []
    for line, prose, checks in paragraphs:
        where = f"docs/results-cpu.md:{line}"
        for literal, expression in checks:
            try:
                _check_literal(literal, expression, where)
            except Exception as err:  # every failing check is listed, not just the first
                problems.append(f"{where}: {literal!r} = {expression}: {err}")
        try:
            unchecked = _unchecked(prose, _covered(prose, checks, where))
        except AssertionError as err:
            problems.append(str(err))
            continue
        if unchecked:
            problems.append(f"{where}: number(s) {unchecked} not checked: {prose[:80]!r}...")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "prose, checks, needle",
    [
        (
            "LMix keeps +0.49 [+0.33, +0.63] points.",
            [("+0.49 [+0.33, +0.63]", 'diff(FM, "LMix - FMix", 8)')],
            "page says +0.49",
        ),
        ("CutMix gains 1.2 points.", [], "['1.2'] not checked"),
        ("At eps 8 and k = 4 with 5 seeds (`lr 0.05`).", [], None),
        ("p = 0.020 here.", [("p = 0.021", 'p(FM, "LMix - Baseline", "final")')], "is not in its paragraph"),
    ],
)
def test_the_prose_check_fails_on_a_changed_or_unchecked_number(prose, checks, needle) -> None:
    problems = []
    for literal, expression in checks:
        try:
            _check_literal(literal, expression, "x")
        except AssertionError as err:
            problems.append(str(err))
    try:
        left = _unchecked(prose, _covered(prose, checks, "x"))
        problems += [f"{left} not checked"] if left else []
    except AssertionError as err:
        problems.append(str(err))
    if needle is None:
        assert problems == []
    else:
        assert any(needle in p for p in problems), problems
