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

Declared analysis: a sweep spec's ``analysis`` plan (:mod:`lmix.experiments.plan`, carried by
``sweep.json``, or given with ``lmix report --plan SPEC``) is computed first
(:mod:`~lmix.experiments.report.planned`): every declared comparison on every primary metric,
paired by seed, Holm-adjusted over the declared family, and labelled primary (written before
the runs) or post hoc. Every other test below is exploratory, and the report says so.

Significance (exploratory): per row, every cell against the row's no-augmentation cell
(``none``) and against its LMix reference (the ``lmix`` cell with the same mixing settings where
there is one, otherwise the plain ``lmix`` cell), two-sided. In a sweep a seed fixes the
training subset, the initial weights and the batch order, so two cells whose runs have the same
seeds (one run each) are compared paired by seed (``scipy.stats.ttest_rel``): the same p as the
"Paired by seed" table, report.json's ``paired`` and ``lmix compare``. Only cells that cannot be
paired (their seeds differ, or a seed repeats within one) get Welch's unpaired test
(``scipy.stats.ttest_ind(equal_var=False)``), labelled "Welch (unpaired: seeds differ)" wherever
it is shown (:func:`~lmix.experiments.report.analysis.versus`). These p-values are not corrected
for multiple comparisons; the "Paired by seed" tables add Holm's adjustment per column and
reference, and the report names each of those families.

Regime: Mixed-sample augmentation regularises, so it can only pay off where the baseline fits
its training set. Each row says whether its ``none`` cell's mean final clean training accuracy
(``final_clean_train_acc``) is >= 99% ("overfits") or not ("underfits").

Robustness: where runs have an ``fgsm.json`` (``lmix attack``, or a sweep's ``attack_eps``), each
row gets a table of FGSM accuracy per eps and cell (method, and k or any other mixing setting
that varies): mean and 95% CI, and the same test against the baseline at the same eps (paired by
seed, else Welch, labelled).

Run conditions: under every table, the mix mode (``mix_mode``, or the method's default), the
precision (``amp``) and device of the runs behind it, and the distinct values of the provenance
fields of their summaries (``lmix_version``, ``torch_version``, ``git_commit``, ``device_name``).

Every run folder is accounted for (:mod:`~lmix.experiments.report.collect`): used, failed
(``failed.json``, or a ``metrics.jsonl`` whose loss diverged: ``failed (diverged)``), running,
unfinished or unreadable (a damaged record, or a finished run without its ``config.yaml`` or
``metrics.jsonl``: which file, what is wrong). Only used runs are in the numbers; each table cell
and the "Runs" section say how many of a group are not, and why.

Data flow, one module per step: :mod:`~lmix.experiments.report.collect` (finding runs, reading
their records) -> :mod:`~lmix.experiments.report.settings` (what groups runs, names and order)
-> :mod:`~lmix.experiments.report.stats` (cells, statistics, tests, regimes; the seed-paired
tests and k slopes of :mod:`~lmix.experiments.report.analysis`) ->
:mod:`~lmix.experiments.report.plots` (figures) and :mod:`~lmix.experiments.report.render`
(Markdown, LaTeX, JSON, ``write_report``).

Outputs (``write_report``, through a temporary folder: a report that fails leaves nothing half-written): ``report.md`` (the declared analysis first), ``report.tex`` (booktabs tables), ``report.json``
(per cell: the run folders and their values: every number can be traced to a summary file),
and PNGs: ``fig_accuracy_*.png`` (final accuracy per method: runs, mean, 95% CI), ``fig3_alpha_*.png`` (accuracy against alpha, where runs differ in alpha),
``fig4_curves_*.png`` (test accuracy per epoch from ``metrics.jsonl``, mean over seeds) and
``fig5_fgsm_*.png`` (FGSM accuracy against epsilon from the runs' ``fgsm.json``).
"""

from lmix.experiments.report.collect import RunRecord, collect_runs
from lmix.experiments.report.plots import plot_accuracy, plot_alpha_sweep, plot_curves, plot_fgsm, plot_fgsm_runs
from lmix.experiments.report.render import (
    render_latex,
    render_markdown,
    render_runs_text,
    render_text_summary,
    report_json,
    write_report,
)
from lmix.experiments.report.stats import (
    OVERFIT_THRESHOLD,
    Cell,
    Report,
    Stats,
    build_report,
    load_paper_table,
)

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
    "render_runs_text",
    "report_json",
    "load_paper_table",
    "plot_accuracy",
    "plot_alpha_sweep",
    "plot_curves",
    "plot_fgsm",
    "plot_fgsm_runs",
    "OVERFIT_THRESHOLD",
]
