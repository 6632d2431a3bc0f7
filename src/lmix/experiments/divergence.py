"""When a run has diverged: a loss that is not finite, or finite but far past any trained model's.

One rule, shared by the trainer (which stops such a run and marks it failed) and by the readers
of run folders (``lmix report``, ``lmix sweep``), so a run recorded before the rule existed is
judged the same way as a new one.

The bound: a classifier that predicts every class with equal probability scores a cross-entropy
of ``ln C``; a trained one scores less on its training data, and an over-fitted one at most a few
times that on held-out data (the largest loss in this repository's records, over every epoch of
every run, is 1.08 ``ln C``). An epoch's mean loss above ``LOSS_FACTOR * max(ln C, 1)`` means the
true class gets, on average, a probability below ``e^-10`` or so, which takes logits of a
magnitude that only exploded weights give (a run with ``--lr 20`` reaches 1e10 and accuracy at
chance). ``max(ln C, 1)`` keeps the bound meaningful for two classes (``ln 2 = 0.69``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["LOSS_FACTOR", "LOSS_KEYS", "loss_bound", "loss_problem"]

#: How many times ``max(ln C, 1)`` an epoch's mean loss may reach before the run counts as diverged.
LOSS_FACTOR = 10.0
#: The losses of a ``metrics.jsonl`` row that the rule checks.
LOSS_KEYS = ("train_loss", "test_loss")


def loss_bound(num_classes: int) -> float:
    """The largest mean cross-entropy a run with ``num_classes`` classes may report (see the module)."""
    return LOSS_FACTOR * max(math.log(max(int(num_classes), 2)), 1.0)


def loss_problem(row: Mapping[str, Any], num_classes: int) -> str | None:
    """Why one epoch's metrics show a diverged run, or None when they do not.

    Args:
        row: one ``metrics.jsonl`` row (``train_loss``, ``test_loss``; missing or non-numeric
            entries are not judged here: the record readers report those).
        num_classes: the data set's number of classes.

    Returns:
        One phrase such as ``"train_loss 8.8e+10 is above the bound 23.0 (10 x ln 10)"``, or None.
    """
    bound = loss_bound(num_classes)
    for key in LOSS_KEYS:
        value = row.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not math.isfinite(value):
            return f"{key} is {value}"
        if value > bound:
            base = f"ln {max(int(num_classes), 2)}" if math.log(max(int(num_classes), 2)) >= 1.0 else "1"
            return f"{key} {value:.3g} is above the bound {bound:.3g} ({LOSS_FACTOR:g} x {base})"
    return None
