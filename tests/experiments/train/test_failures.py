"""Runs fail loudly and safely: divergence, a full disk, signals, two trainers on one folder."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from lmix.data import dataset_info
from lmix.experiments.cli import main
from lmix.experiments.divergence import loss_problem
from lmix.experiments.io import RunLock
from lmix.experiments.train import TrainConfig, TrainingDiverged, train
from lmix.experiments.train.failures import FAILED_JSON
from lmix.experiments.train.trainer import CHECKPOINT, load_checkpoint
from tests.cli_helpers import one_line_error, run_cli
from tests.data import fakes

FAST = dict(dataset="digits", model="simple_cnn", width=8, batch_size=64, eval_train=0, progress=False)
QUICK = ["--dataset", "digits", "--model", "simple_cnn", "--width", "8", "--eval-train", "0", "--no-progress"]
TIMING_KEYS = {"epoch_seconds", "train_images_per_sec"}


def _metrics(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[3] / "src")
    root = str(Path(__file__).resolve().parents[3])
    env["PYTHONPATH"] = os.pathsep.join([src, root, env.get("PYTHONPATH", "")])
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _no_temp_files(out: Path) -> bool:
    return not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


# -- divergence ---------------------------------------------------------------------------------
def test_nan_from_a_forward_hook_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    import lmix.experiments.train.trainer as trainer_mod

    real_build = trainer_mod.build_model
    calls = {"n": 0}

    def build_with_nan(config, info):
        model = real_build(config, info)

        def poison(module, inputs, output):
            if module.training:
                calls["n"] += 1
                if calls["n"] == 30:  # in epoch 2 (22 training steps per epoch)
                    return output * float("nan")
            return output

        model.register_forward_hook(poison)
        return model

    monkeypatch.setattr(trainer_mod, "build_model", build_with_nan)
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as info:
        train(TrainConfig(**FAST, epochs=3, method="cutmix", out=str(out)), log=lambda *_: None)
    err = info.value
    assert (err.epoch, err.saved_epoch, err.out) == (2, 1, str(out))
    assert "\n" not in str(err) and "epoch 2" in str(err) and str(out) in str(err)
    assert not (out / "summary.json").exists()
    ckpt = load_checkpoint(out / CHECKPOINT)
    assert ckpt["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert [r["epoch"] for r in _metrics(out)] == [1] and math.isfinite(_metrics(out)[0]["train_loss"])
    assert _no_temp_files(out) and not (out / RunLock.FILENAME).exists()
    failed = json.loads((out / FAILED_JSON).read_text())
    assert failed["diverged"] is True and failed["error"] == str(err).removeprefix("lmix train: ")
    assert (failed["epochs_done"], failed["epochs"], failed["method"]) == (1, 3, "cutmix")

    # The same run again, without the NaN: it resumes after epoch 1, finishes and is no longer failed.
    monkeypatch.setattr(trainer_mod, "build_model", real_build)
    train(TrainConfig(**FAST, epochs=3, method="cutmix", out=str(out)), log=lambda *_: None)
    assert (out / "summary.json").exists() and not (out / FAILED_JSON).exists()


@pytest.mark.parametrize(
    "lr, reason",
    [("99", "is not finite"), ("20", "is above the bound")],  # 20: finite losses near 1e10, accuracy at chance
)
def test_huge_lr_diverges_with_one_line_exit_3_and_failed_json(capsys, tmp_path, lr, reason):
    from lmix.experiments.records import load_failed

    out = tmp_path / "run"
    code, _, err = run_cli(capsys, ["train", *QUICK, "--epochs", "3", "--lr", lr, "--out", str(out)])
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 3 and len(lines) == 1 and "diverged in epoch 1" in lines[0] and "Traceback" not in err
    assert reason in lines[0] and str(out) in lines[0]
    assert not (out / "summary.json").exists() and not (out / CHECKPOINT).exists() and _no_temp_files(out)
    failed = load_failed(out)  # the record lmix report reads: the run is failed (diverged), not unfinished
    assert failed["diverged"] is True and reason in failed["error"] and failed["dataset"] == "digits"


def test_the_loss_bound_holds_for_every_published_run():
    """The divergence rule stops no ordinary run: every epoch of every record in results/ passes it."""
    checked = 0
    for metrics in sorted(Path(__file__).resolve().parents[3].glob("results/**/metrics.jsonl")):
        dataset = yaml.safe_load((metrics.parent / "config.yaml").read_text())["dataset"]
        for line in metrics.read_text().splitlines():
            assert loss_problem(json.loads(line), dataset_info(dataset).num_classes) is None, (metrics, line)
            checked += 1
    assert checked > 1000


# -- data files ---------------------------------------------------------------------------------
def test_an_image_a_worker_cannot_read_stops_the_run_in_one_line_and_keeps_its_checkpoint(
    capsys, tmp_path, monkeypatch
):
    import lmix.experiments.train.trainer as trainer_mod

    data = fakes.write_imagefolder(tmp_path / "imgs", per_class=6, size=(8, 8))
    args = [*QUICK, "--dataset", "imagefolder", "--data-root", str(data), "--in-memory", "false"]
    args += ["--num-workers", "2", "--batch-size", "6", "--epochs", "2"]

    bad = data / "train" / "dog" / "3.png"
    good = bad.read_bytes()
    real_save, saved = trainer_mod.atomic_torch_save, {}

    def save_then_break_a_file(path, obj):
        real_save(path, obj)
        saved[obj["epoch"]] = Path(path).read_bytes()
        bad.write_bytes(good[: len(good) // 2])  # truncated, as by a copy that was cut short

    monkeypatch.setattr(trainer_mod, "atomic_torch_save", save_then_break_a_file)
    out = tmp_path / "run"
    line = one_line_error(capsys, ["train", *args, "--out", str(out)], str(bad), "epoch 2", "epoch 1 is kept")
    assert "remove it or replace it" in line
    assert list(saved) == [1] and (out / CHECKPOINT).read_bytes() == saved[1]
    assert [r["epoch"] for r in _metrics(out)] == [1] and not (out / "summary.json").exists()
    assert _no_temp_files(out) and not (out / RunLock.FILENAME).exists()
    first = _metrics(out)[0]

    # The file replaced with a good copy, the same command goes on from the checkpoint and finishes.
    monkeypatch.setattr(trainer_mod, "atomic_torch_save", real_save)
    bad.write_bytes(good)
    assert main(["train", *args, "--out", str(out)]) == 0
    assert "resuming" in capsys.readouterr().out and [r["epoch"] for r in _metrics(out)] == [1, 2]
    assert _metrics(out)[0] == first and (out / "summary.json").exists()


# -- the lock -----------------------------------------------------------------------------------
def test_second_trainer_on_the_same_out_dir_is_turned_away(capsys, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from lmix.experiments.io import RunLock; "
            f"lock = RunLock({str(out)!r}); assert lock.acquire(); print('locked', flush=True); sys.stdin.read()",
        ],
        env=_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        line = one_line_error(capsys, ["train", *QUICK, "--epochs", "1", "--out", str(out)], "in use")
        assert f"pid {holder.pid}" in line
        assert not (out / CHECKPOINT).exists() and not (out / "config.yaml").exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    # The holder has exited: the kernel dropped its lock, the run goes ahead.
    assert main(["train", *QUICK, "--epochs", "1", "--out", str(out)]) == 0
    assert (out / "summary.json").exists() and not (out / RunLock.FILENAME).exists()


def test_a_run_that_fails_before_writing_leaves_no_folder(capsys, tmp_path):
    out = tmp_path / "never"
    one_line_error(
        capsys, ["train", *QUICK, "--data-root", str(tmp_path / "none"), "--dataset", "cifar10", "--out", str(out)]
    )
    assert not out.exists()


# -- a full disk --------------------------------------------------------------------------------
# RLIMIT_FSIZE makes the kernel refuse to grow a file past the limit (EFBIG), root or not:
# torch.save's write fails inside the C++ writer, as on a full disk.
_LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
from lmix.experiments.cli import main
from lmix.experiments.io import RunLock
sys.exit(main(sys.argv[1:]))
"""


def test_full_disk_gives_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import lmix.experiments.train.trainer as trainer_mod

    out = tmp_path / "run"
    real_save = trainer_mod.atomic_torch_save

    def crash_after_epoch_1(path, obj):
        real_save(path, obj)
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(trainer_mod, "atomic_torch_save", crash_after_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(**FAST, epochs=2, method="mixup", out=str(out)), log=lambda *_: None)
    before = (out / CHECKPOINT).read_bytes()
    size = len(before)
    assert size > 8192  # the limit below lets config.yaml and metrics.jsonl through, not the checkpoint

    args = ["train", *QUICK, "--batch-size", "64", "--epochs", "2", "--method", "mixup", "--out", str(out)]
    res = subprocess.run(
        [sys.executable, "-c", _LIMITED.format(limit=8192), *args],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 1, res.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert "cannot write" in lines[0] and CHECKPOINT in lines[0]
    assert (out / CHECKPOINT).read_bytes() == before and load_checkpoint(out / CHECKPOINT)["epoch"] == 1
    assert _no_temp_files(out) and not (out / "summary.json").exists()


# -- signals ------------------------------------------------------------------------------------
SIGNAL_ARGS = [
    "train",
    "--dataset",
    "digits",
    "--model",
    "simple_cnn",
    "--width",
    "32",
    "--batch-size",
    "32",
    "--epochs",
    "3",
    "--method",
    "lmix",
    "--eval-train",
    "100",
    "--no-progress",
]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    ref = tmp_path_factory.mktemp("ref") / "run"
    subprocess.run(
        [sys.executable, "-m", "lmix", *SIGNAL_ARGS, "--out", str(ref)],
        check=True,
        env=_env(),
        capture_output=True,
        timeout=300,
    )
    return ref


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_cleanly_with_a_resume_hint_then_resume_is_bit_exact(tmp_path, reference_run, sig, code):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmix", *SIGNAL_ARGS, "--out", str(out)],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while not (out / CHECKPOINT).exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(0.1)  # land inside the next epoch
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == code, err[-2000:]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert "lmix train --resume --out" in lines[0] and str(out) in lines[0]
    epochs_done = load_checkpoint(out / CHECKPOINT)["epoch"]
    assert 1 <= epochs_done < 3 and not (out / "summary.json").exists()
    assert _no_temp_files(out) and not (out / RunLock.FILENAME).exists()
    assert len(_metrics(out)) == epochs_done

    subprocess.run(
        [sys.executable, "-m", "lmix", "train", "--resume", "--out", str(out)],
        check=True,
        env=_env(),
        capture_output=True,
        timeout=300,
    )
    assert _metrics(out) == _metrics(reference_run)
    a, b = load_checkpoint(out / CHECKPOINT)["model"], load_checkpoint(reference_run / CHECKPOINT)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_unwritable_out_dir_is_one_line_and_leaves_nothing(capsys, tmp_path, monkeypatch):
    import errno

    from lmix.experiments.train import failures

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(failures.os, "open", read_only)  # root ignores chmod; a read-only mount does not
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, ["train", *QUICK, "--epochs", "1", "--out", str(out)])
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and "Traceback" not in err
    assert "cannot write" in lines[0] and "Read-only file system" in lines[0]
    assert not out.exists()


def test_out_dir_without_permission_is_a_usage_error(capsys, tmp_path, monkeypatch):
    import errno

    from lmix.experiments.train import failures

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(failures.os, "open", denied)  # root ignores chmod
    out = tmp_path / "run"
    one_line_error(capsys, ["train", *QUICK, "--epochs", "1", "--out", str(out)], "Permission denied", "--out")
    assert not out.exists()


def test_stop_on_signal_defers_the_first_signal_and_not_the_second():
    from lmix.experiments.train.failures import StopOnSignal, TrainingInterrupted

    before = signal.getsignal(signal.SIGTERM)
    with StopOnSignal() as stop:
        os.kill(os.getpid(), signal.SIGTERM)  # Python runs the handler before the next line
        assert stop.signum == signal.SIGTERM  # noted, nothing raised yet: the step finishes
        with pytest.raises(TrainingInterrupted) as info:
            stop.check()
        assert info.value.exit_code == 143
        with pytest.raises(TrainingInterrupted):
            os.kill(os.getpid(), signal.SIGTERM)  # asked twice: at once
            time.sleep(1)
        stop.signum = None
    assert signal.getsignal(signal.SIGTERM) == before
    # A signal that arrives while the run finishes is acted on after it, not swallowed.
    with pytest.raises(KeyboardInterrupt) as info:
        with StopOnSignal():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
    assert not isinstance(info.value, TrainingInterrupted)
