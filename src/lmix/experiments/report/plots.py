"""The report's figures (PNG, matplotlib without pyplot, written atomically).

``fig_accuracy_*`` (final accuracy per method: runs, mean, 95% CI), ``fig3_alpha_*`` (accuracy
against alpha, where runs differ in alpha), ``fig4_curves_*`` (test accuracy per epoch from
``metrics.jsonl``), ``fig5_fgsm_*`` (FGSM accuracy against epsilon from ``fgsm.json``) and
``fig_k_*`` (final and FGSM accuracy against LMix's k, one line per seed, with the fitted slope).
:func:`plot_fgsm_runs` draws given runs' FGSM curves into one PNG (``lmix attack``'s figure).
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import warnings
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lmix.errors import LmixValueError
from lmix.experiments.io import atomic_write
from lmix.experiments.report.analysis import k_families, metric_label, values_by_seed
from lmix.experiments.report.settings import format_setting, method_display, method_key, mixer_defaults
from lmix.experiments.report.stats import Cell, Report, Stats, cell_order

__all__ = ["plot_accuracy", "plot_alpha_sweep", "plot_curves", "plot_fgsm", "plot_k", "plot_fgsm_runs"]


def _slug(*parts: Any) -> str:
    text = "_".join(str(p) for p in parts if p not in (None, ""))
    return "".join(c if c.isalnum() or c in "-.=" else "_" for c in text).strip("_")


def _save_png(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # A setting's name or value from a record may hold a character the font lacks (drawn as a
        # box); matplotlib's warning about it would be a second line on the command's stderr.
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    atomic_write(path, lambda f: f.write(buf.getvalue()))


_MAX_STEM = 120  # file systems allow 255 bytes per name; many varying settings would make more


def _save_panel(fig: Any, out_dir: Path, prefix: str, dataset: str, model: str, row: tuple) -> str:
    """Save a panel's figure as ``PREFIX_DATASET_MODEL_KEY=VALUE....png`` in ``out_dir``; return the file name.

    A name longer than the file system takes is cut, with a hash of the whole name to keep it unique.
    """
    stem = f"{prefix}_{_slug(dataset, model, *[f'{k}={format_setting(v)}' for k, v in row])}"
    if len(stem.encode()) > _MAX_STEM:
        digest = hashlib.sha1(stem.encode()).hexdigest()[:10]
        stem = stem.encode()[: _MAX_STEM - 11].decode(errors="ignore") + "_" + digest
    name = f"{stem}.png"
    _save_png(fig, out_dir / name)
    return name


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
        alpha = mixer_defaults(c.method).get("alpha")
    return None if alpha is None else float(alpha)


def plot_accuracy(report: Report, out_dir: Path) -> list[str]:
    """Final accuracy per method: every run as a dot, the mean with its 95% confidence interval."""
    files = []
    for (dataset, row, model), cells in _panels(report).items():
        cells = sorted((c for c in cells if c.final is not None), key=cell_order)
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
        files.append(_save_panel(fig, out_dir, "fig_accuracy", dataset, model, row))
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
        for method in sorted(series, key=method_key):
            pts = series[method]
            ax.errorbar(
                [a for a, _ in pts],
                [s.mean for _, s in pts],
                yerr=[0.0 if math.isnan(s.std) else s.std for _, s in pts],
                marker="o",
                capsize=3,
                label=method_display(method),
            )
        ax.set_xscale("log")
        ax.legend(fontsize=8)
        files.append(_save_panel(fig, out_dir, "fig3_alpha", dataset, model, row))
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
        files.append(_save_panel(fig, out_dir, "fig4_curves", dataset, model, row))
    return files


def plot_fgsm(report: Report, out_dir: Path) -> list[str]:
    """Fig. 5: FGSM accuracy against epsilon (from fgsm.json): mean over seeds with a 95% CI band."""
    files = []
    for (dataset, row, model), cells in _panels(report).items():
        series = sorted((c for c in cells if c.fgsm), key=cell_order)
        if not series:
            continue
        fig, ax = _figure(f"{dataset}, {cells[0].row_label}: FGSM", "epsilon (x 1/255)", "test accuracy (%)")
        for c in series:
            pts = [pt for pt in c.fgsm if pt.stats is not None]
            x = [pt.eps_255 for pt in pts]
            mean = [pt.stats.mean for pt in pts]
            n = max(len(pt.values) for pt in pts)
            (line,) = ax.plot(x, mean, marker="o", ms=3, lw=1.4, label=f"{c.column_label} (n={n})")
            band = [(xi, pt.stats.mean, pt.stats.ci95) for xi, pt in zip(x, pts) if not math.isnan(pt.stats.ci95)]
            if len(band) > 1:
                ax.fill_between(
                    [b[0] for b in band],
                    [b[1] - b[2] for b in band],
                    [b[1] + b[2] for b in band],
                    color=line.get_color(),
                    alpha=0.15,
                    lw=0,
                )
        ax.text(0.01, 0.01, "lines: mean; bands: 95% CI", transform=ax.transAxes, fontsize=7, color="0.3")
        ax.legend(fontsize=8)
        files.append(_save_panel(fig, out_dir, "fig5_fgsm", dataset, model, row))
    return files


def plot_k(report: Report, out_dir: Path) -> list[str]:
    """Accuracy against k per k family: one panel per metric (final, FGSM per eps).

    Thin grey lines join each seed's runs (a seed fixes the data subset and the initial weights,
    so their slopes are what the per-seed fit averages); black: the mean per k; red dashes: the
    fitted slope (its 95% CI and p are in the panel's title).
    """
    from matplotlib.figure import Figure

    files = []
    for (dataset, row, model), cells in _panels(report).items():
        trends = report.trends.get((dataset, row, model), [])
        for label, members in k_families(cells):
            mine = [t for t in trends if t.family == label]
            if not mine:
                continue
            ncols = min(3, len(mine))
            nrows = math.ceil(len(mine) / ncols)
            fig = Figure(figsize=(4.2 * ncols, 3.4 * nrows))
            fig.suptitle(f"{dataset}, {cells[0].row_label}: {label} against k (k = 0: FMix)", fontsize=10)
            for i, t in enumerate(mine):
                ax = fig.add_subplot(nrows, ncols, i + 1)
                per_seed: dict[Any, list[tuple[float, float]]] = defaultdict(list)
                for k, c in members:
                    for seed, v in values_by_seed(c, t.metric).items():
                        per_seed[seed].append((k, v))
                for pts in per_seed.values():
                    pts.sort()
                    ax.plot([k for k, _ in pts], [v for _, v in pts], color="0.7", lw=0.8, marker=".", ms=3)
                ax.plot(list(t.ks), list(t.means), color="k", marker="o", ms=4, lw=1.4, label="mean per k")
                # the fitted slope, drawn through the mean of all points
                kbar = sum(t.ks) / len(t.ks)
                ybar = sum(t.means) / len(t.means)
                ax.plot(
                    [t.ks[0], t.ks[-1]],
                    [ybar + t.slope * (t.ks[0] - kbar), ybar + t.slope * (t.ks[-1] - kbar)],
                    color="tab:red",
                    ls="--",
                    lw=1.2,
                    label="fitted slope",
                )
                p = "n/a" if t.p is None else f"{t.p:.2g}"
                ci = "" if math.isnan(t.ci95) else f" [{t.slope - t.ci95:+.2f}, {t.slope + t.ci95:+.2f}]"
                ax.set_title(f"{metric_label(t.metric)}: slope {t.slope:+.2f}{ci}/k, p={p}", fontsize=8)
                ax.set_xlabel("k")
                ax.set_ylabel("test accuracy (%)")
                ax.set_xticks(list(t.ks))
                ax.grid(True, alpha=0.3)
                if i == 0:
                    ax.legend(fontsize=7)
            fig.tight_layout()
            # a second family (e.g. LMix alpha=0.5 against k) gets its own file
            extra = () if label == "LMix" else (("family", label.replace(" ", "_")),)
            files.append(_save_panel(fig, out_dir, "fig_k", dataset, model, row + extra))
    return files


def plot_fgsm_runs(
    curves: Sequence[tuple[str, Sequence[float], Sequence[float]]],
    path: str | os.PathLike,
    *,
    title: str | None = None,
) -> Path:
    """Draw accuracy against eps (in 1/255 units) for one or several runs; PNG written atomically.

    Args:
        curves: ``(label, eps_255, acc_percent)`` per run.
        path: the PNG to write.
        title: the figure's title.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not curves:
        raise LmixValueError("no curves to plot")
    fig = Figure(figsize=(5.5, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for label, eps_255, acc in curves:
        order = sorted(range(len(eps_255)), key=lambda i: eps_255[i])
        ax.plot([eps_255[i] for i in order], [acc[i] for i in order], marker="o", label=label)
    ax.set_xlabel("FGSM epsilon (x 1/255)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title)
    if len(curves) > 1:  # one curve: the title says what it is
        ax.legend()
    out = Path(path)
    atomic_write(out, lambda f: fig.savefig(f, format="png", dpi=120))
    return out
