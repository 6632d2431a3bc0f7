"""Fake finished runs in the trainer's real file formats (config.yaml, summary.json, metrics.jsonl, fgsm.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from lmix.experiments.train import TrainConfig


def make_run(
    root: Path,
    *,
    dataset: str = "digits",
    model: str = "simple_cnn",
    method: str = "none",
    seed: int = 0,
    final: float = 90.0,
    best: float | None = None,
    clean: float | None = 100.0,
    epochs: int = 4,
    curve: list[float] | None = None,
    fgsm: dict[str, list[float]] | None = None,
    summary_extra: dict[str, Any] | None = None,
    **settings: Any,
) -> Path:
    """Write one finished run under ``root`` and return its folder."""
    config = TrainConfig(dataset=dataset, model=model, method=method, seed=seed, epochs=epochs, **settings)
    extra = "".join(f"/{k}={v}" for k, v in sorted(settings.items()))
    run_dir = root / f"{dataset}/{model}/{method}{extra}/seed={seed}"
    run_dir.mkdir(parents=True)
    config.out = str(run_dir)
    (run_dir / "config.yaml").write_text(config.to_yaml())
    curve = curve or [final - (epochs - 1 - e) for e in range(epochs)]
    rows = [
        {"epoch": e + 1, "test_acc": acc, "train_acc": 50.0, "clean_train_acc": clean} for e, acc in enumerate(curve)
    ]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = {
        "final_acc": final,
        "best_acc": final if best is None else best,
        "best_epoch": epochs,
        "final_train_acc": 50.0,
        "final_clean_train_acc": clean,
        "epochs": epochs,
        "method": method,
        "model": model,
        "dataset": dataset,
        "seed": seed,
        "accuracy_units": "percent",
        **(summary_extra or {}),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))
    if fgsm is not None:
        (run_dir / "fgsm.json").write_text(json.dumps(fgsm))
    return run_dir


@pytest.fixture
def runs_dir(tmp_path) -> Path:
    root = tmp_path / "runs"
    root.mkdir()
    return root


def write_sweep(
    root: Path,
    runs: list[Path],
    *,
    not_started: list[dict[str, Any]] = (),
    analysis: dict[str, Any] | None = None,
    attack_eps: list[float] | None = None,
) -> Path:
    """Write ``root/sweep.json`` listing ``runs`` (folders under ``root``) and runs without a folder.

    Each entry of ``not_started`` holds a run's settings; its folder name is made up from them.
    ``analysis`` and ``attack_eps`` are the spec's, as ``lmix sweep`` copies them.
    """
    entries = []
    for run_dir in runs:
        config = {k: v for k, v in yaml.safe_load((run_dir / "config.yaml").read_text()).items() if v is not None}
        entries.append((run_dir.relative_to(root).as_posix(), config))
    for settings in not_started:
        entries.append(("/".join(f"{k}={v}" for k, v in settings.items()), settings))
    manifest = {
        "name": "test",
        "num_runs": len(entries),
        "runs": [{"index": i, "name": name, "settings": s} for i, (name, s) in enumerate(entries)],
    }
    if analysis is not None:
        manifest["analysis"] = analysis
    if attack_eps is not None:
        manifest["attack_eps"] = attack_eps
    (root / "sweep.json").write_text(json.dumps(manifest))
    return root / "sweep.json"
