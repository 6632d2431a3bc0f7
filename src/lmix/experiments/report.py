"""Reports over finished runs: paper-layout tables, statistics and figures (``lmix report DIR``).

Every run folder under ``DIR`` that holds a ``summary.json`` is one sample. Runs are grouped
into cells by (data set, model, method, every other setting that differs between runs, except
the seed); a cell's numbers are the mean, sample standard deviation (ddof 1), count and 95%
confidence half-width (Student t) of its runs' ``final_acc`` and ``best_acc``.

Layout (as in the paper): one table per data set, rows = model (plus any non-mixing setting
that varies, e.g. ``train_subset``), columns = method (plus any mixing setting that varies,
e.g. ``alpha`` or ``k``). Settings that a method does not use, and mixing settings equal to
the method's default, are ignored when grouping: ``none`` with ``alpha: 1`` is plain ``none``,
``lmix`` with ``k: 1`` is plain ``lmix``.

Significance: per row, Welch's two-sided t-test (``scipy.stats.ttest_ind(equal_var=False)``)
of every cell against the row's no-augmentation cell (``none``) and against its LMix
reference (the ``lmix`` cell with the same mixing settings where there is one, otherwise the
plain ``lmix`` cell). p-values are not corrected for multiple comparisons.

Regime: Mixed-sample augmentation regularises, so it can only pay off where the baseline fits
its training set. Each row says whether its ``none`` cell's mean final clean training accuracy
(``final_clean_train_acc``) is >= 99% ("overfits") or not ("underfits").

Outputs (``write_report``): ``report.md``, ``report.tex`` (booktabs tables), ``report.json``
(per cell: the run folders and their values: every number can be traced to a summary file),
and PNGs: ``fig_accuracy_*.png`` (final accuracy per method: runs, mean, 95% CI), ``fig3_alpha_*.png`` (accuracy against alpha, where runs differ in alpha),
``fig4_curves_*.png`` (test accuracy per epoch from ``metrics.jsonl``, mean over seeds) and
``fig5_fgsm_*.png`` (FGSM accuracy against epsilon from the runs' ``fgsm.json``).
"""

from __future__ import annotations

import inspect
import io
import json
import math
import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lmix.experiments.io import atomic_write, atomic_write_json, atomic_write_text
from lmix.experiments.paper import PAPER_EPOCHS, PaperResult, paper_result

__all__ = [
    "RunRecord",
    "Stats",
    "Cell",
    "Report",
    "collect_runs",
    "build_report",
    "write_report",
    "render_markdown",
    "render_latex",
    "render_text_summary",
    "load_paper_table",
    "OVERFIT_THRESHOLD",
]

OVERFIT_THRESHOLD = 99.0  # % clean training accuracy of the baseline at which we call it "overfits"

# Settings that do not change what a run computes (or only how fast / where).
_IGNORED_SETTINGS = frozenset(
    {
        "out",
        "progress",
        "tensorboard",
        "num_workers",
        "data_root",
        "download",
        "device",
        "compile",
        "channels_last",
        "eval_train",
        "in_memory",
        "seed",
    }
)
_IDENTITY = ("dataset", "model", "method")
# TrainConfig mixing settings -> the mixer's constructor parameter.
_MIXER_SETTINGS = {
    "alpha": "alpha",
    "decay": "decay",
    "k": "k",
    "image_k": "image_k",
    "box_size": "size",
    "mix_mode": "mode",
    "patchup_prob": "patchup_prob",
    "gamma": "gamma",
    "block_size": "block_size",
    "patchup_type": "patchup_type",
    "mix_p": "p",
    "mix_schedule": "schedule",
}
# The paper's column order, then the other methods.
_METHOD_ORDER = ("none", "fmix", "mixup", "cutmix", "lmix", "cutout", "patchup")
_DISPLAY = {
    "none": "Baseline",
    "fmix": "FMix",
    "mixup": "Mixup",
    "cutmix": "CutMix",
    "lmix": "LMix",
    "cutout": "Cutout",
    "patchup": "PatchUp",
}


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
@dataclass
class RunRecord:
    """One finished run.

    Attributes:
        dir: the run folder, relative to the report's root.
        summary: ``summary.json``.
        config: ``config.yaml`` (empty if missing: identity then comes from the summary).
        metrics: rows of ``metrics.jsonl`` (empty if missing).
        fgsm: ``fgsm.json`` (None if missing).
        settings: the grouping settings (normalised; excludes data set, model, method, seed).
    """

    dir: str
    summary: dict[str, Any]
    config: dict[str, Any]
    metrics: list[dict[str, Any]]
    fgsm: dict[str, Any] | None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def dataset(self) -> str:
        return str(self.summary.get("dataset", self.config.get("dataset")))

    @property
    def model(self) -> str:
        return str(self.summary.get("model", self.config.get("model")))

    @property
    def method(self) -> str:
        return str(self.summary.get("method", self.config.get("method")))

    @property
    def seed(self) -> Any:
        return self.summary.get("seed", self.config.get("seed"))


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

    @property
    def row_label(self) -> str:
        return self.model + (" (" + ", ".join(f"{k}={_fmt_setting(v)}" for k, v in self.row) + ")" if self.row else "")

    @property
    def column_label(self) -> str:
        return _method_display(self.method) + (
            " " + ", ".join(f"{k}={_fmt_setting(v)}" for k, v in self.variant) if self.variant else ""
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


# ---------------------------------------------------------------------------------------------
# collecting and grouping
# ---------------------------------------------------------------------------------------------
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def collect_runs(root: str | os.PathLike) -> tuple[list[RunRecord], list[str]]:
    """Finished runs under ``root`` (folders with a readable ``summary.json``) and unfinished run folders."""
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"lmix report: {str(root)!r} is not a folder of runs")
    records: list[RunRecord] = []
    for path in sorted(root.rglob("summary.json")):
        summary = _read_json(path)
        if not isinstance(summary, dict) or "final_acc" not in summary:
            continue
        run_dir = path.parent
        config: dict[str, Any] = {}
        if (run_dir / "config.yaml").is_file():
            try:
                config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
            except yaml.YAMLError:
                config = {}
        metrics: list[dict[str, Any]] = []
        if (run_dir / "metrics.jsonl").is_file():
            for line in (run_dir / "metrics.jsonl").read_text().splitlines():
                try:
                    metrics.append(json.loads(line))
                except ValueError:
                    continue
        fgsm = _read_json(run_dir / "fgsm.json")
        rel = run_dir.relative_to(root).as_posix() or "."
        records.append(RunRecord(rel, summary, config, metrics, fgsm if isinstance(fgsm, dict) else None))
    done = {root / r.dir for r in records}
    unfinished = sorted(
        p.parent.relative_to(root).as_posix()
        for p in root.rglob("metrics.jsonl")
        if p.parent not in done and not (p.parent / "summary.json").exists()
    )
    return records, unfinished


def _mixer_defaults(method: str) -> dict[str, Any]:
    """The constructor defaults of a single registered method ({} for combinations or unknown names)."""
    if "+" in method:
        return {}
    try:
        from lmix.mixing.registry import mixer_class

        cls = mixer_class(method)
    except (ImportError, ValueError):
        return {}
    sig = inspect.signature(cls.__init__)
    return {n: p.default for n, p in sig.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _accepted(method: str) -> set[str] | None:
    try:
        from lmix.mixing.registry import accepted_params, mixer_class

        return set().union(*(accepted_params(mixer_class(m.strip())) for m in method.split("+"))) | (
            {"p", "schedule"} if "+" in method else set()
        )
    except (ImportError, ValueError):
        return None


def _normalise(record: RunRecord) -> dict[str, Any]:
    """Grouping settings: config minus ignored keys and identity; unused/default mixing settings -> None."""
    settings = {k: _hashable(v) for k, v in record.config.items() if k not in _IGNORED_SETTINGS and k not in _IDENTITY}
    if not record.config:  # a run without config.yaml: what the summary says
        settings = {"epochs": record.summary.get("epochs")}
    accepted = _accepted(record.method)
    defaults = _mixer_defaults(record.method)
    for key, param in _MIXER_SETTINGS.items():
        if key not in settings:
            continue
        value = settings[key]
        if accepted is not None and param not in accepted:
            settings[key] = None
        elif param in defaults and value is not None and _same(value, defaults[param]):
            settings[key] = None
    return settings


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    return a == b


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


def _method_key(method: str) -> tuple[int, str]:
    return (_METHOD_ORDER.index(method) if method in _METHOD_ORDER else len(_METHOD_ORDER), method)


def _method_display(method: str) -> str:
    return "+".join(_DISPLAY.get(m, m) for m in method.split("+"))


def _fmt_setting(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(_fmt_setting(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _sort_value(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (1, float(value))
    return (2, str(value))


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
    if records is None:
        records, unfinished = collect_runs(root)
    if not records:
        raise ValueError(f"lmix report: no finished runs (summary.json) under {str(root)!r}")
    lookup = _paper_lookup(paper)
    for r in records:
        r.settings = _normalise(r)
    keys = sorted({k for r in records for k in r.settings})
    varying = [k for k in keys if len({r.settings.get(k) for r in records}) > 1]

    groups: dict[tuple, list[RunRecord]] = defaultdict(list)
    for r in records:
        row = tuple(
            (k, r.settings.get(k)) for k in varying if k not in _MIXER_SETTINGS and r.settings.get(k) is not None
        )
        variant = tuple(
            (k, r.settings.get(k)) for k in varying if k in _MIXER_SETTINGS and r.settings.get(k) is not None
        )
        groups[(r.dataset, row, r.model, r.method, variant)].append(r)

    cells = []
    for (dataset, row, model, method, variant), runs in groups.items():
        runs.sort(key=lambda r: (_sort_value(r.seed), r.dir))
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
            [_sort_value(v) for _, v in c.row],
            c.model,
            _method_key(c.method),
            [(k, _sort_value(v)) for k, v in c.variant],
        )
    )
    _significance(cells)
    notes = _notes(records, cells, unfinished)
    return Report(str(root), records, cells, varying, unfinished, notes)


def _welch(a: Sequence[float], b: Sequence[float]) -> float | None:
    if len(a) < 2 or len(b) < 2:
        return None
    import warnings

    from scipy import stats

    if len(set(a)) == 1 and len(set(b)) == 1:  # both constant: t is undefined
        return 1.0 if _same(a[0], b[0]) else 0.0
    with warnings.catch_warnings():  # scipy warns about precision for near-constant samples
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return None if math.isnan(p) else p


def _lmix_reference(cell: Cell, candidates: list[Cell]) -> Cell | None:
    """The LMix cell to test ``cell`` against: same mixing settings where possible, else plain LMix."""
    others = [c for c in candidates if c is not cell]
    if not others:
        return None
    mine = dict(cell.variant)

    def score(c: Cell) -> tuple[int, int, int]:
        theirs = dict(c.variant)
        shared = set(mine) & set(theirs)
        disagree = sum(not _same(mine[k], theirs[k]) for k in shared)
        matched = sum(_same(mine[k], theirs[k]) for k in shared)
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
    if not path.is_file():
        raise FileNotFoundError(f"--paper file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"--paper file {str(path)!r} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, list):
        raise ValueError(f"--paper file {str(path)!r} must hold a list of {{dataset, model, method, acc}} mappings")
    out = {}
    for i, e in enumerate(data):
        need = {"dataset", "model", "method", "acc"}
        if not isinstance(e, dict) or not need <= set(e) or set(e) - need - {"final", "best", "table"}:
            raise ValueError(
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


# ---------------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------------
def _nan_to_none(x: float) -> float | None:
    return None if x is None or math.isnan(x) else x


def _fmt_stats(s: Stats | None, *, n: bool = True, tex: bool = False) -> str:
    if s is None:
        return "-"
    pm = r" \pm " if tex else " ± "
    body = f"{s.mean:.2f}" + (f"{pm}{s.std:.2f}" if not math.isnan(s.std) else "")
    if tex:
        body = f"${body}$"
    return body + (f" (n={s.n})" if n else "")


def _fmt_p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return f"{p:.3f}" + (" *" if p < 0.05 else "") if p >= 0.001 else "<0.001 *"


def _rows(report: Report, dataset: str) -> list[tuple[tuple, str, list[Cell]]]:
    rows: dict[tuple, list[Cell]] = {}
    for c in report.cells:
        if c.dataset == dataset:
            rows.setdefault((c.row, c.model), []).append(c)
    return [(key, cs[0].row_label, cs) for key, cs in rows.items()]


def _cell_order(c: Cell) -> tuple:
    return (_method_key(c.method), [(k, _sort_value(v)) for k, v in c.variant])


@dataclass
class _Table:
    """A rendered-agnostic table: rows of cells under method columns."""

    title: str
    key: str  # "final" or "best"
    columns: list[str]
    rows: list[tuple[str, list[Cell | None], str | None]]  # (label, cells, regime or None)


def _tables(report: Report, dataset: str, key: str) -> list[_Table]:
    """The paper-layout table (plain methods) and, where mixing settings vary, a table by those settings."""
    title = "final test accuracy" if key == "final" else "best test accuracy (best epoch)"
    rows = _rows(report, dataset)
    cells = [c for _, _, cs in rows for c in cs]
    tables = []
    plain_methods = sorted({c.method for c in cells if not c.variant}, key=_method_key)
    if plain_methods:
        out_rows = []
        for _, label, cs in rows:
            by_method = {c.method: c for c in cs if not c.variant}
            out_rows.append((label, [by_method.get(m) for m in plain_methods], _regime(cs)[0]))
        tables.append(_Table(title, key, [_method_display(m) for m in plain_methods], out_rows))
    varied_methods = sorted({c.method for c in cells if c.variant}, key=_method_key)
    if varied_methods:
        keys = sorted({k for c in cells for k, _ in c.variant})
        out_rows = []
        for _, label, cs in rows:
            mine = [c for c in cs if c.method in varied_methods]
            variants = sorted(
                {c.variant for c in mine}, key=lambda v: (len(v) > 0, [(k, _sort_value(x)) for k, x in v])
            )
            for variant in variants:
                by_method = {c.method: c for c in mine if c.variant == variant}
                name = ", ".join(f"{k}={_fmt_setting(v)}" for k, v in variant) or "defaults"
                out_rows.append((f"{label}, {name}", [by_method.get(m) for m in varied_methods], None))
        tables.append(
            _Table(f"{title} by {', '.join(keys)}", key, [_method_display(m) for m in varied_methods], out_rows)
        )
    return tables


def _regime(cells: list[Cell]) -> tuple[str, float | None]:
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
    for dataset in _datasets(report):
        for _, label, cells in _rows(report, dataset):
            out.append((dataset, label, _regime(cells)[0]))
    return out


def _datasets(report: Report) -> list[str]:
    return sorted({c.dataset for c in report.cells})


def _cell_text(c: Cell | None, key: str, *, n: bool = True, tex: bool = False) -> str:
    if c is None:
        return "--" if tex else ""
    text = _fmt_stats(getattr(c, key), n=n, tex=tex)
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
            + " | ".join(_cell_text(c, table.key) for c in cells)
            + (f" | {reg or ''} |" if regime else " |")
        )
    return lines


def _stats_md(cells: list[Cell]) -> list[str]:
    lines = [
        "| method | n | final | final 95% CI | p vs none | p vs LMix | best | best 95% CI | p vs none | p vs LMix "
        "| clean train acc | runs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in sorted(cells, key=_cell_order):
        parts = [c.column_label, str(len(c.runs))]
        for s, key in ((c.final, "final_acc"), (c.best, "best_acc")):
            ci = "-" if s is None or math.isnan(s.ci95) else f"[{s.mean - s.ci95:.2f}, {s.mean + s.ci95:.2f}]"
            parts += [
                _fmt_stats(s, n=False),
                ci,
                _fmt_p(c.p_vs_none[key]) if c.p_vs_none else "-",
                (_fmt_p(c.p_vs_lmix[key]) + ("" if c.lmix_ref == "LMix" else f" ({c.lmix_ref})"))
                if c.p_vs_lmix
                else "-",
            ]
        parts.append(_fmt_stats(c.clean_train, n=False))
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
    for dataset in _datasets(report):
        out += [f"## {dataset}", ""]
        for key in ("final", "best"):
            for table in _tables(report, dataset, key):
                out += [f"### {table.title[0].upper()}{table.title[1:]}", ""]
                out += _table_md(table)
                out.append("")
        for _, label, cells in _rows(report, dataset):
            out += [f"### Statistics: {dataset}, {label}", ""]
            out += _stats_md(cells)
            out += ["", f"Regime: {_regime(cells)[0]}.", ""]
            out += _significance_sentences(cells)
            out.append("")
    out += [
        "p-values: Welch's two-sided t-test over seeds (scipy.stats.ttest_ind, equal_var=False), * = p < 0.05, "
        "not corrected for multiple comparisons; n/a where a group has fewer than 2 runs. 95% CI: mean ± "
        't(0.975, n-1) · std / sqrt(n). "overfits": the no-augmentation baseline\'s mean final clean training '
        f"accuracy is >= {OVERFIT_THRESHOLD:g}%, the regime where a regulariser such as mixing can help; "
        '"underfits": below that, where mixing methods are expected to lose.',
        "",
    ]
    if report.notes:
        out += ["## Notes", ""] + [f"- {n}" for n in report.notes] + [""]
    if report.figures:
        out += ["## Figures", ""] + [f"![{Path(f).stem}]({f})" for f in report.figures] + [""]
    out += ["Every number above is computed from the runs' summary.json files; report.json lists them per group.", ""]
    return "\n".join(out)


def _significance_sentences(cells: list[Cell]) -> list[str]:
    lines = []
    base = next((c for c in cells if c.method == "none" and not c.variant), None)
    for c in cells:
        if c is base or c.p_vs_none is None or c.final is None or base is None or base.final is None:
            continue
        p = c.p_vs_none["final_acc"]
        diff = c.final.mean - base.final.mean
        if p is None:
            verdict = "too few runs to test"
        elif p < 0.05:
            verdict = f"significant (p = {p:.3g})"
        else:
            verdict = f"not significant (p = {p:.3g})"
        lines.append(f"- {c.column_label} vs Baseline: {diff:+.2f} points final accuracy, {verdict}.")
    return lines


def _tex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#"), ("$", r"\$")):
        text = text.replace(a, b)
    return text


def render_latex(report: Report) -> str:
    """booktabs tables (final and best accuracy per data set); needs ``\\usepackage{booktabs}``."""
    out = ["% lmix report: tables in the paper's layout. Needs \\usepackage{booktabs}.", ""]
    for dataset in _datasets(report):
        cells = [c for c in report.cells if c.dataset == dataset]
        ns = {len(c.runs) for c in cells}
        seeds_text = f"{next(iter(ns))} seeds" if len(ns) == 1 else "seeds (n per cell)"
        has_paper = any(c.paper is not None for c in cells)
        for key in ("final", "best"):
            for table in _tables(report, dataset, key):
                caption = (
                    f"{_tex_escape(dataset)}: {_tex_escape(table.title)} (\\%), mean $\\pm$ std over {seeds_text}"
                    + ("; the paper's number in brackets" if has_paper else "")
                    + "."
                )
                out += [
                    "\\begin{table}[t]",
                    "\\centering",
                    f"\\caption{{{caption}}}",
                    "\\begin{tabular}{l" + "c" * len(table.columns) + "}",
                    "\\toprule",
                    "Model & " + " & ".join(_tex_escape(c) for c in table.columns) + " \\\\",
                    "\\midrule",
                ]
                for label, row_cells, _ in table.rows:
                    vals = [_cell_text(c, key, n=len(ns) > 1, tex=True) for c in row_cells]
                    out.append(_tex_escape(label) + " & " + " & ".join(vals) + " \\\\")
                out += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(out)


def render_text_summary(report: Report) -> str:
    """A short terminal summary: the final-accuracy table(s), significance against the baseline, regimes."""
    out = []
    for dataset in _datasets(report):
        for table in _tables(report, dataset, "final"):
            out.append(f"{dataset}: {table.title} (%), mean ± std over seeds (n runs)")
            out += _table_md(table, regime=False)
        for _, label, cells in _rows(report, dataset):
            out.append(f"{label}: regime: {_regime(cells)[0]}")
            out += ["  " + s[2:] for s in _significance_sentences(cells)]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


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
                "regime": _regime(
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
                "p_vs_lmix": c.p_vs_lmix,
                "lmix_reference": c.lmix_ref,
            }
        )
    return {
        "root": report.root,
        "num_runs": len(report.records),
        "varying_settings": report.varying,
        "groups": cells,
        "unfinished": report.unfinished,
        "notes": report.notes,
        "figures": report.figures,
    }


def _jsonable(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------
def _slug(*parts: Any) -> str:
    text = "_".join(str(p) for p in parts if p not in (None, ""))
    return "".join(c if c.isalnum() or c in "-.=" else "_" for c in text).strip("_")


def _save_png(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def _figure(title: str, xlabel: str, ylabel: str):
    from matplotlib.figure import Figure  # no pyplot: no global backend state, Agg canvas on save

    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _panels(report: Report) -> dict[tuple, list[Cell]]:
    panels: dict[tuple, list[Cell]] = {}
    for c in report.cells:
        panels.setdefault((c.dataset, c.row, c.model), []).append(c)
    return panels


def _effective_alpha(c: Cell) -> float | None:
    alpha = dict(c.variant).get("alpha")
    if alpha is None:
        alpha = _mixer_defaults(c.method).get("alpha")
    return None if alpha is None else float(alpha)


def plot_accuracy(report: Report, out_dir: Path) -> list[str]:
    """Final accuracy per method: every run as a dot, the mean with its 95% confidence interval."""
    files = []
    for (dataset, row, model), cells in _panels(report).items():
        cells = sorted((c for c in cells if c.final is not None), key=_cell_order)
        if len(cells) > 12:  # e.g. an alpha sweep: the methods at their defaults
            cells = [c for c in cells if not c.variant] or cells[:12]
        if not cells:
            continue
        fig, ax = _figure(f"{dataset}, {cells[0].row_label}: final accuracy", "", "final test accuracy (%)")
        for i, c in enumerate(cells):
            vals = c.values("final_acc")
            ax.scatter([i] * len(vals), vals, s=14, color="0.55", zorder=2)
            s = c.final
            err = None if s is None or math.isnan(s.ci95) else s.ci95
            ax.errorbar([i + 0.15], [s.mean], yerr=err, fmt="o", color="C0", capsize=4, zorder=3)
        ax.set_xticks(range(len(cells)), [c.column_label for c in cells], rotation=30 if len(cells) > 6 else 0)
        ax.set_xlim(-0.6, len(cells) - 0.4)
        ax.text(0.01, 0.01, "grey: runs; blue: mean and 95% CI", transform=ax.transAxes, fontsize=7, color="0.3")
        name = f"fig_accuracy_{_slug(dataset, model, *[f'{k}={_fmt_setting(v)}' for k, v in row])}.png"
        _save_png(fig, out_dir / name)
        files.append(name)
    return files


def plot_alpha_sweep(report: Report, out_dir: Path) -> list[str]:
    """Fig. 3: final accuracy against alpha per method (mean ± std), baseline as a band."""
    files = []
    for (dataset, row, model), cells in _panels(report).items():
        series: dict[str, list[tuple[float, Stats]]] = defaultdict(list)
        for c in cells:
            other = {k: v for k, v in c.variant if k != "alpha"}
            alpha = _effective_alpha(c)
            if c.method == "none" or other or alpha is None or c.final is None:
                continue
            series[c.method].append((alpha, c.final))
        series = {m: sorted(pts) for m, pts in series.items() if len({a for a, _ in pts}) >= 2}
        if not series:
            continue
        label = cells[0].row_label
        fig, ax = _figure(f"{dataset}, {label}: final accuracy against alpha", "alpha", "final test accuracy (%)")
        base = next((c for c in cells if c.method == "none" and not c.variant), None)
        if base is not None and base.final is not None:
            ax.axhline(base.final.mean, color="k", ls="--", lw=1, label=f"Baseline (n={base.final.n})")
            if not math.isnan(base.final.std):
                ax.axhspan(base.final.mean - base.final.std, base.final.mean + base.final.std, color="k", alpha=0.08)
        for method in sorted(series, key=_method_key):
            pts = series[method]
            ax.errorbar(
                [a for a, _ in pts],
                [s.mean for _, s in pts],
                yerr=[0.0 if math.isnan(s.std) else s.std for _, s in pts],
                marker="o",
                capsize=3,
                label=_method_display(method),
            )
        ax.set_xscale("log")
        ax.legend(fontsize=8)
        name = f"fig3_alpha_{_slug(dataset, model, *[f'{k}={_fmt_setting(v)}' for k, v in row])}.png"
        _save_png(fig, out_dir / name)
        files.append(name)
    return files


def plot_curves(report: Report, out_dir: Path, *, max_series: int = 10) -> list[str]:
    """Fig. 4: test accuracy per epoch (from metrics.jsonl), mean over seeds with a ± std band."""
    import numpy as np

    files = []
    for (dataset, row, model), cells in _panels(report).items():
        with_metrics = [c for c in cells if any(r.metrics for r in c.runs)]
        if len(with_metrics) > max_series:  # e.g. an alpha sweep: keep the plain methods readable
            plain = [c for c in with_metrics if not c.variant]
            with_metrics = plain if plain else with_metrics[:max_series]
        if not with_metrics:
            continue
        fig, ax = _figure(f"{dataset}, {cells[0].row_label}: test accuracy per epoch", "epoch", "test accuracy (%)")
        for c in with_metrics:
            curves = [[m["test_acc"] for m in r.metrics if "test_acc" in m] for r in c.runs if r.metrics]
            curves = [cv for cv in curves if cv]
            length = min(len(cv) for cv in curves)
            arr = np.array([cv[:length] for cv in curves], dtype=float)
            mean = arr.mean(axis=0)
            x = np.arange(1, length + 1)
            (line,) = ax.plot(x, mean, lw=1.4, label=f"{c.column_label} (n={len(curves)})")
            if len(curves) > 1:
                std = arr.std(axis=0, ddof=1)
                ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.15, lw=0)
        ax.legend(fontsize=8)
        name = f"fig4_curves_{_slug(dataset, model, *[f'{k}={_fmt_setting(v)}' for k, v in row])}.png"
        _save_png(fig, out_dir / name)
        files.append(name)
    return files


def plot_fgsm(report: Report, out_dir: Path) -> list[str]:
    """Fig. 5: FGSM accuracy against epsilon (from fgsm.json), mean ± std over seeds."""
    import numpy as np

    files = []
    for (dataset, row, model), cells in _panels(report).items():
        series = []
        for c in cells:
            curves = [r.fgsm for r in c.runs if r.fgsm and "eps" in r.fgsm and "acc" in r.fgsm]
            if not curves:
                continue
            eps_lists = Counter(tuple(float(e) for e in cv["eps"]) for cv in curves)
            eps = eps_lists.most_common(1)[0][0]  # runs attacked at other eps are left out of the mean
            accs = np.array(
                [[float(a) for a in cv["acc"]] for cv in curves if tuple(float(e) for e in cv["eps"]) == eps]
            )
            series.append((c, np.array(eps), accs))
        if not series:
            continue
        fig, ax = _figure(f"{dataset}, {cells[0].row_label}: FGSM", "epsilon (x 1/255)", "test accuracy (%)")
        for c, eps, accs in series:
            err = accs.std(axis=0, ddof=1) if len(accs) > 1 else None
            ax.errorbar(
                eps * 255, accs.mean(axis=0), yerr=err, marker="o", capsize=3, label=f"{c.column_label} (n={len(accs)})"
            )
        ax.legend(fontsize=8)
        name = f"fig5_fgsm_{_slug(dataset, model, *[f'{k}={_fmt_setting(v)}' for k, v in row])}.png"
        _save_png(fig, out_dir / name)
        files.append(name)
    return files


def write_report(report: Report, out_dir: str | os.PathLike) -> list[Path]:
    """Write figures, report.md, report.tex and report.json into ``out_dir`` (atomically); return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report.figures = (
        plot_accuracy(report, out_dir)
        + plot_alpha_sweep(report, out_dir)
        + plot_curves(report, out_dir)
        + plot_fgsm(report, out_dir)
    )
    atomic_write_text(out_dir / "report.md", render_markdown(report))
    atomic_write_text(out_dir / "report.tex", render_latex(report))
    atomic_write_json(out_dir / "report.json", report_json(report))
    return [out_dir / "report.md", out_dir / "report.tex", out_dir / "report.json"] + [
        out_dir / f for f in report.figures
    ]
