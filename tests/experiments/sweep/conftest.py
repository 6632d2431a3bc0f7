"""Fixtures for sweep tests: a tiny spec, a spec writer and a fake trainer that records its calls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

# 3 methods x 2 seeds of a 2-epoch digits run: 6 runs
TINY_SPEC = {
    "name": "tiny",
    "base": {"dataset": "digits", "model": "simple_cnn", "epochs": 2},
    "grid": {"method": ["none", "mixup", "lmix"], "seed": [0, 1]},
}
# settings of a real training run that takes a few seconds
QUICK_BASE = {
    "dataset": "digits",
    "model": "simple_cnn",
    "width": 8,
    "epochs": 1,
    "train_subset": 64,
    "batch_size": 32,
    "eval_train": 0,
    "progress": False,
}


@pytest.fixture
def write_spec(tmp_path):
    def write(data: Any, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
        return path

    return write


class FakeTrain:
    """Stands in for the trainer a sweep calls: writes config.yaml, metrics.jsonl (one row per epoch) and
    summary.json as the trainer does; can fail on chosen calls."""

    def __init__(self, fail_on: set[int] | None = None) -> None:
        self.calls: list[str] = []
        self.completed: list[str] = []
        self.fail_on = fail_on or set()

    def __call__(self, config, log=print) -> dict[str, Any]:
        self.calls.append(config.out)
        out = Path(config.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(config.to_yaml())
        rows = [{"epoch": e, "test_acc": 50.0, "train_loss": 1.0} for e in range(1, config.epochs + 1)]
        (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        if len(self.calls) in self.fail_on:
            raise RuntimeError("simulated crash in the middle of a run")
        summary = {
            "final_acc": 50.0 + config.seed,
            "best_acc": 60.0 + config.seed,
            "final_clean_train_acc": 99.5,
            "epochs": config.epochs,
            "method": config.method,
            "model": config.model,
            "dataset": config.dataset,
            "seed": config.seed,
        }
        (out / "summary.json").write_text(json.dumps(summary))
        self.completed.append(config.out)
        return summary


@pytest.fixture
def fake_train(monkeypatch):
    fake = FakeTrain()
    use_trainer(monkeypatch, fake)
    return fake


def use_trainer(monkeypatch: pytest.MonkeyPatch, fake: Any) -> None:
    """Make the sweep train its runs with ``fake`` (in this process)."""
    monkeypatch.setattr("lmix.experiments.sweep.one_run.train", fake)


def quick_sweep(out: Path, *, methods: list[str], seeds: list[int], attack_eps: list[float] | None = None) -> Path:
    """Train a real sweep of QUICK_BASE runs (2 epochs each; a few seconds) into ``out``; returns ``out``."""
    from lmix.experiments.sweep import parse_spec, run_sweep

    spec: dict[str, Any] = {
        "name": "quick",
        "base": {**QUICK_BASE, "epochs": 2},
        "grid": {"method": methods, "seed": seeds},
    }
    if attack_eps is not None:
        spec["attack_eps"] = attack_eps
    result = run_sweep(parse_spec(spec), out, log=lambda line: None)
    assert result.count("trained") == len(methods) * len(seeds), [o.error for o in result.outcomes]
    return out
