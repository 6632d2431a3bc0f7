"""What a run folder holds: ``run_status`` and ``conflict``."""

from __future__ import annotations

import json
import os

import yaml

from lmix.experiments.sweep import conflict, expand, parse_spec, run_status
from lmix.experiments.sweep.status import mark_failed
from tests.experiments.locks import held_by_another_thread

from .conftest import TINY_SPEC as SPEC


def test_run_status_of_each_folder_state(tmp_path):
    run = expand(parse_spec(SPEC), tmp_path)[0]
    assert run_status(run) == ("todo", "")
    run.dir.mkdir(parents=True)
    (run.dir / "config.yaml").write_text(run.config.to_yaml())
    (run.dir / "metrics.jsonl").write_text(json.dumps({"epoch": 1}) + "\n")
    assert run_status(run) == ("partial", "1/2 epochs")
    mark_failed(run, RuntimeError("boom"), "boom", 1.0)
    assert run_status(run) == ("failed", "boom (1/2 epochs)")
    with held_by_another_thread(run.dir):
        status, detail = run_status(run)
        assert status == "running" and f"pid {os.getpid()}" in detail
    (run.dir / "summary.json").write_text(json.dumps({"final_acc": 51.0, "best_acc": 52.5}))
    assert run_status(run) == ("done", "final 51.00%, best 52.50%")
    assert run_status(run, attack_eps=[0, 8]) == ("done", "final 51.00%, best 52.50%, FGSM to do")
    (run.dir / "config.yaml").write_text(run.config.to_yaml().replace("epochs: 2", "epochs: 5"))
    assert run_status(run) == ("conflict", "epochs: 5 there, 2 here")


def test_a_folder_saved_before_new_settings_existed_is_the_same_run(tmp_path):
    """A config.yaml without settings added later (crop/flip, method_params, ...) is no conflict."""
    run = expand(parse_spec(SPEC), tmp_path)[0]
    run.dir.mkdir(parents=True)
    old = run.config.to_dict()
    for key in ("crop_padding", "flip", "method_params", "test_batch_size", "checkpoint_every", "compile_mode"):
        old.pop(key, None)
    (run.dir / "config.yaml").write_text(yaml.safe_dump(old))
    assert conflict(run) is None
    old["epochs"] = 7
    (run.dir / "config.yaml").write_text(yaml.safe_dump(old))
    assert "epochs: 7 there, 2 here" in conflict(run)
