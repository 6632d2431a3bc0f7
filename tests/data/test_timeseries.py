"""Time-series data sets (osuleaf, arrowhead): reading, the float (N, C, L) path through build_loaders,
the shift augmentation, and ``lmix train`` with them.

Most tests replace sktime's loaders by small fakes of the same interface (numpy ``(N, C, L)`` arrays
and string labels), so they need no extra; the tests on the real bundled sets are skipped without
the ``timeseries`` extra.
"""

from __future__ import annotations

import json
import sys
from importlib.util import find_spec

import numpy as np
import pytest
import torch

import lmix.data as D
import lmix.data.timeseries as ts
from lmix.augment import crop_flip_at, normalize
from tests.cli_helpers import one_line_error, run_cli

HAS_SKTIME = find_spec("sktime") is not None
needs_sktime = pytest.mark.skipif(not HAS_SKTIME, reason="the timeseries extra (sktime) is not installed")

# name -> (training series, test series, classes, channels, length) as the module docstring states them
REAL = {"osuleaf": (200, 242, 6, 1, 427), "arrowhead": (36, 175, 3, 1, 251)}


def _fake_loader(n_train: int = 60, n_test: int = 30, channels: int = 1, length: int = 427, classes: int = 6):
    """An sktime-style ``load(split=, return_type="numpy3D")``: float64 arrays, labels "1".."classes" as strings."""
    rng = np.random.default_rng(0)
    splits = {}
    for split, n in (("train", n_train), ("test", n_test)):
        labels = np.array([str(1 + i % classes) for i in range(n)])
        # Class c has mean c: learnable, and every value differs from the zero fill of a shift.
        values = rng.normal(size=(n, channels, length)) * 0.1 + labels.astype(float)[:, None, None]
        splits[split] = (values, labels)

    def load(*, split: str, return_type: str):
        assert return_type == "numpy3D"
        return splits[split]

    return load


@pytest.fixture
def fake_osuleaf(monkeypatch):
    load = _fake_loader()
    monkeypatch.setattr(ts, "_sktime_loader", lambda name: load)
    return load


def test_read_maps_classes_in_numeric_order_and_shares_them_between_splits(fake_osuleaf):
    values, labels, classes = ts.read_timeseries("osuleaf", train=True)
    raw_values, raw_labels = fake_osuleaf(split="train", return_type="numpy3D")
    assert values.dtype == torch.float32 and values.shape == (60, 1, 427)
    assert classes == ("1", "2", "3", "4", "5", "6")
    assert labels.tolist() == [int(v) - 1 for v in raw_labels]
    torch.testing.assert_close(values, torch.as_tensor(raw_values, dtype=torch.float32))
    test_values, test_labels, test_classes = ts.read_timeseries("osuleaf", train=False)
    assert test_values.shape == (30, 1, 427) and test_classes == classes and int(test_labels.max()) == 5


def test_class_order_numeric_then_text():
    assert ts._class_order(["10", "2", "1"]) == ["1", "2", "10"]
    assert ts._class_order(["b", "a", "10"]) == ["10", "a", "b"]


def test_unknown_test_class_and_unknown_name(monkeypatch):
    load = _fake_loader()

    def broken(*, split, return_type):
        values, labels = load(split=split, return_type=return_type)
        return values, (labels if split == "train" else np.array(["9"] * len(labels)))

    monkeypatch.setattr(ts, "_sktime_loader", lambda name: broken)
    with pytest.raises(ValueError, match=r"osuleaf: the test split has classes \['9'\]"):
        ts.read_timeseries("osuleaf", train=False)
    with pytest.raises(ValueError, match="not a time-series data set; choose one of: osuleaf, arrowhead"):
        ts.read_timeseries("digits", train=True)


def test_without_sktime_the_error_names_the_extra(monkeypatch):
    # As when sktime is not installed: its import fails at the top-level package.
    monkeypatch.delitem(sys.modules, "sktime.datasets", raising=False)
    monkeypatch.setitem(sys.modules, "sktime", None)
    with pytest.raises(ts.MissingTimeseriesExtraError) as info:
        D.load_tensors("osuleaf", train=True)
    err = info.value
    assert isinstance(err, ModuleNotFoundError) and err.name == "sktime"
    assert str(err) == (
        "the osuleaf data set needs the 'timeseries' extra (no module named 'sktime'): "
        "pip install -e '.[timeseries]' in a clone of lmix"
    )


def test_info_describes_sequences():
    for name, (_, _, classes, channels, length) in REAL.items():
        info = D.dataset_info(name)
        assert info.spatial_dims == 1 and info.image_size == (length,) and info.in_channels == channels
        assert info.num_classes == classes and info.in_memory and not info.downloadable and not info.flip
        assert name in D.list_datasets()
    assert D.dataset_info("cifar10").spatial_dims == 2 and D.dataset_info("imagefolder").spatial_dims == 2


def _all(loader, epoch=0):
    loader.set_epoch(epoch)
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


def test_build_loaders_serves_normalised_float_sequences(fake_osuleaf):
    train, test, info = D.build_loaders("osuleaf", batch_size=16, device="cpu", seed=0)
    assert isinstance(train, D.DeviceLoader) and train.images.dtype == torch.float32
    x, y = next(iter(train))
    assert x.shape == (16, 1, 427) and x.dtype == torch.float32 and y.dtype == torch.int64
    xt, yt = _all(test)
    raw, _ = fake_osuleaf(split="test", return_type="numpy3D")
    expected = (torch.as_tensor(raw, dtype=torch.float32) - info.mean[0]) / info.std[0]
    assert torch.equal(xt, normalize(test.images, info.mean, info.std, spatial_dims=1))
    torch.testing.assert_close(xt, expected)
    assert yt.numel() == 30 and len(train) == 60 // 16


def test_train_subset_stays_stratified(fake_osuleaf):
    train, _, _ = D.build_loaders("osuleaf", batch_size=6, device="cpu", seed=2, train_subset=30)
    assert train.dataset_size == 30 and torch.bincount(train.labels).tolist() == [5] * 6


def test_shift_augmentation_moves_each_sequence_of_its_own_label(fake_osuleaf):
    p = 5
    train, _, info = D.build_loaders("osuleaf", batch_size=10, device="cpu", seed=1, crop_padding=p, flip=True)
    assert info.crop_padding == p and info.flip
    x, y = _all(train, epoch=3)
    src = train.images[train.epoch_indices()]
    assert torch.equal(train.labels[train.epoch_indices()], y)
    # Each output is one of the 2p + 1 shifts (each either way in time) of its own source sequence.
    for i in range(x.shape[0]):
        candidates = torch.stack(
            [
                crop_flip_at(src[i : i + 1], offsets=torch.tensor([[o]]), flips=torch.tensor([f]), padding=p)[0]
                for o in range(2 * p + 1)
                for f in (False, True)
            ]
        )
        normalised = normalize(candidates, info.mean, info.std, spatial_dims=1)
        assert bool((normalised == x[i]).flatten(1).all(1).any())
    assert not torch.equal(_all(train, epoch=4)[0], x)  # a new epoch draws new shifts
    assert torch.equal(_all(train, epoch=3)[0], x)  # and an epoch is replayed exactly
    plain, _, _ = D.build_loaders("osuleaf", batch_size=10, device="cpu", seed=1)
    x0, y0 = _all(plain, epoch=3)  # the default: no shift, no flip
    assert torch.equal(x0, normalize(plain.images[plain.epoch_indices()], info.mean, info.std, spatial_dims=1))


def test_sequences_are_always_in_memory_and_shapes_must_match(fake_osuleaf):
    with pytest.raises(ValueError, match="osuleaf is a time-series data set, always kept in memory"):
        D.build_loaders("osuleaf", batch_size=8, device="cpu", seed=0, in_memory=False)
    seq = D.dataset_info("osuleaf")
    values = torch.zeros(8, 1, 427)
    labels = torch.zeros(8, dtype=torch.long)
    with pytest.raises(ValueError, match=r"osuleaf holds sequences \(N, C, L\)"):
        D.DeviceLoader(
            torch.zeros(8, 1, 4, 4, dtype=torch.uint8), labels, info=seq, batch_size=2, train=True, device="cpu", seed=0
        )
    with pytest.raises(ValueError, match=r"digits holds images \(N, C, H, W\)"):
        D.DeviceLoader(values, labels, info=D.dataset_info("digits"), batch_size=2, train=True, device="cpu", seed=0)
    with pytest.raises(ValueError, match="float32 one of shape"):
        D.DeviceLoader(values.double(), labels, info=seq, batch_size=2, train=True, device="cpu", seed=0)


@needs_sktime
@pytest.mark.parametrize("name", sorted(REAL))
def test_real_bundled_set(name):
    n_train, n_test, classes, channels, length = REAL[name]
    info = D.dataset_info(name)
    train = D.load_tensors(name, train=True)
    test = D.load_tensors(name, train=False)
    assert train.images.shape == (n_train, channels, length) and test.images.shape == (n_test, channels, length)
    assert train.images.dtype == torch.float32 and bool(torch.isfinite(train.images).all())
    assert len(train.classes) == classes and test.classes == train.classes
    assert set(train.labels.tolist()) == set(range(classes)) and set(test.labels.tolist()) <= set(range(classes))
    # The normalisation recorded in DatasetInfo is the training split's, per channel.
    values = train.images.double()
    torch.testing.assert_close(values.mean(dim=(0, 2)), torch.tensor(info.mean, dtype=torch.double), atol=1e-3, rtol=0)
    torch.testing.assert_close(values.std(dim=(0, 2)), torch.tensor(info.std, dtype=torch.double), atol=1e-3, rtol=0)


def _readme_train_lines() -> list[list[str]]:
    """The inline ``lmix train --dataset <time series> ...`` commands of the README."""
    import re
    from pathlib import Path

    readme = Path(__file__).resolve().parents[2] / "README.md"
    found = re.findall(r"`lmix train (--dataset (?:osuleaf|arrowhead)[^`]*)`", readme.read_text())
    return [line.split() for line in found]


def test_the_readme_names_both_time_series_commands():
    assert {argv[1] for argv in _readme_train_lines()} == {"osuleaf", "arrowhead"}


@needs_sktime
@pytest.mark.parametrize("argv", _readme_train_lines(), ids=" ".join)
def test_the_readme_time_series_commands_train(capsys, tmp_path, argv):
    """As the README writes them, on the real bundled sets (one epoch here)."""
    code, out, err = run_cli(capsys, ["train", *argv, "--epochs", "1", "--progress", "false", "--out", str(tmp_path)])
    assert code == 0, err
    assert "test accuracy" in out


def test_lmix_train_refuses_a_model_of_the_other_kind(capsys, tmp_path, fake_osuleaf):
    one_line_error(
        capsys,
        ["train", "--dataset", "osuleaf", "--model", "simple_cnn", "--epochs", "1", "--out", str(tmp_path / "a")],
        "model 'simple_cnn' takes images (B, C, H, W)",
        "holds sequences (B, C, L)",
        "cnn1d",
    )
    one_line_error(
        capsys,
        ["train", "--dataset", "digits", "--model", "cnn1d", "--epochs", "1", "--out", str(tmp_path / "b")],
        "model 'cnn1d' takes sequences",
        "simple_cnn",
    )
    one_line_error(
        capsys,
        "train --dataset osuleaf --model cnn1d --channels-last true --epochs 1 --out".split() + [str(tmp_path / "c")],
        "channels_last applies to images",
    )


@pytest.mark.parametrize("method", ["none", "mixup"])
def test_lmix_train_on_sequences(capsys, tmp_path, fake_osuleaf, method):
    out = tmp_path / method
    code, _, err = run_cli(
        capsys,
        "train --dataset osuleaf --model cnn1d --width 4 --epochs 2 --batch-size 16 --train-subset 48".split()
        + "--eval-train 24 --crop-padding 3 --progress false".split()
        + ["--method", method, "--out", str(out)],
    )
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "osuleaf" and summary["num_test_images"] == 30
    assert summary["num_train_images_per_epoch"] == 48 and 0 <= summary["final_acc"] <= 100
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all("clean_train_acc" in r for r in rows)


@needs_sktime
def test_the_guide_example_runs():
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parents[2] / "docs" / "guide" / "timeseries.md"
    if not page.is_file():
        pytest.skip("docs/guide/timeseries.md is not here (an installed wheel)")
    (code,) = re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.M | re.S)
    scope: dict = {}
    exec(compile(code, str(page), "exec"), scope)  # noqa: S102 - the page's own example
    # Training drops the last partial batch (BatchNorm): 200 series are 6 batches of 32.
    assert scope["series"].shape == (32, 1, 427) and len(scope["train"]) == 6
    assert torch.isfinite(scope["loss"]) and scope["batch"].images.shape == (32, 1, 427)


def test_lmix_attack_refuses_a_sequence_run(capsys, tmp_path, fake_osuleaf):
    out = tmp_path / "run"
    argv = "train --dataset osuleaf --model cnn1d --width 4 --epochs 1 --batch-size 16 --progress false --out".split()
    assert run_cli(capsys, [*argv, str(out)])[0] == 0
    one_line_error(capsys, ["attack", "--run", str(out), "--eps", "1"], "holds time series", str(out))
    assert not (out / "fgsm.json").exists()


@pytest.mark.parametrize("order", ["image_first", "sequence_first"])
def test_lmix_attack_compare_refuses_a_sequence_run_before_attacking_any(capsys, tmp_path, fake_osuleaf, order):
    """An image run and a sequence run in one --compare: refused before the image run is attacked."""
    seq, img = tmp_path / "seq", tmp_path / "img"
    argv = "train --model cnn1d --dataset osuleaf --width 4 --epochs 1 --batch-size 16 --progress false --out".split()
    assert run_cli(capsys, [*argv, str(seq)])[0] == 0
    argv = "train --dataset digits --width 4 --epochs 1 --train-subset 64 --batch-size 32 --progress false --out"
    assert run_cli(capsys, [*argv.split(), str(img)])[0] == 0
    runs = [str(img), str(seq)] if order == "image_first" else [str(seq), str(img)]
    figure = tmp_path / "cmp.png"
    one_line_error(capsys, ["attack", "--compare", *runs, "--eps", "1", "--out", str(figure)], "holds time series")
    assert not (img / "fgsm.json").exists() and not (img / "fgsm.png").exists() and not figure.exists()


def test_a_sweep_refuses_a_model_of_the_other_kind_before_anything_runs(capsys, tmp_path):
    spec = tmp_path / "mixed.yaml"
    spec.write_text("base: {epochs: 1}\ngrid:\n  dataset: [digits, osuleaf]\n  model: [simple_cnn]\n")
    out = tmp_path / "out"
    one_line_error(
        capsys, ["sweep", str(spec), "--out", str(out), "--dry-run"], "model 'simple_cnn' takes images", "cnn1d"
    )
    assert not out.exists()
    # lmix compare expands its runs the same way: nothing is trained
    argv = ["compare", "--dataset", "osuleaf", "--model", "simple_cnn", "--epochs", "1", "--seeds", "1", "--out"]
    one_line_error(capsys, [*argv, str(out)], "model 'simple_cnn' takes images")
    assert not any(out.rglob("summary.json"))
