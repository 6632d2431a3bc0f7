"""The reduced Table 4 of ``benchmarks/bench_gpu.py``: the paper's Fashion-MNIST config as an lmix sweep.

A probe (one short epoch of every job at once) measures the training rate, :func:`plan_epochs`
says how many epochs fit the time left, and the runs are trained by ``lmix sweep --jobs``'s job
processes (:func:`lmix.experiments.sweep.jobs.run_jobs`). Each row is shown beside the paper's.
"""

from __future__ import annotations

import json
import math
import statistics
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmix.experiments.catalog import find_config
from lmix.experiments.paper import paper_result
from lmix.experiments.sweep import Run, RunOutcome, expand, parse_spec
from lmix.experiments.sweep.jobs import run_jobs
from lmix.experiments.train import load_yaml

METHODS = ("none", "mixup", "cutmix", "fmix", "lmix")
CONFIG = "table4_fashion_mnist_preact_resnet18"  # packaged: configs/paper/
ROW_KEYS = (
    "method", "seed", "status", "epochs", "final_acc", "best_acc", "best_epoch", "train_images_per_sec",
    "train_seconds", "seconds", "epochs_done", "error",
)  # fmt: skip


def paper_schedule() -> tuple[int, list[int], Path]:
    """(epochs, milestones, path) of the packaged Table 4 config."""
    path = find_config(CONFIG, "train").path
    raw = load_yaml(path)
    return int(raw["epochs"]), list(raw.get("milestones") or []), path


def scale_milestones(milestones: list[int], paper_epochs: int, epochs: int) -> list[int]:
    """The paper's milestones at the same fractions of ``epochs`` (increasing, within [1, epochs])."""
    scaled = {min(epochs, max(1, int(m * epochs / paper_epochs + 0.5))) for m in milestones}
    return sorted(scaled)


def plan_epochs(
    *,
    available_s: float,
    img_s_per_run: float,
    n_train: int,
    n_eval: int,
    runs: int,
    jobs: int,
    run_overhead_s: float,
    max_epochs: int,
    eval_speedup: float = 2.0,
    safety: float = 0.85,
) -> dict[str, Any]:
    """How many epochs fit: ``runs`` runs on ``jobs`` parallel job processes each training at ``img_s_per_run``.

    An epoch costs ``n_train / rate`` plus evaluating ``n_eval`` images at ``eval_speedup`` times the
    training rate (a forward pass alone); every run adds ``run_overhead_s`` (process, data, model, files).
    Returns the epochs (0 when not even one fits), the rounds of runs and the estimated seconds.
    """
    if img_s_per_run <= 0 or runs <= 0 or jobs <= 0:
        raise ValueError(f"need a positive rate, runs and jobs, got {img_s_per_run}, {runs}, {jobs}")
    epoch_s = n_train / img_s_per_run + n_eval / (eval_speedup * img_s_per_run)
    rounds = math.ceil(runs / jobs)
    per_round = safety * available_s / rounds - run_overhead_s
    epochs = max(0, min(max_epochs, math.floor(per_round / epoch_s)))
    return {
        "epochs": epochs,
        "rounds": rounds,
        "epoch_s": epoch_s,
        "estimated_s": rounds * (run_overhead_s + epochs * epoch_s),
    }


def write_fake_fashion_mnist(root: Path, *, n_train: int, n_test: int, seed: int = 0) -> None:
    """``root/FashionMNIST/raw`` with the four uncompressed idx files (random uint8, random labels)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        for kind, arr in (
            ("images-idx3", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)),
            ("labels-idx1", np.arange(n, dtype=np.uint8) % 10),
        ):
            header = struct.pack(">I", 0x0800 + arr.ndim) + b"".join(struct.pack(">I", d) for d in arr.shape)
            (raw / f"{prefix}-{kind}-ubyte").write_bytes(header + arr.tobytes())


@dataclass
class Table4Sweep:
    """Runs of the packaged config with ``base`` over it, as sweeps in folders under ``work``."""

    config: Path
    base: dict[str, Any]
    work: Path
    threads: int  # torch CPU threads of each job process

    def runs(self, name: str, grid: dict[str, list], **settings: Any) -> list[Run]:
        """The grid's runs (``settings`` over ``base``), in folders under ``work/name``."""
        spec = parse_spec({"name": name, "config": str(self.config), "base": {**self.base, **settings}, "grid": grid})
        return expand(spec, self.work / name)

    def train(self, runs: list[Run], jobs: int, on_done: Callable[[RunOutcome], None]) -> None:
        """Train ``runs``, ``jobs`` job processes at once (``lmix sweep --jobs``)."""
        # the jobs' scratch folder: in the work folder that holds every sweep's runs
        run_jobs(runs, jobs=jobs, threads=self.threads, scratch_in=self.work, on_done=on_done)

    def probe(self, jobs: int, images: int) -> list[float]:
        """Training img/s of ``jobs`` lmix runs at once, one epoch of ``images`` training images each."""
        rates: list[float] = []
        runs = self.runs(
            "probe", {"method": ["lmix"], "seed": list(range(jobs))}, epochs=1, milestones=[], train_subset=images
        )
        self.train(runs, jobs, lambda outcome: rates.append(_probe_rate(outcome)))
        return rates


def _probe_rate(outcome: RunOutcome) -> float:
    if outcome.status != "trained":
        raise RuntimeError(f"the probe run {outcome.run.name} {outcome.status}: {outcome.error}")
    return float(outcome.summary["train_images_per_sec"])


def outcome_row(outcome: RunOutcome) -> dict[str, Any]:
    """A finished job's row: its summary (or its error) beside the paper's numbers."""
    row: dict[str, Any] = {"method": outcome.run.config.method, "seed": outcome.run.config.seed}
    if outcome.status == "trained":
        row.update(outcome.summary, status="ok")
    else:
        row.update(status="error", error=outcome.error)
    return _with_paper({**row, "seconds": outcome.seconds})


def unfinished_row(run: Run) -> dict[str, Any]:
    """A run stopped by the deadline (its last evaluated epoch from metrics.jsonl), or one not started."""
    row: dict[str, Any] = {"method": run.config.method, "seed": run.config.seed, "status": "not started"}
    if run.dir.exists():
        row["status"] = "timeout"
        try:
            metrics = [json.loads(line) for line in (run.dir / "metrics.jsonl").read_text().splitlines() if line]
        except (OSError, ValueError):
            metrics = []
        tested = [r for r in metrics if "test_acc" in r]
        if tested:
            row.update(
                epochs_done=tested[-1]["epoch"],
                final_acc=tested[-1]["test_acc"],
                best_acc=max(r["test_acc"] for r in tested),
            )
    return _with_paper(row)


def _with_paper(row: dict[str, Any]) -> dict[str, Any]:
    ref = paper_result("fashion_mnist", "preact_resnet18", row["method"])
    out = {k: row[k] for k in ROW_KEYS if k in row}
    out["paper_final"] = ref.final if ref else None
    out["paper_best"] = ref.best if ref else None
    return out


def complete_rows(rows: list[dict[str, Any]], runs: list[Run]) -> list[dict[str, Any]]:
    """``rows`` and a row for each run without one, by seed, then in :data:`METHODS` order."""
    done = {(r["method"], r["seed"]) for r in rows}
    rows = rows + [unfinished_row(run) for run in runs if (run.config.method, run.config.seed) not in done]
    order = {m: i for i, m in enumerate(METHODS)}
    return sorted(rows, key=lambda r: (r["seed"], order[r["method"]]))


def means(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean final and best accuracy per method over its finished runs."""
    out: dict[str, dict[str, Any]] = {}
    for method in METHODS:
        done = [r for r in rows if r["method"] == method and r["status"] == "ok"]
        if done:
            out[method] = {
                "runs": len(done),
                "final_acc": statistics.fmean(r["final_acc"] for r in done),
                "best_acc": statistics.fmean(r["best_acc"] for r in done),
                "paper_final": done[0]["paper_final"],
                "paper_best": done[0]["paper_best"],
            }
    return out


def table_lines(sec: dict) -> list[str]:
    """The section's part of the final table: the probe and the plan, then every run beside the paper."""
    lines = []
    if sec.get("probe"):
        p = sec["probe"]
        lines.append(
            f"table4 probe: {p['jobs']} jobs at once, {min(p['per_job_img_s']):.0f} img/s each at least, "
            f"{p['aggregate_img_s']:.0f} img/s together; epochs {sec.get('epochs', '-')}, "
            f"milestones {sec.get('milestones', '-')}"
        )
    if sec.get("runs"):
        lines.append(
            f"{'method':8s} {'seed':>4s} {'status':8s} {'final':>6s} {'best':>6s} {'paper final':>11s} {'paper best':>10s}"
        )
        for r in sec["runs"]:
            lines.append(
                f"{r['method']:8s} {r['seed']:4d} {r['status']:8s} {_num(r.get('final_acc')):>6s} "
                f"{_num(r.get('best_acc')):>6s} {_num(r['paper_final']):>11s} {_num(r['paper_best']):>10s}"
            )
    return lines


def _num(x: Any) -> str:
    return f"{x:.2f}" if isinstance(x, (int, float)) else "-"
