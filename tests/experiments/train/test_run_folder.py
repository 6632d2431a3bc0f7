"""Every state a run folder can be in when ``lmix train`` is pointed at it has a defined outcome:
nothing to do, resume, a fresh start (documented), or one line refusing it with the folder as it
was. A finished run's records are never replaced without ``--restart``."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest

from lmix.experiments.cli import main
from lmix.experiments.io import RunLock
from lmix.experiments.train.trainer import CHECKPOINT
from tests.cli_helpers import run_cli

FILES = ("config.yaml", "metrics.jsonl", CHECKPOINT, "summary.json")
QUICK = [
    *("--dataset", "digits", "--model", "simple_cnn", "--width", "8", "--batch-size", "64"),
    *("--train-subset", "128", "--eval-train", "0", "--epochs", "2", "--no-progress"),
]
TIMING_KEYS = {"epoch_seconds", "train_images_per_sec"}


def _rows(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A finished 2-epoch run, and the same run stopped after epoch 1's checkpoint."""
    import lmix.experiments.train.trainer as trainer_mod

    root = tmp_path_factory.mktemp("runs")
    assert main(["train", *QUICK, "--out", str(root / "finished")]) == 0
    real_save = trainer_mod.atomic_torch_save

    def crashing_save(path, obj):
        real_save(path, obj)
        if obj["epoch"] == 1:
            raise KeyboardInterrupt("simulated crash after epoch 1's checkpoint")

    trainer_mod.atomic_torch_save = crashing_save
    try:
        assert main(["train", *QUICK, "--out", str(root / "partial")]) == 130
    finally:
        trainer_mod.atomic_torch_save = real_save
    return {"finished": root / "finished", "partial": root / "partial"}


def expected(kept: frozenset[str], mode: str, checkpoint: str) -> str:
    """What ``lmix train`` must do with a folder holding ``kept`` (the trainer's module docstring)."""
    config, metrics, ckpt, summary = (name in kept for name in FILES)
    if mode == "--resume" and not (config or ckpt):
        return "refused"  # nothing says which run to resume
    if mode == "--restart":
        return "fresh"
    if ckpt and checkpoint == "last":
        return "complete" if summary else "finish"
    if ckpt:
        return "refused" if summary else "resume"  # a summary beside an earlier epoch's checkpoint: the files disagree
    if summary:
        return "refused"  # a finished run whose checkpoint is gone
    if metrics and not config:
        return "refused"  # epochs of an unknown run
    return "fresh"


CASES = [
    (frozenset(kept), mode, checkpoint)
    for n in range(len(FILES) + 1)
    for kept in itertools.combinations(FILES, n)
    for mode in ("", "--resume", "--restart")
    for checkpoint in (("last", "earlier") if CHECKPOINT in kept else ("last",))
]


@pytest.mark.parametrize(
    "kept, mode, checkpoint",
    CASES,
    ids=[f"{'+'.join(sorted(k)) or 'empty'}-{m or 'plain'}-{c}" for k, m, c in CASES],
)
def test_every_run_folder_state_has_a_defined_outcome(capsys, tmp_path, runs, kept, mode, checkpoint):
    finished, partial = runs["finished"], runs["partial"]
    out = tmp_path / "run"
    out.mkdir()
    for name in kept:
        # summary.json exists only in the finished run: beside an earlier checkpoint it disagrees with it
        source = partial if checkpoint == "earlier" and name != "summary.json" else finished
        shutil.copy2(source / name, out / name)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    argv = ["train", "--out", str(out)] + (["--resume"] if mode == "--resume" else [*QUICK, *([mode] if mode else [])])

    code, stdout, err = run_cli(capsys, argv)
    outcome = expected(kept, mode, checkpoint)
    lines = [line for line in err.splitlines() if line.strip()]
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp") or p.name == RunLock.FILENAME]
    if outcome == "refused":
        assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing touched
        return
    assert code == 0 and not lines, err
    if outcome == "complete":
        assert "already complete" in stdout
        # the finished records stay; a missing config.yaml or metrics.jsonl is written again from the checkpoint
        assert {p.name: p.read_bytes() for p in out.iterdir()} == {n: (finished / n).read_bytes() for n in FILES}
        return
    # trained (again), resumed or only finished off: the same numbers as the uninterrupted run (CPU: bit-exact)
    assert _rows(out) == _rows(finished)
    summary, reference = (json.loads((d / "summary.json").read_text()) for d in (out, finished))
    assert (summary["final_acc"], summary["best_acc"]) == (reference["final_acc"], reference["best_acc"])
    if outcome == "finish":
        assert (out / "metrics.jsonl").read_bytes() == (finished / "metrics.jsonl").read_bytes()  # from the checkpoint
    if outcome == "fresh" and "metrics.jsonl" in kept and mode != "--restart":
        assert "training again from epoch 0" in stdout  # recorded epochs are replaced: the log says so
