"""The cells of a report: the runs of one group and their statistics.

A cell is one (data set, row settings, model, method, column settings) group; its numbers are
the mean, sample standard deviation (ddof 1), count and 95% confidence half-width (Student t)
of its runs' values (:class:`Stats`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

# At import: a report needs the train extra, and an install without it is told so before any run is read.
from scipy import stats as scipy_stats

from lmix.experiments.paper import PaperResult
from lmix.experiments.report.collect import RunRecord
from lmix.experiments.report.settings import format_setting, method_display

if TYPE_CHECKING:
    from lmix.experiments.report.analysis import Versus

__all__ = ["Stats", "FgsmPoint", "Cell"]


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
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
        return cls(mean, std, n, float(scipy_stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n))

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
        vs_none: the test against the row's baseline (``none``) at the same eps
            (:func:`lmix.experiments.report.analysis.versus`: paired by seed, else Welch).
    """

    eps_255: float
    values: list[float]
    dirs: list[str]
    stats: Stats | None
    vs_none: Versus | None = None

    @property
    def p_vs_none(self) -> float | None:
        return None if self.vs_none is None else self.vs_none.p


@dataclass
class Cell:
    """The runs of one (data set, row settings, model, method, column settings) group.

    ``vs_none`` and ``vs_lmix``: per metric (``final_acc``, ``best_acc``), the test against the row's
    baseline and against the LMix reference ``lmix_ref``
    (:func:`lmix.experiments.report.analysis.versus`: paired by seed, else Welch, labelled).
    """

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
    vs_none: dict[str, Versus] | None = None
    vs_lmix: dict[str, Versus] | None = None
    lmix_ref: str | None = None
    not_used: list[RunRecord] = field(default_factory=list)  # runs of this group not in the numbers (failed, ...)
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

    @property
    def p_vs_none(self) -> dict[str, float | None] | None:
        """The p of ``vs_none`` per metric."""
        return None if self.vs_none is None else {k: v.p for k, v in self.vs_none.items()}

    @property
    def p_vs_lmix(self) -> dict[str, float | None] | None:
        """The p of ``vs_lmix`` per metric."""
        return None if self.vs_lmix is None else {k: v.p for k, v in self.vs_lmix.items()}

    def values(self, key: str) -> list[float]:
        return [r.summary[key] for r in self.runs if r.summary.get(key) is not None]


def _nan_to_none(x: float) -> float | None:
    return None if x is None or math.isnan(x) else x
