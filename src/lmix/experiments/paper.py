"""The LMix paper's published accuracies, as data (the paper's Tables 1-5).

Keys use lmix's registry names: data sets from ``lmix.data.list_datasets()``, models from
``lmix.list_models()``, methods from ``lmix.list_mixers()`` ("none" is the paper's "Baseline").

Which metric the paper reports is not the same everywhere:

* Tables 3 (Tiny-ImageNet) and 4 (Fashion-MNIST) give both the best accuracy during training
  ("MaxAcc") and the final one ("Acc").
* Tables 1, 2 and 5 give one number per cell. Section 4 says both "the average performance ...
  following the last phase of training" and "the best performance during training is presented
  as the average", so those numbers are ``metric="unspecified"``: reports show them beside both
  our final and our best accuracy.

The paper gives no standard deviations in its tables and no numbers for its Figures 3-5.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmix.errors import LmixValueError

__all__ = ["PaperResult", "PAPER_RESULTS", "paper_result", "PAPER_EPOCHS"]


@dataclass(frozen=True)
class PaperResult:
    """One published cell.

    Attributes:
        table: where it is published, e.g. "Table 1".
        dataset, model, method: lmix registry names.
        acc: the published accuracy in percent (for ``metric="unspecified"`` the only number).
        final: the published final accuracy, or None where the paper does not say.
        best: the published best-during-training accuracy, or None where the paper does not say.
        metric: "final+best" (both published) or "unspecified" (one number, metric ambiguous).
    """

    table: str
    dataset: str
    model: str
    method: str
    acc: float
    final: float | None
    best: float | None
    metric: str

    def value(self, which: str) -> float:
        """The number to show beside our ``which`` ("final" or "best") accuracy."""
        if which not in ("final", "best"):
            raise LmixValueError(f"which must be 'final' or 'best', got {which!r}")
        picked = self.final if which == "final" else self.best
        return self.acc if picked is None else picked


# Columns of Tables 1, 2 and 5: baseline, FMix, Mixup, CutMix, LMix ("-": not published).
_METHODS = ("none", "fmix", "mixup", "cutmix", "lmix")
_SINGLE: dict[tuple[str, str, str], tuple[float | None, ...]] = {
    ("Table 1", "cifar10", "preact_resnet18"): (94.62, 96.14, 95.67, 95.97, 96.32),
    ("Table 1", "cifar10", "wrn28_10"): (95.32, 96.41, 96.69, 96.63, 96.58),
    ("Table 1", "cifar10", "densenet_bc_190"): (96.32, 97.30, 97.01, 96.95, 97.36),
    ("Table 1", "cifar10", "pyramidnet272_200"): (97.31, 98.54, 97.90, 98.18, 98.58),
    ("Table 2", "cifar100", "preact_resnet18"): (75.12, 79.65, 77.34, 78.48, 79.85),
    ("Table 2", "cifar100", "preact_resnet34"): (76.58, 81.55, 78.54, 79.56, 81.86),
    ("Table 2", "cifar100", "densenet_bc_190"): (78.24, 82.03, 81.95, 81.84, 81.91),
    ("Table 2", "cifar100", "pyramidnet272_200"): (81.64, 83.75, 83.23, 82.69, 83.95),
    ("Table 5", "svhn", "preact_resnet18"): (96.53, None, 96.63, 96.57, 97.01),
    ("Table 5", "svhn", "preact_resnet34"): (97.04, None, 97.21, 97.44, 97.66),
    ("Table 5", "svhn", "wrn28_10"): (97.28, None, 97.48, 97.69, 97.73),
}
# Tables 3 and 4 (PreAct-ResNet-18): method -> (MaxAcc, Acc) = (best, final).
_BOTH: dict[tuple[str, str], dict[str, tuple[float, float]]] = {
    ("Table 3", "tiny_imagenet"): {
        "none": (55.94, 55.86),
        "cutmix": (64.08, 63.84),
        "fmix": (63.33, 62.23),
        "mixup": (61.96, 61.89),
        "lmix": (64.16, 63.92),
    },
    ("Table 4", "fashion_mnist"): {
        "none": (95.70, 95.52),
        "cutmix": (96.02, 95.93),
        "mixup": (96.26, 96.20),
        "lmix": (96.64, 96.62),
    },
}

# The paper's schedule per data set, to flag comparisons with shorter runs.
PAPER_EPOCHS: dict[str, int] = {
    "cifar10": 300,
    "cifar100": 300,
    "svhn": 300,
    "tiny_imagenet": 200,
    "fashion_mnist": 200,
}


def _build() -> dict[tuple[str, str, str], PaperResult]:
    out: dict[tuple[str, str, str], PaperResult] = {}
    for (table, dataset, model), row in _SINGLE.items():
        for method, acc in zip(_METHODS, row, strict=True):
            if acc is not None:
                out[(dataset, model, method)] = PaperResult(
                    table, dataset, model, method, acc, None, None, "unspecified"
                )
    for (table, dataset), cells in _BOTH.items():
        for method, (best, final) in cells.items():
            out[(dataset, "preact_resnet18", method)] = PaperResult(
                table, dataset, "preact_resnet18", method, final, final, best, "final+best"
            )
    return out


PAPER_RESULTS: dict[tuple[str, str, str], PaperResult] = _build()


def paper_result(dataset: str, model: str, method: str) -> PaperResult | None:
    """The paper's number for this data set, model and method, or None if it publishes none."""
    return PAPER_RESULTS.get((dataset, model, method))
