"""The trainer learns, writes its files, resumes bit-exactly after a kill, and runs under DDP."""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lmix.experiments.train import TrainConfig, train
from lmix.experiments.train.trainer import CHECKPOINT, load_checkpoint

TIMING_KEYS = {"epoch_seconds", "train_images_per_sec"}

FAST = dict(dataset="digits", model="simple_cnn", width=8, batch_size=64, eval_train=200, progress=False)


def _cfg(tmp_path: Path, **kw) -> TrainConfig:
    return TrainConfig(**{**FAST, "out": str(tmp_path / "run"), **kw})


def _metrics(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[3] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def test_trainer_learns_and_writes_files(tmp_path):
    cfg = _cfg(tmp_path, epochs=8, method="lmix", lr=0.05)
    summary = train(cfg, log=lambda *_: None)
    out = Path(cfg.out)
    for name in ("config.yaml", "metrics.jsonl", CHECKPOINT, "summary.json"):
        assert (out / name).exists(), name
    for key in ("final_acc", "best_acc", "epochs", "method", "model", "dataset", "seed", "train_images_per_sec"):
        assert key in summary
    for key in ("lmix_version", "torch_version", "git_commit", "device_name"):
        assert key in summary, key
    assert summary["torch_version"] == str(torch.__version__) and summary["device_name"]
    assert summary["final_acc"] > 60.0  # chance is 10%
    assert summary["best_acc"] >= summary["final_acc"]
    rows = _metrics(out)
    assert [r["epoch"] for r in rows] == list(range(1, 9))
    assert json.loads((out / "summary.json").read_text())["final_acc"] == summary["final_acc"]
    ckpt = load_checkpoint(out / CHECKPOINT)
    assert ckpt["epoch"] == 8 and "mixer" in ckpt["rng"][0] and "loader" in ckpt["rng"][0]
    # A finished run is skipped, not retrained.
    again = train(_cfg(tmp_path, epochs=8, method="lmix", lr=0.05), log=lambda *_: None)
    assert again == json.loads((out / "summary.json").read_text())


def test_crash_after_checkpoint_then_resume_is_bit_exact(tmp_path, monkeypatch):
    """A crash right after epoch 2's checkpoint; the same call again continues to the same result."""
    import lmix.experiments.train.trainer as trainer_mod

    full = _cfg(tmp_path / "a", epochs=4, method="cutmix")
    train(full, log=lambda *_: None)

    real_save = trainer_mod.atomic_torch_save
    saves = []

    def crashing_save(path, obj):
        real_save(path, obj)
        saves.append(obj["epoch"])
        if obj["epoch"] == 2:
            raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(trainer_mod, "atomic_torch_save", crashing_save)
    part = _cfg(tmp_path / "b", epochs=4, method="cutmix")
    with pytest.raises(KeyboardInterrupt):
        train(part, log=lambda *_: None)
    monkeypatch.setattr(trainer_mod, "atomic_torch_save", real_save)
    assert load_checkpoint(Path(part.out) / CHECKPOINT)["epoch"] == 2
    train(_cfg(tmp_path / "b", epochs=4, method="cutmix"), log=lambda *_: None)
    assert _metrics(Path(full.out)) == _metrics(Path(part.out))


@pytest.mark.slow
def test_kill_mid_epoch_then_resume_is_bit_exact(tmp_path):
    """SIGKILL a training subprocess mid-run; re-running the same command ends bit-identical."""
    args = [
        sys.executable,
        "-m",
        "lmix",
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
        "5",
        "--method",
        "lmix",
        "--eval-train",
        "100",
        "--no-progress",
    ]
    ref = tmp_path / "ref"
    subprocess.run(args + ["--out", str(ref)], check=True, env=_env(), capture_output=True, timeout=300)

    out = tmp_path / "killed"
    proc = subprocess.Popen(
        args + ["--out", str(out)], env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while not (out / CHECKPOINT).exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(0.15)  # land inside the next epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    epochs_done = load_checkpoint(out / CHECKPOINT)["epoch"]
    assert 1 <= epochs_done < 5, "the kill must land before the run finished"
    assert not (out / "summary.json").exists()

    subprocess.run(args + ["--out", str(out)], check=True, env=_env(), capture_output=True, timeout=300)
    assert _metrics(out) == _metrics(ref)
    a = load_checkpoint(out / CHECKPOINT)["model"]
    b = load_checkpoint(ref / CHECKPOINT)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_ddp_two_cpu_processes_agree_with_single_process(tmp_path):
    common = [
        "--dataset",
        "digits",
        "--model",
        "simple_cnn",
        "--width",
        "16",
        "--batch-size",
        "64",
        "--epochs",
        "6",
        "--method",
        "mixup",
        "--lr",
        "0.05",
        "--eval-train",
        "0",
        "--no-progress",
        "--device",
        "cpu",
    ]
    single = tmp_path / "single"
    subprocess.run(
        [sys.executable, "-m", "lmix", "train", *common, "--out", str(single)],
        check=True,
        env=_env(),
        capture_output=True,
        timeout=300,
    )
    ddp = tmp_path / "ddp"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    res = subprocess.run(
        [*torchrun, "-m", "lmix", "train", *common, "--out", str(ddp)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    s1 = json.loads((single / "summary.json").read_text())
    s2 = json.loads((ddp / "summary.json").read_text())
    assert s2["world_size"] == 2
    assert s2["num_test_images"] == s1["num_test_images"]  # every test image counted once
    assert len(_metrics(ddp)) == 6  # only rank 0 wrote
    # Every rank built the mixer with the run's seed and drew as often; the mixer gave each rank
    # its own stream.
    mixers = [rng["mixer"] for rng in load_checkpoint(ddp / CHECKPOINT)["rng"]]
    assert [m["seed"] for m in mixers] == [0, 0] and mixers[0]["draws"] == mixers[1]["draws"] > 0
    assert not torch.equal(mixers[0]["generators"]["cpu"], mixers[1]["generators"]["cpu"])
    # Different per-rank randomness and per-rank BatchNorm statistics: close, not identical.
    assert s2["final_acc"] > 70.0 and abs(s2["final_acc"] - s1["final_acc"]) < 10.0


@pytest.mark.parametrize("rank", [0, 1])
def test_every_rank_builds_the_mixer_with_the_runs_seed(tmp_path, rank):
    """No per-rank seed: inside the process group the mixer draws each rank's stream itself."""
    import torch.distributed as dist

    from lmix.experiments.train.distributed import DistEnv
    from lmix.experiments.train.trainer import _set_up

    config = _cfg(tmp_path, method="lmix+mixup", seed=5).resolve()
    # A group of one process stands in for the job (DDP wraps the model in it); the DistEnv
    # says rank ``rank`` of two.
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        run = _set_up(config, DistEnv(rank=rank, world_size=2), torch.device("cpu"), tmp_path, print)
    finally:
        dist.destroy_process_group()
    assert run.mixer.describe()["seed"] == 5 and [m.seed for m in run.mixer.mixers] == [6, 7]


def test_checkpoint_every_n_epochs_then_resume_is_bit_exact(tmp_path, monkeypatch):
    """Checkpoints after epochs 2 and 3 (the last); a crash after epoch 3's row replays epoch 3."""
    import lmix.experiments.train.trainer as trainer_mod

    full = _cfg(tmp_path / "a", epochs=3, method="fmix", checkpoint_every=2)
    saved = []
    real_save = trainer_mod.atomic_torch_save

    def recording_save(path, obj):
        saved.append(obj["epoch"])
        real_save(path, obj)

    monkeypatch.setattr(trainer_mod, "atomic_torch_save", recording_save)
    train(full, log=lambda *_: None)
    assert saved == [2, 3]

    real_report = trainer_mod._report_epoch

    def crash_after_epoch_3(run, epoch, row):
        real_report(run, epoch, row)
        if epoch == 2:
            raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(trainer_mod, "_report_epoch", crash_after_epoch_3)
    part = _cfg(tmp_path / "b", epochs=4, method="fmix", checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):
        train(part, log=lambda *_: None)
    monkeypatch.setattr(trainer_mod, "_report_epoch", real_report)
    out = Path(part.out)
    assert load_checkpoint(out / CHECKPOINT)["epoch"] == 2 and len(_metrics(out)) == 3
    train(_cfg(tmp_path / "b", epochs=4, method="fmix", checkpoint_every=2), log=lambda *_: None)
    ref = _cfg(tmp_path / "c", epochs=4, method="fmix")
    train(ref, log=lambda *_: None)
    assert _metrics(out) == _metrics(Path(ref.out))


def test_config_yaml_holds_the_values_the_run_used(tmp_path, monkeypatch):
    import yaml

    import lmix.data
    from lmix.experiments.train import config_from_sources, mixer_from_config

    seen = {}
    real_build = lmix.data.build_loaders

    def recording_build(*args, **kwargs):
        seen.update(kwargs)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(lmix.data, "build_loaders", recording_build)
    paper = {"alpha": 1.0, "method_params": {"cutmix": {"alpha": 0.5, "box_size": 4}}}
    cfg = config_from_sources(paper, {**FAST, "epochs": 1, "method": "cutmix", "test_batch_size": 100, "flip": True})
    cfg.out = str(tmp_path / "run")
    train(cfg, log=lambda *_: None)
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert (saved["alpha"], saved["box_size"], saved["method_params"]) == (0.5, 4, {})
    # The mixer's defaults are stated too; settings CutMix does not take stay null.
    assert (saved["box_rounding"], saved["mix_mode"], saved["k"], saved["patchup_type"]) == (
        "exact",
        "sample",
        None,
        None,
    )
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["mixer"] == mixer_from_config(config_from_sources(saved)).describe()
    assert (summary["mixer"]["name"], summary["mixer"]["alpha"], summary["mixer"]["size"]) == ("cutmix", 0.5, [4, 4])
    assert (saved["crop_padding"], saved["flip"]) == (1, True)  # digits' crop, the flip asked for
    assert (seen["crop_padding"], seen["flip"], seen["test_batch_size"]) == (1, True, 100)
    # Re-running the same command recognises the run as complete.
    again = config_from_sources(paper, {**FAST, "epochs": 1, "method": "cutmix", "test_batch_size": 100, "flip": True})
    again.out = str(tmp_path / "run")
    assert (
        train(again, log=lambda *_: None)["final_acc"]
        == json.loads((tmp_path / "run" / "summary.json").read_text())["final_acc"]
    )


_HOST_READS = ("item", "tolist", "__bool__", "__int__", "__float__")


@pytest.mark.parametrize("method", ["none", "mixup", "cutmix", "fmix", "lmix", "cutout"])
def test_training_steps_read_nothing_back_from_the_device(method, monkeypatch):
    """No .item()/bool()/int()/float()/.tolist() on a tensor in train_epoch (a host-device sync on a GPU)."""
    from lmix.data import DeviceLoader, dataset_info, load_tensors
    from lmix.experiments.train.step import eager_step, train_epoch
    from lmix.mixing import create_mixer
    from lmix.models import create_model

    data = load_tensors("digits", train=True)
    loader = DeviceLoader(
        data.images[:256],
        data.labels[:256],
        info=dataset_info("digits"),
        batch_size=64,
        train=True,
        device="cpu",
        seed=0,
    )
    torch.manual_seed(0)
    model = create_model("simple_cnn", num_classes=10, in_channels=1, width=8)
    mixer = create_mixer(method, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    batches = list(loader)  # the loader's own work is not the step's

    def forbid(name):
        original = getattr(torch.Tensor, name)

        def guarded(self, *args, **kwargs):
            # The core's precise label check reads CPU labels only (free on a CPU; off the CPU
            # it is torch._assert_async): allowed. Any other read is a sync on a GPU.
            if not any(f.function == "check_labels_in_range" for f in inspect.stack(0)[1:4]):
                raise AssertionError(f"Tensor.{name} called in the training step")
            return original(self, *args, **kwargs)

        return guarded

    for name in _HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, forbid(name))
    step = eager_step(model, mixer, autocast=contextlib.nullcontext())
    loss_sum, correct_sum, seen = train_epoch(model, batches, step, optimizer=opt, scaler=scaler, scheduler=sched)
    monkeypatch.undo()
    assert seen == 256 and torch.isfinite(loss_sum) and 0 <= correct_sum <= 256


@pytest.mark.slow
def test_compiled_whole_step_matches_the_eager_step(tmp_path):
    """--compile on CPU: the compiled mix + forward + loss gives the eager loss for the same parameters."""
    from lmix.experiments.train.step import CompiledStep, eager_step
    from lmix.mixing import create_mixer
    from lmix.models import create_model

    torch.manual_seed(0)
    model = create_model("simple_cnn", num_classes=10, in_channels=1, width=4)
    images, labels = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    eager = eager_step(model, create_mixer("cutmix", seed=3), autocast=contextlib.nullcontext())
    compiled = CompiledStep(model, create_mixer("cutmix", seed=3), amp_dtype=None)
    for _ in range(2):  # the second call reuses the graph
        le, loss_e, be = eager(images, labels)
        lc, loss_c, bc = compiled(images, labels)
        assert torch.equal(be.lam, bc.lam) and torch.equal(be.labels_b, bc.labels_b)
        torch.testing.assert_close(lc, le, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(loss_c, loss_e, rtol=1e-4, atol=1e-5)


def test_training_input_hands_over_the_steps_dtype_and_memory_format():
    """What the trainer wraps the CUDA training loader in (exercised here on CPU tensors)."""
    from lmix.data import DeviceLoader, dataset_info
    from lmix.experiments.train.trainer import _TrainingInput

    images = torch.randint(0, 256, (8, 3, 6, 6), dtype=torch.uint8)
    loader = DeviceLoader(
        images, torch.arange(8) % 10, info=dataset_info("cifar10"), batch_size=4, train=True, device="cpu", seed=0
    )
    wrapped = _TrainingInput(loader, dtype=torch.bfloat16, memory_format=torch.channels_last)
    assert len(wrapped) == 2 and wrapped.num_samples == loader.num_samples  # the loader's attributes pass through
    wrapped.set_epoch(1)
    plain = list(loader)
    for (x, y), (ref_x, ref_y) in zip(wrapped, plain, strict=True):
        assert x.dtype == torch.bfloat16 and x.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(x, ref_x.to(torch.bfloat16)) and torch.equal(y, ref_y)
