"""A finished run's config.yaml must agree with what its summary.json records, hold only settings of
``lmix train`` and be a combination the trainer accepts: otherwise ``lmix report`` calls the run
unreadable (naming the file and the key) and ``--strict`` exits 1, as ``lmix sweep`` refuses the folder.

The runs are real ``lmix train`` runs (a few seconds in all); every setting their summary.json
records (its identity, ``seed``, ``device``, ``amp``, each hyperparameter of its ``mixer`` and the
model's ``num_params``) is edited in config.yaml, one at a time, to another value the trainer accepts.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
import yaml

from lmix.errors import LmixValueError
from lmix.experiments.report import build_report
from lmix.experiments.report.collect import UNREADABLE, USED, collect_runs
from lmix.experiments.sweep import expand, parse_spec
from lmix.experiments.train import TrainConfig, config_from_sources, mixer_from_config, train
from lmix.experiments.train.migrate import migrate_run
from lmix.experiments.train.mixer_config import CHOICE_KEYWORDS, MIXER_KEYWORDS
from tests.cli_helpers import run_cli
from tests.experiments.sweep.conftest import QUICK_BASE as QUICK

RUNS = {"single": {"method": "lmix"}, "choice": {"method": "cutmix+mixup"}}
# Another value the trainer accepts, for every setting a summary.json records (the first that differs is used).
OTHER = {
    "dataset": ["fashion_mnist"],
    "model": ["preact_resnet_tiny"],
    "method": ["fmix", "lmix+mixup"],
    "epochs": [2],
    "seed": [7],
    "device": ["cuda"],
    "amp": ["bf16"],
    "width": [16],
    "alpha": [0.5],
    "decay": [2.0],
    "k": [4.0],
    "image_k": [1.0],
    "max_soft": [0.3],
    "reformulate": [True],
    "box_size": [4],
    "box_rounding": ["reference"],
    "mix_mode": ["batch", "sample"],
    "mix_p": [[0.3, 0.7]],
    "mix_schedule": ["alternate"],
}
_CONFIG_KEY = {"name": "method", "seed": "seed"} | {v: k for k, v in {**MIXER_KEYWORDS, **CHOICE_KEYWORDS}.items()}
_FIELDS = set(TrainConfig().to_dict())


def recorded_settings(summary: dict[str, Any]) -> set[str]:
    """The config.yaml keys whose value a summary.json records: its own keys that are settings, its
    mixer's hyperparameters (also those of a combination's components), and ``width`` (num_params)."""
    keys = {k for k in summary if k in _FIELDS}

    def mixer(described: dict[str, Any]) -> None:
        for key, value in described.items():
            if key == "mixers":
                for part in value:
                    mixer(part)
            elif key != "pairing":  # not a setting: every run pairs at random
                keys.add(_CONFIG_KEY[key])

    mixer(summary["mixer"])
    if "num_params" in summary:
        keys.add("width")
    return keys


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A folder of two finished runs of lmix train: one method, and a choice of two."""
    root = tmp_path_factory.mktemp("config_summary") / "runs"
    for name, settings in RUNS.items():
        train(TrainConfig(**QUICK, **settings, out=str(root / name)), log=lambda line: None)
    return root


def _accepted(config: dict[str, Any]) -> bool:
    """Whether lmix train takes ``config`` (its settings, and the mixer they build)."""
    try:
        mixer_from_config(config_from_sources(config))
    except LmixValueError:
        return False
    return True


def _edits(template: Path) -> Iterator[tuple[str, str, Any]]:
    for name in RUNS:
        summary = json.loads((template / name / "summary.json").read_text())
        config = yaml.safe_load((template / name / "config.yaml").read_text())
        for key in sorted(recorded_settings(summary)):
            # KeyError: summary.json records a setting this test does not know yet; add values for it to OTHER
            value = next(v for v in OTHER[key] if v != config[key] and _accepted({**config, key: v}))
            yield name, key, value


def _edit(root: Path, run: str, **changes: Any) -> Path:
    path = root / run / "config.yaml"
    config = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**config, **changes}, sort_keys=False))
    return root


def _report(capsys, root: Path, tmp_path: Path) -> tuple[int, str, str]:
    return run_cli(capsys, ["report", str(root), "--strict", "--out", str(tmp_path / "report")])


def test_every_setting_summary_json_records_is_checked_against_config_yaml(template, tmp_path, capsys):
    """Each recorded setting edited in config.yaml to another valid value: unreadable, naming the key, and the
    report incomplete (what --strict exits 1 on; the command itself runs on each run's first edit, for speed)."""
    edits = list(_edits(template))
    assert {key for _, key, _ in edits} >= {"seed", "max_soft", "k", "reformulate", "mix_p", "box_size", "width"}
    first = {next((run, key) for run, key, _ in edits if run == name) for name in RUNS}
    for i, (run, key, value) in enumerate(edits):
        root = _edit(shutil.copytree(template, tmp_path / f"case{i}"), run, **{key: value})
        report = build_report(root, paper="off")
        records = {r.dir: r for r in report.runs}
        victim, other = records[run], records[next(n for n in RUNS if n != run)]
        assert other.status == USED and not report.complete
        assert victim.status == UNREADABLE, (run, key, value, victim.status)
        assert victim.detail.startswith(("config.yaml: ", "summary.json: ")) and f"{key} " in victim.detail
        assert "config.yaml" in victim.detail and "summary.json" in victim.detail, victim.detail
        if (run, key) in first:
            code, out, err = _report(capsys, root, tmp_path / f"case{i}-report")
            assert code == 1 and "1 of 2 runs are not finished and used (1 unreadable)" in err
            assert victim.detail in out


def test_the_tester_s_max_soft_edit_names_the_file_the_key_and_both_values(template, tmp_path):
    root = _edit(shutil.copytree(template, tmp_path / "runs"), "single", max_soft=0.3)
    (victim,) = [r for r in collect_runs(root).runs if r.dir == "single"]
    assert (victim.status, victim.detail) == (UNREADABLE, "config.yaml: max_soft is 0.3 but summary.json records 0.0")


def test_lmix_sweep_refuses_the_folder_the_report_calls_unreadable(template, tmp_path, capsys):
    """A config.yaml edited to the settings of a sweep's run (max_soft 0.3) does not make the run done:
    the sweep reads the finished run as the report does, and stops on the same line."""
    spec = {"name": "soft", "base": {**QUICK, "method": "lmix"}, "grid": {"max_soft": [0.3]}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    (run,) = expand(parse_spec(spec), out)
    shutil.copytree(template / "single", run.dir)
    _edit(out, run.dir.relative_to(out).as_posix(), max_soft=0.3)
    (victim,) = collect_runs(out).runs
    assert victim.detail == "config.yaml: max_soft is 0.3 but summary.json records 0.0"
    code, text, err = run_cli(capsys, ["sweep", str(tmp_path / "spec.yaml"), "--out", str(out), "--dry-run"])
    assert code == 2 and f"unreadable {run.name}  ({victim.detail})" in text
    assert err.startswith(f"lmix sweep: run folder '{run.dir}' has an unreadable record: {victim.detail};")


HAS_SKTIME = find_spec("sktime") is not None


@pytest.fixture(scope="module")
def osuleaf_run(tmp_path_factory) -> Path:
    """Two finished cnn1d runs on OSULeaf (sequences): ``osu`` and a copy."""
    if not HAS_SKTIME:
        pytest.skip("the timeseries extra (sktime) is not installed")
    root = tmp_path_factory.mktemp("osuleaf") / "runs"
    config = {**QUICK, "dataset": "osuleaf", "model": "cnn1d", "train_subset": None, "batch_size": 128}
    train(TrainConfig(**config, method="lmix", out=str(root / "osu")), log=lambda line: None)
    shutil.copytree(root / "osu", root / "copy")
    return root


@pytest.mark.parametrize(
    "run, changes, detail",
    [
        ("single", {"foo": 1}, "config.yaml: unknown config key 'foo'"),
        ("single", {"max_soft": 0.3, "foo": 1}, "config.yaml: unknown config key 'foo'"),
        ("single", {"mix_schedule": "alternate"}, "config.yaml: --mix-p and --mix-schedule apply only to combined"),
        ("single", {"model": "cnn1d"}, "config.yaml: model 'cnn1d' takes sequences (B, C, L) but data set 'digits'"),
        ("single", {"crop_padding": 100}, "config.yaml: crop_padding 100 is too large for the 8x8 images of digits"),
        ("osu", {"crop_padding": 100000000}, "config.yaml: crop_padding 100000000 is too large for the sequences"),
        ("osu", {"channels_last": True}, "config.yaml: channels_last applies to images (B, C, H, W); osuleaf holds"),
        ("osu", {"in_memory": False}, "config.yaml: osuleaf is a time-series data set, always kept in memory"),
    ],
)
def test_an_unknown_key_or_a_combination_the_trainer_refuses_is_unreadable(
    request, template, tmp_path, capsys, run, changes, detail
):
    source = request.getfixturevalue("osuleaf_run") if run == "osu" else template
    root = _edit(shutil.copytree(source, tmp_path / "runs"), run, **changes)
    (victim,) = [r for r in collect_runs(root).runs if r.dir == run]
    assert victim.status == UNREADABLE and victim.detail.startswith(detail), victim.detail
    code, out, err = _report(capsys, root, tmp_path)
    assert code == 1 and "unreadable" in err and victim.detail in out


@pytest.mark.parametrize(
    "run, changes",
    [
        ("single", {"image_k": -0.0, "max_soft": -0.0}),  # -0.0 is 0.0
        ("single", {"alpha": 1, "decay": 3, "k": 1}),  # 1 is 1.0
        ("choice", {"alpha": 1}),
        ("single", {"device": "cpu", "amp": "none"}),  # what auto resolved to on this CPU run
        ("single", {"num_workers": 0, "progress": True, "out": "elsewhere"}),  # settings no record depends on
    ],
)
def test_equal_values_and_settings_no_record_states_keep_the_run_used(template, tmp_path, capsys, run, changes):
    root = _edit(shutil.copytree(template, tmp_path / "runs"), run, **changes)
    assert {r.dir: r.status for r in collect_runs(root).runs} == {"single": USED, "choice": USED}
    assert _report(capsys, root, tmp_path)[0] == 0


def test_an_old_format_record_is_used_before_and_after_migrating_it(template, tmp_path):
    """A record of a trainer that left the method's defaults null (k: null) and had no soft edges, with
    and without the mixer in summary.json; lmix.experiments.train.migrate brings it up to date."""
    root = shutil.copytree(template, tmp_path / "runs")
    run = root / "single"
    config = yaml.safe_load((run / "config.yaml").read_text())
    for key in ("alpha", "decay", "k", "image_k", "mix_mode"):
        config[key] = None
    for key in ("max_soft", "reformulate", "loss_scale"):
        del config[key]
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    summary = json.loads((run / "summary.json").read_text())
    summary["mixer"] = {k: v for k, v in summary["mixer"].items() if k not in ("max_soft", "reformulate")}
    (run / "summary.json").write_text(json.dumps(summary))
    assert {r.dir: r.status for r in collect_runs(root).runs} == {"single": USED, "choice": USED}
    del summary["mixer"]
    (run / "summary.json").write_text(json.dumps(summary))
    assert {r.dir: r.status for r in collect_runs(root).runs} == {"single": USED, "choice": USED}
    assert migrate_run(run) == ["config.yaml", "summary.json"]
    assert {r.dir: r.status for r in collect_runs(root).runs} == {"single": USED, "choice": USED}
    _edit(root, "single", k=2.0)  # the migrated record is checked as a new one
    (victim,) = [r for r in collect_runs(root).runs if r.dir == "single"]
    assert victim.detail == "config.yaml: k is 2.0 but summary.json records 1.0"
