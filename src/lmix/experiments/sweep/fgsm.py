"""The spec's ``attack_eps``: FGSM on each trained run, recorded in ``RUN/fgsm.json`` (docs/guide/fgsm.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmix._checks import is_real
from lmix.experiments.attack import attack_run, read_fgsm, write_fgsm
from lmix.experiments.sweep.expand import Run

__all__ = ["AttackPlan", "attack_plan", "has_fgsm", "needs_attack", "attack"]


@dataclass(frozen=True)
class AttackPlan:
    """The eps to attack every run with, as fractions of the [0, 1] pixel range and in 1/255 units."""

    eps: tuple[float, ...]
    eps_255: tuple[float, ...]


def attack_plan(eps_255: Sequence[float] | None) -> AttackPlan | None:
    """The plan for a spec's ``attack_eps`` (1/255 units; None: no attack)."""
    if eps_255 is None:
        return None
    return AttackPlan(eps=tuple(v / 255 for v in eps_255), eps_255=tuple(float(v) for v in eps_255))


def has_fgsm(run_dir: Path, eps_255: Sequence[float]) -> bool:
    """The run has an ``fgsm.json`` of a whole test split at exactly these eps (1/255 units)."""
    record = read_fgsm(run_dir)
    if record is None or record.get("limit") is not None:
        return False
    have = record.get("eps_255")
    return (
        isinstance(have, list)
        and len(have) == len(eps_255) == len(record["acc"])
        and all(is_real(a) and abs(a - b) <= 1e-9 for a, b in zip(have, eps_255))
    )


def needs_attack(run_dir: Path, plan: AttackPlan | None) -> bool:
    """The plan asks for an attack that the run folder does not hold yet."""
    return plan is not None and not has_fgsm(run_dir, plan.eps_255)


def attack(run: Run, plan: AttackPlan) -> dict[str, Any]:
    """Attack the trained run at the plan's eps and write its ``fgsm.json``; returns the record."""
    record = attack_run(
        run.dir,
        list(plan.eps),
        eps_255=list(plan.eps_255),
        device=run.config.device,
        data_root=run.config.data_root,
        download=run.config.download,
    )
    write_fgsm(run.dir, record)
    return record
