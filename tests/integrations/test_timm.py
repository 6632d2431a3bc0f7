"""lmix.integrations.timm: timm's Mixup / FastCollateMixup contract with lmix mixers, and the launcher."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("timm")
import timm  # noqa: E402
import timm.data  # noqa: E402
import timm.data.mixup  # noqa: E402
from timm.data.mixup import mixup_target  # noqa: E402

import lmix  # noqa: E402
from lmix.integrations import timm as lt  # noqa: E402

SCRIPT = Path(__file__).with_name("timm_train_script.py")


def constant_batch(batch: int, size=(8, 8)) -> torch.Tensor:
    """(B, 3, H, W) float: sample i is the constant 10 * i, so each pixel tells its source."""
    return (10.0 * torch.arange(batch, dtype=torch.float32)).view(-1, 1, 1, 1).expand(batch, 3, *size).contiguous()


def unsmooth(targets: torch.Tensor, smoothing: float) -> torch.Tensor:
    k = targets.shape[1]
    return (targets - smoothing / k) / (1 - smoothing)


# -- the classes ---------------------------------------------------------------------------------


def test_subclasses_of_timms_classes():
    assert issubclass(lt.Mixup, timm.data.Mixup)
    assert issubclass(lt.FastCollateMixup, timm.data.FastCollateMixup)
    assert issubclass(lt.FastCollateMixup, timm.data.mixup.Mixup)


@pytest.mark.parametrize("method", ["lmix", "fmix", "cutmix", "mixup"])
@pytest.mark.parametrize("mode", ["batch", "elem", "pair"])
@pytest.mark.parametrize("batch", [6, 7])
def test_mixup_targets_are_timms_with_the_exact_share_and_flip_partners(method, mode, batch):
    smoothing = 0.1
    m = lt.Mixup(num_classes=batch, label_smoothing=smoothing, mode=mode, method=method, seed=1)
    images = constant_batch(batch)
    mixed, targets = m(images.clone(), torch.arange(batch))
    assert mixed.shape == images.shape and targets.shape == (batch, batch) and targets.dtype == torch.float32
    torch.testing.assert_close(targets.sum(1), torch.ones(batch))
    plain = unsmooth(targets, smoothing)
    # The partner of i is B - 1 - i (timm's flip): only classes i and B - 1 - i appear.
    for i in range(batch):
        assert set(plain[i].nonzero().flatten().tolist()) <= {i, batch - 1 - i}
    # The mean pixel is the target-weighted mean of the sources' constants (exact share).
    torch.testing.assert_close(mixed.mean(dim=(1, 2, 3)), plain @ (10.0 * torch.arange(batch)), atol=1e-3, rtol=0)
    if method != "mixup":
        for i in range(batch):
            own = (mixed[i] == 10.0 * i).float().mean()
            if i != batch - 1 - i:
                assert own.item() == pytest.approx(plain[i, i].item(), abs=1e-6)
    lam = plain[torch.arange(batch), torch.arange(batch)]
    if mode == "batch":  # one lam (one mask or box) for the batch
        assert len(set(lam[lam < 1].tolist())) <= 1


def test_disabled_mixup_gives_timms_smoothed_one_hot_targets():
    m = lt.Mixup(num_classes=5, label_smoothing=0.2, seed=0)
    m.mixup_enabled = False
    images, target = torch.rand(4, 3, 8, 8), torch.tensor([0, 4, 2, 2])
    mixed, targets = m(images, target)
    assert mixed is images
    torch.testing.assert_close(targets, mixup_target(target, 5, 1.0, 0.2))


def test_multi_label_targets_follow_timm():
    m = lt.Mixup(num_classes=3, label_smoothing=0.2, multi_label=True, mode="elem", method="mixup", seed=0)
    dense = torch.tensor([[1.0, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    images = constant_batch(4)
    mixed, targets = m(images, dense)
    y = dense * 0.8 + 0.1
    lam = (mixed[:, 0, 0, 0] - 10.0 * torch.arange(4).flip(0)) / (10.0 * (torch.arange(4) - torch.arange(4).flip(0)))
    expected = lam[:, None] * y + (1 - lam[:, None]) * y.flip(0)
    torch.testing.assert_close(targets, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"method": "mixup"},
        {"method": "lmix"},
        {"method": "lmix", "image_k": 1.0},
        {"method": "cutmix", "mode": "batch"},
        {"method": "fmix", "mixup_alpha": 1.0, "cutmix_alpha": 1.0},
    ],
    ids=["mixup", "lmix", "lmix-sharpened", "cutmix-batch", "fmix-switch"],
)
def test_fast_collate_output_is_timms_format_and_matches_the_float_path(kwargs):
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (3, 10, 12), dtype=np.uint8) for _ in range(9)]  # odd: timm asserts even
    labels = [int(x) for x in rng.integers(0, 10, 9)]
    kwargs = {"mode": "elem", **kwargs}
    for as_tensor in (False, True):
        batch = [(torch.from_numpy(a) if as_tensor else a, y) for a, y in zip(arrays, labels)]
        collate = lt.FastCollateMixup(num_classes=10, seed=3, **kwargs)
        images, targets = collate(batch)
        assert images.dtype == torch.uint8 and images.shape == (9, 3, 10, 12)
        assert targets.dtype == torch.float32 and targets.shape == (9, 10)
        ref_images, ref_targets = lt.Mixup(num_classes=10, seed=3, **kwargs)(
            torch.from_numpy(np.stack(arrays)).float(), torch.tensor(labels)
        )
        assert torch.equal(images, ref_images.round().clamp(0, 255).to(torch.uint8))
        assert not torch.equal(images, torch.from_numpy(np.stack(arrays)))
        torch.testing.assert_close(targets, ref_targets)
    # timm's own collate gives the same format.
    timm_images, timm_targets = timm.data.FastCollateMixup(num_classes=10, mode="elem")(batch[:8])
    assert (timm_images.dtype, timm_targets.dtype, timm_targets.shape) == (torch.uint8, torch.float32, (8, 10))


def test_fast_collate_refuses_float_images():
    with pytest.raises(TypeError, match="uint8"):
        lt.FastCollateMixup(num_classes=3)([(np.zeros((3, 4, 4), np.float32), 0)] * 2)


def test_prob_and_switch_prob_map_to_a_per_sample_choice():
    m = lt.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, prob=0.5, switch_prob=0.25, mode="elem", seed=0, num_classes=8)
    assert isinstance(m.mixer, lmix.MixChoice) and m.mixer.mode == "sample"
    kinds = [type(c).__name__ for c in m.mixer.mixers]
    assert kinds == ["NoMix", "Mixup", "LMix"]
    assert m.mixer.p == pytest.approx([0.5, 0.375, 0.125])
    assert m.mixer.mixers[1].alpha == 0.8 and m.mixer.mixers[2].alpha == 1.0
    assert all(c.pairing == "flip" for c in m.mixer.mixers[1:])
    # Over many samples about half are left alone (lam = 1, image unchanged).
    images = torch.rand(400, 1, 4, 4)
    mixed, targets = m(images, torch.zeros(400, dtype=torch.long))
    untouched = (mixed == images).flatten(1).all(1).float().mean().item()
    assert 0.4 < untouched < 0.6
    # method="cutmix" with both alphas is timm's Mixup/CutMix switch; batch mode chooses per batch.
    m = lt.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode="batch", method="cutmix", seed=0, num_classes=8)
    assert [type(c).__name__ for c in m.mixer.mixers] == ["Mixup", "CutMix"]
    assert m.mixer.mode == "batch" and m.mixer.mixers[1].mode == "batch"
    # One alpha only: the method alone; prob = 0: no mixing at all.
    assert isinstance(lt.Mixup(mixup_alpha=1.0, num_classes=3, seed=0).mixer, lmix.LMix)
    assert isinstance(lt.Mixup(prob=0.0, num_classes=3, seed=0).mixer, lmix.NoMix)
    assert lt.Mixup(mixup_alpha=0.3, num_classes=3, method="mixup", seed=0).mixer.alpha == 0.3
    assert lt.Mixup(num_classes=3, method="lmix", alpha=2.0, k=0.5, seed=0).mixer.k == 0.5


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"cutmix_minmax": (0.2, 0.8)}, "cutmix_minmax is not supported"),
        ({"correct_lam": False}, "correct_lam"),
        ({"mode": "half"}, "mode must be one of batch, pair, elem"),
        ({"prob": 1.5}, "prob must be"),
        ({"num_classes": 0}, "num_classes must be"),
        ({"method": "patchup"}, "method must be one of"),
        ({"method": "lmix", "size": 3}, "unknown parameter(s) ['size']"),
        ({"mixup_alpha": -1.0}, "mixup_alpha must be"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, needle):
    with pytest.raises(ValueError) as err:
        lt.FastCollateMixup(**kwargs)
    assert needle in str(err.value)


def test_seed_none_follows_torch_seed_and_state_dict_resumes():
    torch.manual_seed(5)
    a = lt.Mixup(num_classes=4, mode="elem", seed=None)
    torch.manual_seed(5)
    b = lt.Mixup(num_classes=4, mode="elem", seed=None)
    x, y = torch.rand(6, 3, 8, 8), torch.arange(6) % 4
    assert torch.equal(a(x, y)[0], b(x, y)[0])
    state = a.state_dict()
    first = a(x, y)
    b.load_state_dict(state)
    assert torch.equal(b(x, y)[0], first[0])


def test_mixup_enabled_reaches_persistent_workers():
    data = [(np.full((3, 4, 4), i, np.uint8), i % 3) for i in range(8)]
    collate = lt.FastCollateMixup(num_classes=3, mode="elem", seed=0, label_smoothing=0.0)
    loader = torch.utils.data.DataLoader(data, batch_size=4, num_workers=1, persistent_workers=True, collate_fn=collate)
    first = [t for _, t in loader]
    collate.mixup_enabled = False  # what timm's PrefetchLoader.mixup_enabled setter does
    second = [t for _, t in loader]
    assert any((t.max(1).values < 1).any() for t in first)
    assert all(torch.equal(t, torch.nn.functional.one_hot(t.argmax(1), 3).float()) for t in second)


def test_timm_create_loader_with_the_collate_mixer_trains_a_timm_model():
    import torchvision
    from timm.loss import SoftTargetCrossEntropy

    torch.manual_seed(0)
    dataset = torchvision.datasets.FakeData(24, (3, 32, 32), num_classes=10)
    collate = lt.FastCollateMixup(num_classes=10, mode="elem", method="lmix", seed=0)
    loader = timm.data.create_loader(
        dataset,
        (3, 32, 32),
        batch_size=8,
        is_training=True,
        no_aug=True,
        num_workers=0,
        collate_fn=collate,
        device=torch.device("cpu"),
    )
    assert loader.mixup_enabled  # timm's PrefetchLoader recognises the subclass
    model = timm.create_model("test_resnet", num_classes=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = SoftTargetCrossEntropy()
    steps = 0
    for images, targets in loader:
        assert images.dtype == torch.float32 and images.shape == (8, 3, 32, 32)  # normalised by the prefetcher
        assert targets.shape == (8, 10) and (targets.max(1).values < 0.91).any()  # mixed
        loss = loss_fn(model(images), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert torch.isfinite(loss)
        steps += 1
    assert steps == 3
    loader.mixup_enabled = False
    assert not collate.mixup_enabled


# -- the launcher --------------------------------------------------------------------------------


@pytest.fixture
def restore_timm(monkeypatch):
    """The launcher replaces timm's classes for the script it runs: put them back afterwards."""
    for module in (timm.data, timm.data.mixup):
        for name in ("Mixup", "FastCollateMixup"):
            monkeypatch.setattr(module, name, getattr(module, name))
    for module in (timm.data, timm.data.loader):
        monkeypatch.setattr(module, "create_loader", module.create_loader)


def run_launcher(capsys, tmp_path, launcher_args, script_args):
    record = tmp_path / "record.json"
    argv = [*launcher_args, "--", str(SCRIPT), "--record", str(record), *script_args]
    code = lt.main(argv)
    err = capsys.readouterr().err
    return code, err, json.loads(record.read_text()) if record.exists() else None


def lams(step, smoothing):
    """Own-class share of every sample of a recorded step (labels unknown: the largest entry)."""
    return unsmooth(torch.tensor(step["targets"]), smoothing).max(1).values


@pytest.mark.parametrize("prefetcher", [True, False], ids=["prefetcher", "no-prefetcher"])
def test_launcher_runs_the_script_with_lmix_and_honours_timms_flags(restore_timm, capsys, tmp_path, prefetcher):
    script_args = ["--epochs", "2", "--mixup-off-epoch", "1", "--smoothing", "0.2"]
    script_args += [] if prefetcher else ["--no-prefetcher"]
    launcher_args = ["--method", "lmix", "--k", "2", "--seed", "0", "--mix-on", "loader"]
    code, err, record = run_launcher(capsys, tmp_path, launcher_args, script_args)
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.startswith("lmix:")]
    name = "FastCollateMixup" if prefetcher else "Mixup"
    assert len(lines) == 1 and lines[0].startswith(f"lmix: timm.data.{name} -> LMix(alpha=1.0, decay=3.0, k=2.0")
    assert "pairing='flip'" in lines[0] and "label_smoothing=0.2" in lines[0] and "mode='elem'" in lines[0]
    assert record["mixer"] == "lmix.integrations.timm.launch"
    where = "mixing in the DataLoader workers" if prefetcher else "mixing on the device after the loader"
    assert lines[0].endswith(where)
    steps = record["steps"]
    assert [s["epoch"] for s in steps] == [0, 0, 1, 1]
    assert all(s["dtype"] == "torch.float32" and s["shape"] == [8, 3, 32, 32] for s in steps)
    torch.testing.assert_close(torch.tensor(steps[0]["targets"]).sum(1), torch.ones(8))
    # Epoch 0 mixed per sample (different lams), epoch 1 not (--mixup-off-epoch 1), smoothing 0.2.
    assert len(set(lams(steps[0], 0.2).tolist())) > 2
    for s in steps[2:]:
        assert sorted(set(torch.tensor(s["targets"]).flatten().tolist())) == pytest.approx([0.02, 0.82])


def test_launcher_keeps_timms_prob_switch_and_mode(restore_timm, capsys, tmp_path):
    script_args = ["--epochs", "1", "--mixup", "0.5", "--cutmix", "1.0", "--mixup-prob", "0.0", "--mixup-mode", "batch"]
    code, err, record = run_launcher(capsys, tmp_path, ["--method", "fmix"], script_args)
    assert code == 0, err
    assert "NoMix" in err  # prob 0: nothing mixed
    for s in record["steps"]:
        torch.testing.assert_close(lams(s, 0.1), torch.ones(8))


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--method", "lmix"], "missing '--'"),
        (["--"], "no script"),
        (["--", "no/such/train.py"], "not found"),
        (["--method", "bogus", "--", str(SCRIPT)], "method must be one of"),
        (["--method", "lmix", "--size", "4", "--", str(SCRIPT)], "unknown parameter(s) ['size']"),
        (["--alpha", "-1", "--", str(SCRIPT)], "alpha must be"),
        (["--alpha", "--", str(SCRIPT)], "needs a value"),
        (["lmix", "--", str(SCRIPT)], "unexpected argument 'lmix'"),
        (["--seed", "x", "--", str(SCRIPT)], "--seed must be"),
        (["--smoothing", "0.1", "--", str(SCRIPT)], "is timm's"),
        (["--mix-on", "gpu", "--", str(SCRIPT)], "--mix-on must be one of loader, device"),
        (["--", str(SCRIPT), "--cutmix-minmax", "0.2", "0.8"], "--cutmix-minmax is not supported"),
    ],
)
def test_launcher_usage_errors_are_one_line_exit_2(restore_timm, capsys, argv, needle):
    code = lt.main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert needle in lines[0], lines[0]


def test_launcher_help(capsys):
    assert lt.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--method NAME" in out and "lmix, fmix, mixup, cutmix, cutout, none" in out


@pytest.mark.filterwarnings("ignore:'lmix.integrations.timm' found in sys.modules")
def test_launcher_as_a_module(restore_timm, monkeypatch, capfd, tmp_path):
    # `python -m lmix.integrations.timm ...` (its __main__ block, run in this process to save the
    # interpreter start), with a DataLoader worker: the collate mixer runs there.
    record = tmp_path / "r.json"
    argv = ["lmix.integrations.timm", "--method", "cutmix", "--", str(SCRIPT)]
    argv += ["--epochs", "1", "--samples", "8", "--workers", "1", "--record", str(record)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exc:
        runpy.run_module("lmix.integrations.timm", run_name="__main__")
    err = capfd.readouterr().err
    assert exc.value.code == 0, err
    assert "lmix: timm.data.FastCollateMixup -> CutMix(" in err
    steps = json.loads(record.read_text())["steps"]
    assert len(steps) == 1 and torch.tensor(steps[0]["targets"]).shape == (8, 10)
    assert (torch.tensor(steps[0]["targets"]).max(1).values < 0.9).any()  # mixed in the worker


# -- mixing on the device ------------------------------------------------------------------------


def test_device_collate_is_timms_plain_fast_collate():
    rng = np.random.default_rng(1)
    batch = [(rng.integers(0, 256, (3, 6, 6), dtype=np.uint8), i % 4) for i in range(5)]
    images, targets = lt.FastCollateMixup(num_classes=4, mix_on="device", seed=0)(batch)
    ref_images, ref_targets = timm.data.loader.fast_collate(batch)
    assert torch.equal(images, ref_images) and torch.equal(targets, ref_targets)
    assert images.dtype == torch.uint8 and targets.dtype == torch.int64
    with pytest.raises(ValueError, match="mix_on must be 'loader'"):
        lt.FastCollateMixup(num_classes=4, mix_on="gpu")


@pytest.mark.parametrize("kwargs", [{"method": "lmix"}, {"method": "cutmix", "mode": "batch"}], ids=["lmix", "cutmix"])
def test_device_path_mixes_as_the_loader_path(kwargs):
    """Normalising then mixing (device) equals mixing then normalising (loader) for masks, exactly."""
    rng = np.random.default_rng(2)
    batch = [(rng.integers(0, 256, (3, 10, 12), dtype=np.uint8), i % 10) for i in range(9)]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
    kwargs = {"mode": "elem", **kwargs}
    loader_images, loader_targets = lt.FastCollateMixup(num_classes=10, seed=4, **kwargs)(batch)
    device_collate = lt.FastCollateMixup(num_classes=10, seed=4, mix_on="device", **kwargs)
    plain, labels = device_collate(batch)
    device_images, device_targets = device_collate.mix_batch(plain.float().sub(mean).div(std), labels)
    assert torch.equal(device_images, loader_images.float().sub(mean).div(std))
    assert torch.equal(device_targets, loader_targets)
    assert not torch.equal(loader_images, plain)


def test_default_mix_on_follows_the_training_device(monkeypatch):
    from lmix.integrations.timm.launch import default_mix_on

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_mix_on(["--model", "resnet50"]) == "device"  # train.py's --device defaults to cuda
    assert default_mix_on(["--device", "cpu"]) == "loader"
    assert default_mix_on(["--device=cuda:1"]) == "device"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_mix_on([]) == "loader"


def test_device_mix_loader_trains_a_timm_model_and_takes_over_random_erasing(restore_timm):
    """timm's create_loader + train_one_epoch's shape on the device path (what the launcher installs)."""
    import torchvision
    from timm.loss import SoftTargetCrossEntropy

    lt.install("lmix", seed=0, mix_on="device")
    torch.manual_seed(0)
    dataset = torchvision.datasets.FakeData(24, (3, 32, 32), num_classes=10)
    collate = timm.data.FastCollateMixup(num_classes=10, mode="elem", mixup_alpha=0.8, cutmix_alpha=1.0)
    loader = timm.data.create_loader(
        dataset, (3, 32, 32), batch_size=8, is_training=True, re_prob=0.5,
        num_workers=1, collate_fn=collate, device=torch.device("cpu"),
    )  # fmt: skip
    assert isinstance(loader, lt.DeviceMixLoader) and collate.mix_on == "device"
    assert loader.loader.random_erasing is None and loader.random_erasing is not None  # erased after mixing
    assert len(loader) == 3 and loader.sampler is loader.loader.sampler
    model = timm.create_model("test_resnet", num_classes=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = SoftTargetCrossEntropy()
    for epoch in range(2):
        if epoch == 1 and loader.mixup_enabled:  # train.py's --mixup-off-epoch on the prefetcher path
            loader.mixup_enabled = False
        for images, targets in loader:
            assert images.dtype == torch.float32 and targets.shape == (8, 10)
            mixed = (targets.max(1).values < 0.9).any()
            assert bool(mixed) == (epoch == 0)
            loss = loss_fn(model(images), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    assert not collate.mixup_enabled


def test_launcher_mixes_on_the_device(restore_timm, capsys, tmp_path):
    script_args = ["--epochs", "2", "--mixup-off-epoch", "1", "--workers", "1"]
    code, err, record = run_launcher(capsys, tmp_path, ["--method", "fmix", "--mix-on", "device"], script_args)
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.startswith("lmix:")]
    assert len(lines) == 1 and lines[0].endswith("mixing on the device after timm's prefetcher"), lines
    steps = record["steps"]
    assert all(s["dtype"] == "torch.float32" for s in steps)
    assert len(set(lams(steps[0], 0.1).tolist())) > 2  # mixed per sample in epoch 0
    for s in steps[2:]:
        torch.testing.assert_close(lams(s, 0.1), torch.ones(8))
