"""Where the runs that are not in the numbers belong: every run folder accounted for.

A run that is not used (failed, running, unfinished, unreadable; see
:mod:`~lmix.experiments.report.collect`) joins the cell it would have been in when its
settings are known (its ``config.yaml``, or its sweep's settings) and agree with the finished
runs on every setting they share: a failed ``lr: 99`` run is not counted against the
``lr: 0.1`` cell. The others are listed under a label of their own. A cell with runs that are
not used says so beside its numbers: ``n=2 of 3, 1 failed`` (``of`` where a ``sweep.json``
says how many runs were asked for; without one, ``n=2, 1 failed``).
"""

from __future__ import annotations

from typing import Any

from lmix.experiments.report.cells import Cell
from lmix.experiments.report.collect import STATUSES, USED, RunRecord, status_counts
from lmix.experiments.report.settings import (
    MIXER_SETTINGS,
    format_setting,
    grouping_settings,
    method_display,
    same_value,
)

__all__ = ["group_key", "cell_key", "cell_label", "attach_not_used", "counts_text", "cell_runs_text"]


def group_key(r: RunRecord, varying: list[str]) -> tuple:
    """(data set, row, model, method, variant) of a run: its cell."""
    row = tuple((k, r.settings.get(k)) for k in varying if k not in MIXER_SETTINGS and r.settings.get(k) is not None)
    variant = tuple((k, r.settings.get(k)) for k in varying if k in MIXER_SETTINGS and r.settings.get(k) is not None)
    return (r.dataset, row, r.model, r.method, variant)


def cell_key(c: Cell) -> tuple:
    """The :func:`group_key` of a cell's runs."""
    return (c.dataset, c.row, c.model, c.method, c.variant)


def cell_label(c: Cell) -> str:
    """A cell's group label: data set, row, column."""
    return f"{c.dataset}, {c.row_label}, {c.column_label}"


def attach_not_used(
    runs: list[RunRecord], used: list[RunRecord], cells: list[Cell], varying: list[str]
) -> tuple[dict[str, str], list[tuple[str, list[RunRecord]]]]:
    """Put each run that is not used into the cell it would have been in (``cell.not_used``).

    Returns:
        ``(groups, unattached)``: the group label of every run not used, by folder; and the runs
        that belong to no cell, by label (sorted).
    """
    common: dict[str, Any] = {}
    for k in {k for r in used for k in r.settings} - set(varying):
        common[k] = next((r.settings[k] for r in used if k in r.settings), None)
    by_key = {cell_key(c): c for c in cells}
    groups: dict[str, str] = {}
    unattached: dict[str, list[RunRecord]] = {}
    for r in sorted((r for r in runs if r.status != USED), key=lambda r: (STATUSES.index(r.status), r.dir)):
        cell, label = _place(r, varying, common, by_key)
        if cell is not None:
            cell.not_used.append(r)
        else:
            unattached.setdefault(label, []).append(r)
        groups[r.dir] = label
    return groups, sorted(unattached.items())


def _place(
    r: RunRecord, varying: list[str], common: dict[str, Any], by_key: dict[tuple, Cell]
) -> tuple[Cell | None, str]:
    """The cell a run not used belongs to (None if none) and its group's label."""
    identity = [r.summary.get(k) or r.config.get(k) for k in ("dataset", "model", "method")]
    if None in identity:
        return None, "[not identified: no readable config.yaml, summary.json or sweep.json entry]"
    name = f"{r.dataset}, {r.model}, {method_display(r.method)}"
    if not r.settings_known:
        return None, f"{name} [settings unknown]"
    r.settings = grouping_settings(r)
    key = group_key(r, varying)
    other = [
        (k, v)
        for k, v in sorted(r.settings.items())
        if k not in varying and v is not None and not same_value(v, common.get(k))
    ]
    cell = by_key.get(key) if not other else None
    if cell is not None:
        return cell, cell_label(cell)
    extra = list(key[1] + key[4]) + other
    shown = " (" + ", ".join(f"{k}={format_setting(v)}" for k, v in extra) + ")" if extra else ""
    return None, f"{name}{shown} [no finished run in this group]"


def counts_text(runs: list[RunRecord]) -> str:
    """``"1 failed, 2 unreadable"``: how many of ``runs`` have each status (used ones left out)."""
    return ", ".join(f"{n} {status}" for status, n in status_counts(runs).items() if status != USED)


def cell_runs_text(c: Cell, *, of: bool, n: int | None) -> str:
    """What a cell's numbers rest on, for the parentheses beside them.

    ``n=2 of 3, 1 failed``: ``n`` runs in the numbers (None: left out), ``of`` the runs asked for
    (where known and more), then the runs not used by status; "" when there is nothing to say.
    """
    parts = []
    if n is not None:
        parts.append(f"n={n}" + (f" of {len(c.runs) + len(c.not_used)}" if of and c.not_used else ""))
    missing = counts_text(c.not_used)
    return ", ".join(parts + ([missing] if missing else []))
