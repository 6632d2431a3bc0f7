"""``lmix attack`` on quickly trained digits runs: fgsm.json, the curve, --compare, and user errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lmix.experiments.train import TrainConfig, train
from tests.cli_helpers import one_line_error, run_cli
from tests.experiments.damage import read_only, run_lmix, snapshot

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _train(out: Path, method: str) -> Path:
    config = TrainConfig(
        dataset="digits",
        model="simple_cnn",
        width=8,
        epochs=5,
        method=method,
        out=str(out),
        progress=False,
        eval_train=0,
    )
    train(config, log=lambda *_: None)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("attack_runs")
    return _train(base / "none", "none"), _train(base / "mixup", "mixup")


def test_attack_writes_curve_with_clean_accuracy_at_eps_zero(capsys, runs):
    run = runs[0]
    code, out, err = run_cli(capsys, ["attack", "--run", str(run), "--eps", "0,2,8,32"])
    assert code == 0, err
    record = json.loads((run / "fgsm.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    assert record["eps_255"] == [0, 2, 8, 32]
    assert record["eps"] == pytest.approx([0, 2 / 255, 8 / 255, 32 / 255], abs=1e-15)
    assert record["num_images"] == summary["num_test_images"]
    acc = record["acc"]
    assert abs(acc[0] - summary["final_acc"]) < 1e-9
    assert summary["final_acc"] > 60  # the model learned something worth attacking
    assert all(a >= b for a, b in zip(acc, acc[1:])), acc  # non-increasing in eps
    assert acc[-1] < acc[0] - 30, acc  # a clear drop at eps 32/255
    assert (run / "fgsm.png").read_bytes()[:8] == PNG_MAGIC
    assert not list(run.glob(".fgsm*.tmp"))  # atomic writes leave no temporaries
    assert f"{run}: FGSM accuracy (%) at eps 0, 2, 8, 32 (/255): {acc[0]:.2f}," in out


def test_float_eps_and_limit(capsys, runs, tmp_path):
    run = runs[0]
    png = tmp_path / "curve.png"
    code, _, err = run_cli(
        capsys,
        ["attack", "--run", str(run), "--eps", "0,0.03", "--limit", "100", "--batch-size", "33", "--out", str(png)],
    )
    assert code == 0, err
    record = json.loads((run / "fgsm.json").read_text())
    assert record["eps"] == [0.0, 0.03] and record["eps_255"] == pytest.approx([0, 7.65])
    assert record["num_images"] == 100 and record["limit"] == 100
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_compare_attacks_missing_runs_then_reuses(capsys, runs, tmp_path):
    none_run, mixup_run = runs
    for run in runs:
        (run / "fgsm.json").unlink(missing_ok=True)
    out_png = tmp_path / "cmp.png"
    argv = ["attack", "--compare", str(none_run), str(mixup_run), "--eps", "0,4,16", "--out", str(out_png)]
    code, out, err = run_cli(capsys, argv)
    assert code == 0, err
    assert out_png.read_bytes()[:8] == PNG_MAGIC
    records = [json.loads((r / "fgsm.json").read_text()) for r in runs]
    for run, record in zip(runs, records):
        assert record["eps_255"] == [0, 4, 16]
        assert abs(record["acc"][0] - json.loads((run / "summary.json").read_text())["final_acc"]) < 1e-9
    assert [r["method"] for r in records] == ["none", "mixup"]
    assert out.count("wrote") == 3  # two runs attacked, one comparison figure

    # Same eps again: both results are reused, not recomputed.
    stamps = [(r / "fgsm.json").stat().st_mtime_ns for r in runs]
    out_png.unlink()
    code, out, err = run_cli(capsys, argv)
    assert code == 0, err
    assert out.count("reused") == 2 and out_png.exists()
    assert [(r / "fgsm.json").stat().st_mtime_ns for r in runs] == stamps

    # Other eps: attacked again.
    code, out, err = run_cli(capsys, [*argv[:-4], "--eps", "0,8", "--out", str(out_png)])
    assert code == 0, err
    assert "reused" not in out
    assert all(json.loads((r / "fgsm.json").read_text())["eps_255"] == [0, 8] for r in runs)


@pytest.mark.parametrize(
    "eps, needle",
    [
        ("0,-2", "must be a finite number >= 0"),
        ("0,x", "is not a number"),
        ("0,300", "exceed the pixel range"),
        ("", "comma-separated"),
    ],
)
def test_bad_eps(capsys, runs, eps, needle):
    assert needle in one_line_error(capsys, ["attack", "--run", str(runs[0]), "--eps", eps])


def test_missing_run_dir_and_run_dir_without_model(capsys, tmp_path):
    assert "does not exist" in one_line_error(capsys, ["attack", "--run", str(tmp_path / "nothing")])
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.yaml").write_text("dataset: digits\n")
    assert "run dir without a model" in one_line_error(capsys, ["attack", "--run", str(empty)])
    assert not (empty / "fgsm.json").exists()
    assert "--run" in one_line_error(capsys, ["attack"])


def test_corrupt_checkpoint(capsys, runs, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    data = (runs[0] / "checkpoint.pt").read_bytes()
    (broken / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    assert "corrupt or truncated" in one_line_error(capsys, ["attack", "--run", str(broken)])
    assert not (broken / "fgsm.json").exists()
    # A bad run among --compare runs stops the command before any attack.
    (runs[1] / "fgsm.json").unlink(missing_ok=True)
    assert "does not exist" in one_line_error(capsys, ["attack", "--compare", str(runs[1]), str(tmp_path / "nothing")])
    assert not (runs[1] / "fgsm.json").exists()


def test_a_read_only_run_is_one_line_before_any_attack_and_nothing_is_written(runs, tmp_path):
    run = tmp_path / "ro"
    shutil.copytree(runs[0], run)
    (run / "fgsm.json").unlink(missing_ok=True)
    (run / "fgsm.png").unlink(missing_ok=True)
    before = snapshot(run)
    with read_only(run):
        code, out, err = run_lmix(["attack", "--run", str(run), "--eps", "0,2"])
        assert snapshot(run) == before
    assert code == 2 and err.strip().splitlines() == [err.strip()] and "Traceback" not in err, err
    assert err.startswith(f"lmix attack: cannot write '{run / 'fgsm.json'}': Permission denied")
    assert "FGSM accuracy" not in out  # refused before the attack, not after it


def test_a_compare_figure_it_may_not_write_stops_it_before_any_attack(capsys, runs, tmp_path, monkeypatch):
    """--out in a folder that cannot be written (checked through the OS's answer, as the probe sees it)."""
    import lmix.experiments.records as records

    real = records.tempfile.mkstemp

    def denied(*args, dir=None, **kwargs):
        if Path(dir) == tmp_path / "ro":
            raise PermissionError(13, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(records.tempfile, "mkstemp", denied)
    for run in runs:
        (run / "fgsm.json").unlink(missing_ok=True)
    png = tmp_path / "ro" / "cmp.png"
    line = one_line_error(
        capsys, ["attack", "--compare", str(runs[0]), str(runs[1]), "--eps", "0,2", "--out", str(png)]
    )
    assert line.startswith(f"lmix attack: cannot write '{png}': Permission denied")
    assert not any((run / "fgsm.json").exists() for run in runs)


def test_a_figure_that_fails_puts_fgsm_json_back(capsys, runs, monkeypatch):
    """fgsm.json and fgsm.png go together: a PNG that cannot be written leaves the earlier fgsm.json as it was."""
    import lmix.experiments.report.plots as plots
    from lmix.experiments.io import WriteError

    run = runs[0]
    assert run_cli(capsys, ["attack", "--run", str(run), "--eps", "0,1"])[0] == 0
    before = (run / "fgsm.json").read_bytes()

    def full_disk(records, out, **kwargs):
        raise WriteError(out, OSError(28, "No space left on device"))

    monkeypatch.setattr(plots, "plot_fgsm_runs", full_disk)
    line = one_line_error(capsys, ["attack", "--run", str(run), "--eps", "0,2"])
    assert line.startswith(f"lmix attack: cannot write '{run / 'fgsm.png'}': No space left on device (disk full?)")
    assert (run / "fgsm.json").read_bytes() == before
