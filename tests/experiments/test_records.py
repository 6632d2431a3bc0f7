"""lmix.experiments.records: each reader returns a checked record, None for a missing file, or a
one-line RecordError naming the file; damaged bytes of every kind are tried (hypothesis)."""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lmix._checks import is_finite_real
from lmix.experiments import records
from lmix.experiments.divergence import LOSS_KEYS
from lmix.experiments.records import RecordError
from tests.experiments.damage import FILE_SETTINGS, damaged, damaged_jsonl, dump_json, dump_yaml, snapshot
from tests.experiments.report.conftest import make_run, write_sweep


def _valid_files() -> dict[str, bytes]:
    """One run folder's records (and its sweep's sweep.json) as the trainer, attack and sweep write them."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run = make_run(root, method="lmix", seed=1, k=2.0, fgsm={"eps": [0.0, 4 / 255], "acc": [90.0, 60.0]})
        write_sweep(root, [run])
        files = {name: (run / name).read_bytes() for name in ("summary.json", "config.yaml", "metrics.jsonl")}
        fgsm = {"eps": [0.0, 4 / 255], "eps_255": [0.0, 4.0], "acc": [90.0, 60.0], "limit": None}
        failed = {"run": "x", "error": "lmix train: training diverged in epoch 2", "diverged": True, "epochs": 4}
        return files | {
            "fgsm.json": dump_json(fgsm),
            "failed.json": dump_json(failed),
            "sweep.json": (root / "sweep.json").read_bytes(),
        }


VALID = _valid_files()
READERS: dict[str, Callable[[Path], Any]] = {
    "summary.json": records.load_summary,
    "config.yaml": records.load_config,
    "metrics.jsonl": lambda d: records.load_metrics(d, epochs=4),
    "fgsm.json": records.load_fgsm,
    "failed.json": records.load_failed,
    "sweep.json": records.load_sweep,
}
PARSE = {"config.yaml": (lambda b: __import__("yaml").safe_load(b), dump_yaml)}


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(_finite(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _finite(v) for k, v in value.items())
    return value is None or isinstance(value, (str, int, bool))


def _accuracy(value: Any) -> bool:
    return is_finite_real(value) and 0 <= value <= 100


def _optional(record: dict[str, Any], key: str, check: Callable[[Any], bool]) -> bool:
    return record.get(key) is None or check(record[key])


def _identity_ok(record: dict[str, Any]) -> bool:
    names = all(
        _optional(record, k, lambda v: isinstance(v, str) and v.strip()) for k in ("dataset", "model", "method")
    )
    return names and _optional(record, "seed", lambda v: isinstance(v, int) and not isinstance(v, bool))


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# What a reader promises about what it returns.
CONTRACTS: dict[str, Callable[[Any], bool]] = {
    "summary.json": lambda s: (
        _accuracy(s["final_acc"])
        and all(_optional(s, k, _accuracy) for k in ("best_acc", "final_clean_train_acc"))
        and all(_optional(s, k, _count) for k in ("epochs", "best_epoch"))
        and _identity_ok(s)
    ),
    "config.yaml": lambda c: isinstance(c, dict) and _identity_ok(c),
    "metrics.jsonl": lambda rows: (
        len(rows) == 4
        and all(r.get("epoch", i) == i and _optional(r, "test_acc", _accuracy) for i, r in enumerate(rows, 1))
    ),
    "fgsm.json": lambda f: (
        len(f["eps"]) == len(f["acc"]) == len(f.get("eps_255", f["eps"])) > 0
        and all(is_finite_real(e) and 0 <= e <= 1 for e in f["eps"])
        and all(_accuracy(a) for a in f["acc"])
        and len(set(f["eps"])) == len(f["eps"])
    ),
    "failed.json": lambda f: (
        _optional(f, "error", lambda v: isinstance(v, str))
        and _optional(f, "diverged", lambda v: isinstance(v, bool))
        and _identity_ok(f)
    ),
    "sweep.json": lambda runs: all(
        isinstance(n, str) and ".." not in n.split("/") and _identity_ok(s) for n, s in runs
    ),
}


def _damaged(name: str) -> st.SearchStrategy[bytes]:
    if name == "metrics.jsonl":
        return damaged_jsonl(VALID[name])
    parse, dump = PARSE.get(name, (json.loads, dump_json))
    return damaged(VALID[name], parse, dump)


@pytest.mark.parametrize("name", sorted(READERS))
def test_valid_records_are_read_as_written(name, tmp_path):
    (tmp_path / name).write_bytes(VALID[name])
    assert CONTRACTS[name](READERS[name](tmp_path))
    assert READERS[name](tmp_path / "missing") is None


@pytest.mark.parametrize("name", sorted(READERS))
@FILE_SETTINGS
@given(data=st.data())
def test_a_damaged_record_is_read_checked_or_refused_in_one_line(name, data):
    content = data.draw(_damaged(name), label=name)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / name).write_bytes(content)
        try:
            record = READERS[name](folder)
        except RecordError as err:
            assert err.file == name and "\n" not in str(err) and str(err).startswith(str(folder / name))
        else:
            assert record is not None and CONTRACTS[name](record) and _finite(_judged(name, record)), record
        assert snapshot(folder) == {name: content}  # readers never write


def _judged(name: str, record: Any) -> Any:
    """What must be finite: not a loss of metrics.jsonl (NaN there is a diverged run, see records.divergence),
    nor failed.json (the loss that stopped a run may be NaN)."""
    if name == "metrics.jsonl":
        return [{k: v for k, v in row.items() if k not in LOSS_KEYS} for row in record]
    return {} if name == "failed.json" else record


@pytest.mark.parametrize(
    "name, content, problem",
    [
        ("summary.json", b'{"final_acc": 101}', "final_acc must be an accuracy in percent (a number in [0, 100])"),
        ("summary.json", b'{"final_acc": 90, "seed": 1.5}', "seed must be an integer (or null), got 1.5"),
        ("summary.json", b"\xff\xfe", "is not text (UTF-8)"),
        ("config.yaml", b"k: 2001-13-45\n", "is not valid YAML: ValueError: month must be in 1..12"),
        ("config.yaml", b"a: &x [*x]\n", "a nests deeper than 32 levels"),
        ("config.yaml", b"lr: .nan\n", "lr is nan, not a finite number"),
        ("config.yaml", b"3: 4\n", "has a key that is not text: 3"),
        ("config.yaml", b"epochs: abc\n", "config key 'epochs' must be of type int, got 'abc'"),
        ("config.yaml", b"epochs: 4\nwarmup_epochs: 4\n", "warmup_epochs must be an integer in [0, epochs=4)"),
        ("metrics.jsonl", b'{"epoch": 1, "train_loss": NaN, "test_acc": NaN}\n', "test_acc of epoch 1 must be"),
        ("metrics.jsonl", b'{"epoch": 1}\n{"epoch": 3}\n', "row 2 is for epoch 3, expected 2 (rows missing?)"),
        ("fgsm.json", b'{"eps": [0, 0.5], "acc": [90]}', "acc has 1 values for 2 eps"),
        ("fgsm.json", b'{"eps": [0, 0], "acc": [90, 90]}', "eps 1 (0) is there twice"),
        ("fgsm.json", b'{"eps": [0, 0.5], "eps_255": [0, 8], "acc": [90, 9]}', "eps_255 1 must be eps 1 in 1/255"),
        ("sweep.json", b'{"runs": [{"name": "../elsewhere", "settings": {}}]}', "run 0 must have a name, a folder"),
    ],
)
def test_what_is_wrong_is_said(name, content, problem, tmp_path):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(RecordError) as err:
        READERS[name](tmp_path)
    assert err.value.problem.startswith(problem), err.value.problem


def test_read_fgsm_is_none_for_a_damaged_file_so_the_attack_runs_again(tmp_path):
    (tmp_path / "fgsm.json").write_text('{"eps": [0.0], "acc": [NaN]}')
    assert records.read_fgsm(tmp_path) is None
    records.write_fgsm(tmp_path, json.loads(VALID["fgsm.json"]))
    assert records.read_fgsm(tmp_path) == json.loads(VALID["fgsm.json"])


def test_a_non_finite_loss_is_read_for_divergence_to_judge(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1, "train_loss": 2.3}\n{"epoch": 2, "train_loss": NaN}\n')
    rows = records.load_metrics(tmp_path)
    assert math.isnan(rows[1]["train_loss"])
    assert records.divergence(rows, "digits") == "diverged in epoch 2 (metrics.jsonl): train_loss is nan"
    assert records.divergence(rows[:1], "digits") is None
    # where the number of classes is unknown, only a loss that is not finite counts
    assert records.divergence([{"epoch": 1, "train_loss": 1e9}], "no-such-set") is None
    assert records.divergence(rows, "no-such-set") == "diverged in epoch 2 (metrics.jsonl): train_loss is nan"


@pytest.mark.parametrize("missing", records.FINISHED_RUN_FILES)
def test_read_finished_names_the_file_a_finished_run_lacks(tmp_path, missing):
    run = make_run(tmp_path, method="lmix", seed=1)
    (run / missing).unlink()
    with pytest.raises(RecordError) as err:
        records.read_finished(run)
    assert err.value.file == missing and err.value.problem.startswith("is missing")


def test_read_finished_blames_a_summary_and_config_that_disagree_on_epochs_not_the_rows(tmp_path):
    run = make_run(tmp_path, method="lmix", seed=1, epochs=4)
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "epochs": 14}))
    with pytest.raises(RecordError) as err:
        records.read_finished(run)
    assert err.value.file == "summary.json" and err.value.problem == "epochs is 14 but config.yaml says 4"


def test_failed_json_is_named_once_for_its_writers_and_its_reader():
    """The trainer's and the sweep's writer (train/failures.py) and the records' reader use one constant,
    defined once in src (in io.py: records may import neither the trainer's package nor torch)."""
    import re

    from lmix.experiments.train import failures

    assert records.FAILED_JSON is failures.FAILED_JSON == "failed.json"
    src = Path(records.__file__).resolve().parents[1]
    defined = [p.name for p in src.rglob("*.py") if re.search(r"^FAILED_JSON\s*[:=]", p.read_text(), re.M)]
    assert defined == ["io.py"]


def test_records_import_neither_torch_nor_the_trainer():
    """lmix report and the sweep's status read run folders without loading torch: records stays light."""
    import subprocess
    import sys

    code = (
        "import sys, lmix.experiments.records; "
        "print(sorted(m for m in ('torch', 'lmix.experiments.train') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
