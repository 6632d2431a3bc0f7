"""docs/results-cpu.md against the published run records in results/cpu-study/.

Every result table of the page (the two per-data-set tables and the LMix ablation) is parsed
and each number in it (final accuracy mean ± std, 95% CI, difference to the baseline, Welch p,
clean training accuracy) must equal, at the precision the page prints, what ``build_report``
computes from the records, so the page cannot drift from them. Skipped where the records or
the page are not there (an installed wheel has neither).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from lmix.experiments.report import Cell, Report, build_report

ROOT = Path(__file__).resolve().parents[3]
RECORDS = ROOT / "results" / "cpu-study"
PAGE = ROOT / "docs" / "results-cpu.md"

pytestmark = pytest.mark.skipif(
    not (RECORDS.is_dir() and PAGE.is_file()), reason="results/cpu-study or docs/results-cpu.md not present"
)

DATASETS = {"Fashion-MNIST": "fashion_mnist", "CIFAR-10": "cifar10"}
# Row label on the page -> (method, varying mixing settings) of the report's cell.
MAIN_ROWS: dict[str, tuple[str, tuple[tuple[str, Any], ...]]] = {
    "none": ("none", ()),
    "Mixup": ("mixup", ()),
    "CutMix": ("cutmix", ()),
    "FMix": ("fmix", ()),
    "FMix (= LMix k = 0)": ("fmix", ()),
    "LMix": ("lmix", ()),
    "LMix (k = 1)": ("lmix", ()),
}
ABLATION_ROWS: dict[str, tuple[str, tuple[tuple[str, Any], ...]]] = {
    "k = 0 (FMix)": ("fmix", ()),
    "k = 0.5": ("lmix", (("k", 0.5),)),
    "k = 1 (default)": ("lmix", ()),
    "k = 2": ("lmix", (("k", 2.0),)),
    "k = 4": ("lmix", (("k", 4.0),)),
    "k = 1, image_k = 1 (sharpening)": ("lmix", (("image_k", 1.0),)),
}
NUM = r"[-+]?\d+(?:\.\d+)?"


def _cells_of(line: str) -> list[str]:
    return [c.strip().replace("**", "") for c in line.strip().strip("|").split("|")]


def _read_table(lines: list[str], i: int) -> tuple[list[str], list[list[str]], int]:
    """The Markdown table whose header is ``lines[i]``: (header, body rows, index after it)."""
    header, j, rows = _cells_of(lines[i]), i + 2, []
    while j < len(lines) and lines[j].startswith("|"):
        rows.append(_cells_of(lines[j]))
        j += 1
    return header, rows, j


def _tables(text: str) -> list[tuple[str, str, list[list[str]]]]:
    """(data set, kind, body rows) of every result table; kind is 'main' or 'ablation'."""
    out: list[tuple[str, str, list[list[str]]]] = []
    dataset: str | None = None
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        heading = re.match(r"###\s+(\S+)", line)
        if heading and heading.group(1) in DATASETS:
            dataset = DATASETS[heading.group(1)]
        if line.startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            header, rows, i = _read_table(lines, i)
            kind = {"method": "main", "LMix setting": "ablation"}.get(header[0])
            if kind is not None:
                assert dataset is not None, f"table {header} before any data-set heading"
                out.append((dataset, kind, rows))
            continue
        i += 1
    return out


def _close(shown: str, value: float, what: str) -> None:
    """``value`` printed at the precision of ``shown`` (a number or '<0.001') reads ``shown``."""
    shown = shown.strip()
    if shown.startswith("<"):
        assert value < float(shown[1:]), f"{what}: page says {shown}, records give {value}"
        return
    assert re.fullmatch(NUM, shown), f"{what}: cannot read {shown!r}"
    decimals = len(shown.split(".")[1]) if "." in shown else 0
    assert abs(value - float(shown)) <= 0.5 * 10**-decimals + 1e-9, f"{what}: page says {shown}, records give {value}"


def _check_final_row(row: list[str], cell: Cell, what: str) -> None:
    """A result row's ``mean ± std``, ``[low, high]`` (columns 1 and 2) and clean train (last column)."""
    assert cell.final is not None and cell.clean_train is not None
    mean, std = re.fullmatch(rf"({NUM}) ± ({NUM})", row[1]).groups()
    _close(mean, cell.final.mean, f"{what} mean")
    _close(std, cell.final.std, f"{what} std")
    lo, hi = re.fullmatch(rf"\[({NUM}), ({NUM})\]", row[2]).groups()
    _close(lo, cell.final.mean - cell.final.ci95, f"{what} CI low")
    _close(hi, cell.final.mean + cell.final.ci95, f"{what} CI high")
    _close(row[-1], cell.clean_train.mean, f"{what} clean train")


@pytest.fixture(scope="module")
def report() -> Report:
    return build_report(RECORDS, paper=None)


def _cell(report: Report, dataset: str, method: str, variant: tuple[tuple[str, Any], ...]) -> Cell:
    found = [c for c in report.cells if (c.dataset, c.method, c.variant) == (dataset, method, variant)]
    assert len(found) == 1, f"{dataset} {method} {variant}: {len(found)} cells in the report"
    return found[0]


def test_page_tables_match_the_records(report: Report) -> None:
    tables = _tables(PAGE.read_text(encoding="utf-8"))
    assert sorted((d, k, len(rows)) for d, k, rows in tables) == [
        ("cifar10", "main", 5),
        ("fashion_mnist", "ablation", 6),
        ("fashion_mnist", "main", 5),
    ]
    shown_cells: set[int] = set()
    for dataset, kind, rows in tables:
        labels = MAIN_ROWS if kind == "main" else ABLATION_ROWS
        base = _cell(report, dataset, "none", ())
        for row in rows:
            label = row[0]
            assert label in labels, f"unknown row {label!r} in the {dataset} {kind} table"
            cell = _cell(report, dataset, *labels[label])
            shown_cells.add(id(cell))
            what = f"{dataset} {kind} {label!r}"
            _check_final_row(row, cell, what)
            if kind == "main":
                if cell is base:
                    assert row[3] == row[4] == "", f"{what}: the baseline has no difference or p"
                else:
                    _close(row[3], cell.final.mean - base.final.mean, f"{what} vs baseline")
                    _close(row[4], cell.p_vs_none["final_acc"], f"{what} p vs none")
            elif cell.method == "lmix" and cell.variant == ():
                assert row[3] == "-", f"{what}: the reference row has no p"
            else:
                _close(row[3], cell.p_vs_lmix["final_acc"], f"{what} p vs LMix k = 1")
    # Every group of the records is on the page.
    assert shown_cells == {id(c) for c in report.cells}


def test_page_names_the_records_code_version(report: Report) -> None:
    text = PAGE.read_text(encoding="utf-8")
    assert len(report.records) == 70 and report.complete  # every run folder finished and used
    assert all(r.fgsm for r in report.records), "every published run carries its fgsm.json"
    for key, shorten in (("git_commit", 7), ("lmix_version", None), ("torch_version", None)):
        values = {str(r.summary[key])[:shorten] for r in report.records}
        for value in values:  # a sweep records the HEAD at each run's start: every commit is named
            assert f"`{value}`" in text or value in text, f"{key} {value} of the records is not on the page"


# Tables introduced by a marker line ``<!-- records: ROOT, dataset: NAME -->`` (the FGSM, paired and
# k tables of the page): each number must equal what build_report(ROOT) gives for NAME.
MARKER = re.compile(r"<!-- records: (\S+), dataset: (\w+) -->")
SETTING_ROWS: dict[str, tuple[str, tuple[tuple[str, Any], ...]]] = {
    **{label: MAIN_ROWS[label] for label in ("none", "Mixup", "CutMix", "FMix (= LMix k = 0)")},
    "LMix k = 1 (default)": ("lmix", ()),
    "LMix k = 0.5": ("lmix", (("k", 0.5),)),
    "LMix k = 2": ("lmix", (("k", 2.0),)),
    "LMix k = 4": ("lmix", (("k", 4.0),)),
    "LMix image_k = 1": ("lmix", (("image_k", 1.0),)),
}
SIGNED_CI = rf"({NUM}) \[({NUM}), ({NUM})\]"


def _marked_tables(text: str) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """(records root, data set, header, body rows) of every table right after a marker."""
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        m = MARKER.fullmatch(line.strip())
        if not m:
            continue
        assert lines[i + 1].startswith("|") and lines[i + 2].startswith("|---"), f"no table after {line}"
        header, rows, _ = _read_table(lines, i + 1)
        out.append((m.group(1), m.group(2), header, rows))
    return out


def _check_signed_ci(shown: str, diff: float, half: float, what: str) -> None:
    d, lo, hi = re.fullmatch(SIGNED_CI, shown).groups()
    _close(d, diff, f"{what} difference")
    _close(lo, diff - half, f"{what} CI low")
    _close(hi, diff + half, f"{what} CI high")


def _check_p_holm(shown: str, p: float, p_holm: float, what: str) -> None:
    a, b = re.fullmatch(r"(<?[\d.]+) \((<?[\d.]+)\)", shown).groups()
    _close(a, p, f"{what} p")
    _close(b, p_holm, f"{what} Holm p")


def test_marked_tables_match_their_records() -> None:
    tables = _marked_tables(PAGE.read_text(encoding="utf-8"))
    assert tables, "no marked tables on the page"
    reports: dict[str, Report] = {}
    kinds = set()
    for root, dataset, header, rows in tables:
        assert (ROOT / root).is_dir(), f"{root}: no such records folder"
        report = reports.setdefault(root, build_report(ROOT / root, paper=None))
        (key,) = [k for k in report.paired if k[0] == dataset]
        paired = {(t.a, t.b, t.metric): t for t in report.paired[key]}
        kind = header[0]
        kinds.add((root, dataset, kind))
        for row in rows:
            what = f"{root} {dataset} {kind} {row[0]!r}"
            if kind == "k slope: metric":
                metric = "final_acc" if row[0] == "final" else float(row[0].removeprefix("FGSM eps "))
                (t,) = [t for t in report.trends[key] if t.metric == metric]
                for shown, mean in zip(row[1].split(", "), t.means, strict=True):
                    _close(shown, mean, f"{what} mean")
                _check_signed_ci(row[2], t.slope, t.ci95, f"{what} slope")
                _close(row[3], t.p, f"{what} p")
                _check_signed_ci(row[4], t.slope * t.span, t.ci95 * t.span, f"{what} range")
                continue
            assert row[0] in SETTING_ROWS, f"unknown row {row[0]!r} in {what}"
            cell = _cell(report, dataset, *SETTING_ROWS[row[0]])
            if kind == "setting":
                _check_final_row(row, cell, what)
                if cell.method == "none":
                    assert row[3] == row[4] == row[5] == ""
                    continue
                t = paired[(cell.column_label, "Baseline", "final_acc")]
                _check_signed_ci(row[3], t.diff, t.ci95, what)
                _check_p_holm(row[4], t.p, t.p_holm, what)
                _close(row[5], cell.p_vs_none["final_acc"], f"{what} Welch p")
            elif kind == "FGSM: setting":
                at = {pt.eps_255: pt.stats for pt in cell.fgsm}
                for col, shown in zip(header[1:], row[1:], strict=True):
                    s = at[float(col.removeprefix("eps "))]
                    mean, lo, hi = re.fullmatch(rf"({NUM}) \[({NUM}), ({NUM})\]", shown).groups()
                    _close(mean, s.mean, f"{what} {col}")
                    _close(lo, s.mean - s.ci95, f"{what} {col} CI low")
                    _close(hi, s.mean + s.ci95, f"{what} {col} CI high")
            elif kind == "FGSM vs baseline, paired: setting":
                for col, shown in zip(header[1:], row[1:], strict=True):
                    t = paired[(cell.column_label, "Baseline", float(col.removeprefix("eps ")))]
                    ci, ps = shown.split(", p=")
                    _check_signed_ci(ci, t.diff, t.ci95, f"{what} {col}")
                    _check_p_holm(ps, t.p, t.p_holm, f"{what} {col}")
            else:
                raise AssertionError(f"unknown marked table {kind!r}")
    # the k study on a residual network is on the page with every table kind
    resnet = {k for r, d, k in kinds if r == "results/cpu-study-resnet" and d == "cifar10"}
    assert resnet == {"setting", "FGSM: setting", "FGSM vs baseline, paired: setting", "k slope: metric"}
