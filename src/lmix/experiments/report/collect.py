"""Finding runs and reading their records: the first step of a report.

Every run folder under the report's root that holds a readable ``summary.json`` (with a
``final_acc``) is one finished run; its ``config.yaml``, ``metrics.jsonl`` and ``fgsm.json``
come with it. A folder with ``metrics.jsonl`` but no summary is unfinished. A run's grouping
settings are its config minus identity (data set, model, method), seed and the settings that do
not change what it computes; mixing settings its method does not use, or equal to the method's
default, count as unset (``none`` with ``alpha: 1`` is plain ``none``).
"""

from __future__ import annotations

import inspect
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["RunRecord", "collect_runs", "collect_failed", "FAILED_JSON"]

FAILED_JSON = "failed.json"  # written by lmix sweep in the folder of a run that failed (and no summary.json)

# Settings that do not change what a run computes (or only how fast / where).
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
    "box_rounding": "box_rounding",
    "mix_mode": "mode",
    "patchup_prob": "patchup_prob",
    "gamma": "gamma",
    "block_size": "block_size",
    "patchup_type": "patchup_type",
    "loss_scale": "loss_scale",
    "mix_p": "p",
    "mix_schedule": "schedule",
}
# The paper's column order, then the other methods.
_METHOD_ORDER = ("none", "fmix", "mixup", "cutmix", "lmix", "cutout", "patchup", "manifold_mixup")
_DISPLAY = {
    "none": "Baseline",
    "fmix": "FMix",
    "mixup": "Mixup",
    "cutmix": "CutMix",
    "lmix": "LMix",
    "cutout": "Cutout",
    "patchup": "PatchUp",
    "manifold_mixup": "Manifold Mixup",
}


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
