"""``attack_eps`` in a sweep spec: FGSM after training, ``fgsm.json`` per run, skipped when present."""

from __future__ import annotations

import json

import pytest

from lmix.experiments.sweep import expand, parse_spec, run_sweep

from .conftest import QUICK_BASE as BASE


def test_attack_after_training_only_where_missing(tmp_path):
    plain = parse_spec({"name": "a", "base": BASE, "grid": {"method": ["cutmix"], "seed": [0]}})
    lines: list[str] = []
    run_sweep(plain, tmp_path, log=lines.append)
    run = expand(plain, tmp_path)[0]
    assert not (run.dir / "fgsm.json").exists()
    trained = (run.dir / "summary.json").read_bytes(), (run.dir / "checkpoint.pt").stat().st_mtime_ns

    attacked = parse_spec(
        {"name": "a", "attack_eps": [0, 2, 4], "base": BASE, "grid": {"method": ["cutmix"], "seed": [0]}}
    )
    assert expand(attacked, tmp_path)[0].dir == run.dir  # attack_eps does not change the runs
    lines.clear()
    run_sweep(attacked, tmp_path, dry_run=True, log=lines.append)
    assert lines[1].split()[1] == "done" and "FGSM to do" in lines[1]
    lines.clear()
    result = run_sweep(attacked, tmp_path, log=lines.append)
    outcome = result.outcomes[0]
    assert outcome.status == "skipped" and outcome.attacked  # not trained again ...
    assert ((run.dir / "summary.json").read_bytes(), (run.dir / "checkpoint.pt").stat().st_mtime_ns) == trained
    record = json.loads((run.dir / "fgsm.json").read_text())  # ... only attacked
    assert record["eps_255"] == [0, 2, 4] and record["eps"] == pytest.approx([0, 2 / 255, 4 / 255])
    assert record["acc"][0] == pytest.approx(json.loads(trained[0])["final_acc"], abs=1e-9)
    assert record["acc"][2] <= record["acc"][0] and record["attack"] == "fgsm"
    assert "trained before, attacked in" in lines[1] and "FGSM acc" in lines[1] and "at eps 0,2,4/255" in lines[1]
    assert "0 trained, 1 already done, 0 busy, 0 failed, 1 attacked (FGSM)" in lines[-1]

    mtime = (run.dir / "fgsm.json").stat().st_mtime_ns
    again = run_sweep(attacked, tmp_path, log=lines.append)
    assert again.outcomes[0].status == "skipped" and not again.outcomes[0].attacked
    assert (run.dir / "fgsm.json").stat().st_mtime_ns == mtime  # present with the same eps: left alone

    other = parse_spec({"name": "a", "attack_eps": "0,8", "base": BASE, "grid": {"method": ["cutmix"], "seed": [0]}})
    assert run_sweep(other, tmp_path, log=lines.append).outcomes[0].attacked  # other eps: attacked again
    assert json.loads((run.dir / "fgsm.json").read_text())["eps_255"] == [0, 8]


def test_a_failing_attack_fails_the_run_but_keeps_it_trained(tmp_path, monkeypatch, fake_train):
    def broken(*args, **kwargs):
        raise RuntimeError("no checkpoint to attack")

    monkeypatch.setattr("lmix.experiments.sweep.fgsm.attack_run", broken)
    spec = parse_spec({"name": "a", "attack_eps": [0, 1], "base": BASE, "grid": {"seed": [0]}})
    result = run_sweep(spec, tmp_path, log=lambda line: None)
    outcome = result.outcomes[0]
    assert outcome.status == "failed" and outcome.error == "FGSM attack after training: no checkpoint to attack"
    run = expand(spec, tmp_path)[0]
    assert (run.dir / "summary.json").exists() and not (run.dir / "failed.json").exists()
