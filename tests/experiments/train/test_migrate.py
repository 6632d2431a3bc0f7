"""The migration of run records: mixing settings stated, the mixer named, nothing measured touched."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from lmix.experiments.train import config_from_sources, mixer_from_config
from lmix.experiments.train.config import run_identity
from lmix.experiments.train.migrate import main, migrate_records, migrate_run
from tests.experiments.locks import held_by_another_thread

# A published record as the trainer wrote it before it stated its mixer's defaults (k: null).
OLD_RECORD = Path(__file__).parent / "data" / "old_record"


@pytest.fixture
def record(tmp_path: Path) -> Path:
    run = tmp_path / "study" / "method=lmix" / "seed=0"
    shutil.copytree(OLD_RECORD, run)
    return run


def _files(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run.iterdir())}


def test_an_old_record_gets_its_mixer_settings_and_nothing_else(record):
    before = _files(record)
    old_config = yaml.safe_load(before["config.yaml"])
    assert old_config["k"] is None

    assert migrate_run(record) == ["config.yaml", "summary.json"]
    after = _files(record)
    assert sorted(after) == sorted(before)  # no lock file or temporary left
    assert after["metrics.jsonl"] == before["metrics.jsonl"]
    changed = set(after["config.yaml"].decode().splitlines()) - set(before["config.yaml"].decode().splitlines())
    assert changed == {
        "alpha: 1.0",
        "decay: 3.0",
        "k: 1.0",
        "image_k: 0.0",
        "max_soft: 0.0",
        "reformulate: false",
        "mix_mode: sample",
    }
    config = yaml.safe_load(after["config.yaml"])
    # Same keys, same order; the settings added after the record was written come last.
    assert list(config) == [*old_config, "max_soft", "reformulate"]
    assert run_identity(config) == run_identity(old_config)

    summary, old_summary = json.loads(after["summary.json"]), json.loads(before["summary.json"])
    mixer = summary.pop("mixer")
    assert summary == old_summary
    assert mixer == mixer_from_config(config_from_sources(config)).describe()
    assert (mixer["name"], mixer["k"], mixer["seed"]) == ("lmix", 1.0, old_config["seed"])


def test_migrating_again_changes_nothing(record):
    migrate_run(record)
    once = _files(record)
    assert migrate_run(record) == []
    assert _files(record) == once


def test_a_stated_value_is_kept(record):
    path = record / "config.yaml"
    path.write_text(path.read_text().replace("k: null", "k: 2.0"))
    migrate_run(record)
    assert yaml.safe_load(path.read_text())["k"] == 2.0


def test_a_folder_in_use_is_refused_and_left_alone(record):
    before = _files(record)
    with held_by_another_thread(record), pytest.raises(ValueError, match="in use"):
        migrate_run(record)
    assert _files(record) == before


def test_every_run_under_a_root_is_migrated(record):
    twin = record.parent / "seed=1"
    shutil.copytree(record, twin)
    (twin / "summary.json").unlink()  # an unfinished run: its config is still brought up to date
    assert migrate_records(record.parents[1]) == {record: ["config.yaml", "summary.json"], twin: ["config.yaml"]}


def test_command_line(record, capsys):
    root = record.parents[1]
    assert main([str(root)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{record}: config.yaml, summary.json", "1 of 1 run folders updated"]
    assert main([str(root)]) == 0
    assert capsys.readouterr().out.splitlines() == ["0 of 1 run folders updated"]
    (record / "config.yaml").write_text("method: supermix\n")
    assert main([str(root)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "supermix" in err[0] and "config.yaml" in err[0]
    assert main([str(root / "missing")]) == 2
    assert "not a folder" in capsys.readouterr().err
