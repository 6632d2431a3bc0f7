"""Finding runs and reading their records: the first step of a report.

Every run folder under the report's root that holds a readable ``summary.json`` (with a
``final_acc``) is one finished run; its ``config.yaml``, ``metrics.jsonl`` and ``fgsm.json``
come with it. A folder with ``metrics.jsonl`` but no summary is unfinished. How runs are grouped
is :mod:`~lmix.experiments.report.settings`'.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["RunRecord", "collect_runs", "collect_failed", "failure_reason", "fgsm_curve", "FAILED_JSON"]

FAILED_JSON = "failed.json"  # written by lmix sweep in the folder of a run that failed (and no summary.json)


@dataclass
class RunRecord:
    """One finished run.

    Attributes:
        dir: the run folder, relative to the report's root.
        summary: ``summary.json``.
        config: ``config.yaml`` (empty if missing: identity then comes from the summary).
        metrics: rows of ``metrics.jsonl`` (empty if missing).
        fgsm: ``fgsm.json`` (None if missing).
        failure: ``failed.json`` of a failed run (None for a finished one).
        settings: the grouping settings (normalised; excludes data set, model, method, seed).
    """

    dir: str
    summary: dict[str, Any]
    config: dict[str, Any]
    metrics: list[dict[str, Any]]
    fgsm: dict[str, Any] | None
    settings: dict[str, Any] = field(default_factory=dict)
    failure: dict[str, Any] | None = None

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


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_config(run_dir: Path) -> dict[str, Any]:
    if not (run_dir / "config.yaml").is_file():
        return {}
    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except yaml.YAMLError:
        return {}
    return config if isinstance(config, dict) else {}


def _check_root(root: str | os.PathLike) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"lmix report: {str(root)!r} is not a folder of runs")
    return root


def _finished(run_dir: Path) -> bool:
    summary = _read_json(run_dir / "summary.json")
    return isinstance(summary, dict) and "final_acc" in summary


def collect_runs(root: str | os.PathLike) -> tuple[list[RunRecord], list[str]]:
    """Finished runs under ``root`` (folders with a readable ``summary.json``) and unfinished run folders.

    Unfinished: a ``metrics.jsonl`` without ``summary.json``, except failed runs (``failed.json``,
    see :func:`collect_failed`).
    """
    root = _check_root(root)
    records: list[RunRecord] = []
    for path in sorted(root.rglob("summary.json")):
        summary = _read_json(path)
        if not isinstance(summary, dict) or "final_acc" not in summary:
            continue
        run_dir = path.parent
        config = _read_config(run_dir)
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
        if p.parent not in done and not (p.parent / "summary.json").exists() and not (p.parent / FAILED_JSON).exists()
    )
    return records, unfinished


def collect_failed(root: str | os.PathLike) -> list[RunRecord]:
    """Failed runs under ``root``: folders with ``failed.json`` and no finished ``summary.json``.

    Their identity and settings come from ``config.yaml`` (else from ``failed.json``'s dataset,
    model, method and seed); ``summary`` holds only that identity, ``failure`` the failed.json mapping.
    """
    root = _check_root(root)
    out = []
    for path in sorted(root.rglob(FAILED_JSON)):
        run_dir = path.parent
        if _finished(run_dir):
            continue
        failure = _read_json(path)
        failure = failure if isinstance(failure, dict) else {}
        config = _read_config(run_dir)
        identity = {k: failure[k] for k in ("dataset", "model", "method", "seed") if k in failure}
        rel = run_dir.relative_to(root).as_posix() or "."
        out.append(RunRecord(rel, identity, config, [], None, failure=failure))
    return out


def failure_reason(record: RunRecord) -> str:
    """One line saying why a failed run failed (its failed.json's error/reason/message, if any)."""
    for key in ("error", "reason", "message"):
        value = (record.failure or {}).get(key)
        if isinstance(value, str) and value.strip():
            line = value.strip().splitlines()[0]
            return line if len(line) <= 160 else line[:157] + "..."
    return "no reason recorded"


def fgsm_curve(record: RunRecord) -> dict[float, float]:
    """A run's FGSM accuracy (%) by eps in 1/255 units ({} without a usable fgsm.json).

    eps is read from ``eps_255`` (as recorded by ``lmix attack``) where it has one value per
    accuracy, else from ``eps`` (fractions of the pixel range) times 255; rounded to 1e-6 so
    that ``8/255 * 255`` and ``8`` meet.
    """
    f = record.fgsm or {}
    acc = f.get("acc")
    eps = f.get("eps_255")
    scale = 1.0
    if not isinstance(eps, list) or not isinstance(acc, list) or len(eps) != len(acc):
        eps, scale = f.get("eps"), 255.0
    if not isinstance(eps, list) or not isinstance(acc, list) or len(eps) != len(acc):
        return {}
    out = {}
    for e, a in zip(eps, acc):
        try:
            out[round(float(e) * scale, 6)] = float(a)
        except (TypeError, ValueError):
            continue
    return out
